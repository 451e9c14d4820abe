"""Sockets in a network namespace (a lab's, kindlab's Docker Engine's), from a process that stays in the host's.

A thread that calls setns(2) on a network namespace moves alone (Linux keeps network namespaces
per thread), and a socket belongs to the namespace it was made in: so one short-lived thread per
socket is enough to listen or connect inside the lab without a link, route or rule on the host.

`Forwarder` is a loopback port: it listens on 127.0.0.1:<port> of the host and joins each connection to
`<ip>:<port>` inside the namespace (an API server), as Docker publishes kind's port on the host.
Run it as `python -m kindlab.backends.kube.forward --netns PATH --to IP:PORT [--listen PORT]`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: Path | str, fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread that has entered the network namespace file `netns`; return its result."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name="kindlab-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def listen(netns: Path | str, host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port inside `netns`."""
    def make() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(64)
        return s
    return in_netns(netns, make)


def connect(netns: Path | str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to host:port made from inside `netns`."""
    return in_netns(netns, lambda: socket.create_connection((host, port), timeout=timeout))


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class Forwarder:
    """127.0.0.1:<port> on the host -> `target` inside `netns`, one pair of threads per connection."""

    def __init__(self, netns: Path | str, target: tuple[str, int], port: int = 0):
        self.netns, self.target = netns, target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()   # both ends of live connections, closed by close()

    def start(self) -> Forwarder:
        threading.Thread(target=self.serve, name="kindlab-forward", daemon=True).start()
        return self

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._join, args=(client,), daemon=True).start()

    def _join(self, client: socket.socket) -> None:
        try:
            upstream = connect(self.netns, *self.target)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._open |= {client, upstream}
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        for s in (client, upstream):
            self._open.discard(s)
            s.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for s in list(self._open):   # a socket in a namespace keeps the namespace alive
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def main(argv: list[str] | None = None) -> None:
    """Forward until SIGTERM; prints the port on stdout once listening."""
    parser = argparse.ArgumentParser(prog="kindlab.backends.kube.forward", description=__doc__.splitlines()[0])
    parser.add_argument("--netns", required=True, type=Path)
    parser.add_argument("--to", required=True, help="IP:PORT inside the namespace")
    parser.add_argument("--listen", type=int, default=0, help="loopback port (0: any free port)")
    parser.add_argument("--marker", default="", help="a word for the lab's sweep, e.g. kindlab-lab=<lab>")
    args = parser.parse_args(argv)
    host, port = args.to.rsplit(":", 1)
    fwd = Forwarder(args.netns, (host, int(port)), args.listen)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(fwd.port, flush=True)
    fwd.serve()


if __name__ == "__main__":
    main()
