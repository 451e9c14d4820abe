"""The echo workload: what image `inanimate/echo-server` runs on the netns backend.

An HTTP server on $PORT (default 8080) that answers every GET with what it knows:
its hostname, the requesting address, the request and response headers, its
environment, and its resolv.conf and hosts files, in the sections the seed's
curl output shows. Run it as `python -m kindlab.echo [--port N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_HEADERS = {"X-Real-Server": "echo-server"}


def response_headers(env: dict[str, str]) -> dict[str, str]:
    """Content-Type plus $ADD_HEADERS (a JSON object), as the echo server adds them."""
    headers = {"Content-Type": "text/plain"}
    try:
        extra = json.loads(env.get("ADD_HEADERS", json.dumps(DEFAULT_HEADERS)))
    except json.JSONDecodeError:
        extra = {}
    if isinstance(extra, dict):
        headers.update({str(k): str(v) for k, v in extra.items()})
    return headers


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})\n"


def render(*, hostname: str, peer: str, request_line: str, request_headers: list[tuple[str, str]],
           headers: dict[str, str], env: dict[str, str], resolv: str, hosts: str, now: datetime) -> str:
    """The body the server sends back, section by section."""
    lines = ["Welcome to echo-server!  Here's what I know.", "  > Head to /ws for interactive websocket echo!", "",
             f"-> My hostname is: {hostname}", "", f"-> Requesting IP: {peer}", "", "-> Request Headers | ", "",
             f"  {request_line}", ""]
    lines += [f"  {k}: {v}" for k, v in request_headers]
    lines += ["", "", "-> Response Headers | ", ""]
    lines += [f"  {k}: {v}" for k, v in headers.items()]
    lines += ["", '  > Note that you may also see "Transfer-Encoding" and "Date"!', "", "", "-> My environment |"]
    lines += [f"  {k}={v}" for k, v in sorted(env.items())]
    lines += ["", "", "-> Contents of /etc/resolv.conf | ", resolv.rstrip("\n"), "", "",
              "-> Contents of /etc/hosts | ", hosts.rstrip("\n"), "", "", "",
              f"-> And that's the way it is {now.isoformat(sep=' ')}", "",
              "// Thanks for using echo-server (served by kindlab's netns backend)", ""]
    return "\n".join(lines)


def make_handler(hosts_file: str, resolv_file: str) -> type[BaseHTTPRequestHandler]:
    """A request handler class reading the given hosts and resolv.conf files."""

    class EchoHandler(BaseHTTPRequestHandler):
        server_version = "echo-server"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # http.server's naming
            env = dict(os.environ)
            headers = response_headers(env)
            body = render(
                hostname=env.get("HOSTNAME") or socket.gethostname(),
                peer=f"{self.client_address[0]}:{self.client_address[1]}",
                request_line=f"{self.request_version} {self.command} {self.path}",
                request_headers=list(self.headers.items()),
                headers=headers, env=env, resolv=_read(resolv_file), hosts=_read(hosts_file),
                now=datetime.now(UTC),
            ).encode()
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # http.server's signature
            pass

    return EchoHandler


class EchoServer(ThreadingHTTPServer):
    """A threading HTTP server that binds without a DNS look-up of its own name."""

    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        """Bind as TCPServer does; http.server's getfqdn() can stall where no resolver answers."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port


def serve(port: int, hosts_file: str = "/etc/hosts", resolv_file: str = "/etc/resolv.conf",
          bind: str = "0.0.0.0") -> None:
    """Serve forever on `bind:port`."""
    server = EchoServer((bind, port), make_handler(hosts_file, resolv_file))
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """`python -m kindlab.echo`: parse flags and serve."""
    parser = argparse.ArgumentParser(prog="kindlab.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--hosts-file", default="/etc/hosts")
    parser.add_argument("--resolv-file", default="/etc/resolv.conf")
    args = parser.parse_args(argv)
    serve(args.port, args.hosts_file, args.resolv_file, args.bind)


if __name__ == "__main__":
    main()
