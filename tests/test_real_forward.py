"""Sockets inside a network namespace from the host's, and the loopback forwarder into it."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kindlab.backends.kube import forward

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="making a network namespace needs root")]


@pytest.fixture
def netns():
    name = f"kr-fwd-{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield Path("/run/netns") / name
    subprocess.run(["ip", "netns", "del", name], check=True)


def serve_upper(sock: socket.socket) -> None:
    """Answer each connection with what it sent, upper-cased, until the peer closes."""
    def one(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def test_listen_and_connect_inside_the_namespace(netns):
    host_ns = os.readlink("/proc/self/ns/net")
    server = forward.listen(netns, "127.0.0.1", 0)
    port = server.getsockname()[1]
    threading.Thread(target=serve_upper, args=(server,), daemon=True).start()
    with forward.connect(netns, "127.0.0.1", port) as conn:
        conn.sendall(b"inside")
        assert conn.recv(100) == b"INSIDE"
    assert os.readlink("/proc/self/ns/net") == host_ns   # the calling thread never moved
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass   # not reachable from the host: the port is the namespace's
    server.close()


def test_forwarder_joins_host_loopback_to_the_namespace(netns):
    server = forward.listen(netns, "127.0.0.1", 0)
    threading.Thread(target=serve_upper, args=(server,), daemon=True).start()
    fwd = forward.Forwarder(netns, ("127.0.0.1", server.getsockname()[1])).start()
    try:
        for word in (b"one", b"two" * 10000):
            with socket.create_connection(("127.0.0.1", fwd.port), timeout=5) as conn:
                conn.sendall(word)
                conn.shutdown(socket.SHUT_WR)
                got = b""
                while data := conn.recv(65536):
                    got += data
            assert got == word.upper()
        live = socket.create_connection(("127.0.0.1", fwd.port), timeout=5)
        live.sendall(b"x")
        assert live.recv(10) == b"X"
    finally:
        fwd.close()
        server.close()
    live.settimeout(2)
    assert live.recv(10) == b""   # close() ends live connections too (their sockets hold the namespace)
    live.close()


def test_in_netns_reports_a_missing_namespace():
    with pytest.raises(OSError):
        forward.in_netns("/run/netns/kr-none-such", lambda: None)


def test_the_forwarder_runs_as_a_process(netns):
    server = forward.listen(netns, "127.0.0.1", 0)
    threading.Thread(target=serve_upper, args=(server,), daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-m", "kindlab.backends.kube.forward", "--netns", str(netns),
                             "--to", f"127.0.0.1:{server.getsockname()[1]}", "--marker", "kindlab-lab=kr-test"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"proc")
            assert conn.recv(10) == b"PROC"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        server.close()
