"""A read-only image registry serving the lab's OCI layouts, so that pulls never leave the lab.

The seed's manifests say `image: inanimate/echo-server`, without a tag: the API server defaults
its `imagePullPolicy` to Always, and for Always the kubelet calls the CRI's PullImage every time,
which containerd resolves against the registry even when the image is already imported. containerd's
CRI plugin is therefore configured with this server as the only host of docker.io, registry.k8s.io and
k8s.gcr.io (`components.registry_hosts`); it answers the three calls of the distribution API a pull makes:

    GET|HEAD /v2/                                  the API version check
    GET|HEAD /v2/<repository>/manifests/<tag|digest>
    GET|HEAD /v2/<repository>/blobs/<digest>

Run it as `python -m kindlab.backends.oci.registry --listen IP:PORT LAYOUT...` (under
`nsenter --net=` of the lab's bridge namespace), or in-process with `serve`. It uses only the standard library
and this one file, so that a kind node image carries it as a program of its own.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Layouts:
    """Repositories (path without the registry host) -> their OCI layout folder, tags from index.json."""

    def __init__(self, folders: list[Path]):
        self.repos: dict[str, tuple[Path, dict[str, str]]] = {}
        for folder in folders:
            index = json.loads((folder / "index.json").read_text())
            for m in index["manifests"]:
                name = m["annotations"]["io.containerd.image.name"]
                repo, tag = name.split("/", 1)[1].rsplit(":", 1)
                self.repos.setdefault(repo, (folder, {}))[1][tag] = m["digest"]

    def blob(self, repo: str, digest: str) -> bytes | None:
        """The blob's bytes, or None when the repository or blob is unknown."""
        if repo not in self.repos or not digest.startswith("sha256:") or "/" in digest:
            return None
        path = self.repos[repo][0] / "blobs" / "sha256" / digest.split(":", 1)[1]
        return path.read_bytes() if path.is_file() else None

    def manifest(self, repo: str, ref: str) -> tuple[str, bytes] | None:
        """(digest, bytes) of a manifest named by tag or digest."""
        if repo not in self.repos:
            return None
        digest = self.repos[repo][1].get(ref, ref)
        data = self.blob(repo, digest)
        return (digest, data) if data is not None else None


def handler(layouts: Layouts) -> type[BaseHTTPRequestHandler]:
    """A request handler class answering from `layouts`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:  # http.server's naming
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def answer(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/v2", "/v2/"):
                return self.send(200, b"{}", "application/json", None, body)
            parts = path.removeprefix("/v2/").rsplit("/", 2)
            if len(parts) == 3 and parts[1] == "manifests":
                found = layouts.manifest(parts[0], parts[2])
                if found:
                    return self.send(200, found[1], MANIFEST, found[0], body)
                return self.send(404, _error("MANIFEST_UNKNOWN"), "application/json", None, body)
            if len(parts) == 3 and parts[1] == "blobs":
                data = layouts.blob(parts[0], parts[2])
                if data is not None:
                    return self.send(200, data, "application/octet-stream", parts[2], body)
                return self.send(404, _error("BLOB_UNKNOWN"), "application/json", None, body)
            self.send(404, _error("NAME_UNKNOWN"), "application/json", None, body)

        def send(self, code: int, data: bytes, kind: str, digest: str | None, body: bool) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # http.server's signature
            pass

    return Handler


def _error(code: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]}).encode()


class Registry(ThreadingHTTPServer):
    """The server, bound to an already listening socket or an address."""

    daemon_threads = True

    def __init__(self, layouts: Layouts, address: tuple[str, int] = ("127.0.0.1", 0),
                 sock: socket.socket | None = None):
        super().__init__(address, handler(layouts), bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()


def serve(layouts: list[Path], sock: socket.socket) -> Registry:
    """Serve `layouts` on a listening socket (made in whatever namespace) in a daemon thread."""
    server = Registry(Layouts(layouts), sock=sock)
    threading.Thread(target=server.serve_forever, name="kindlab-registry", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="kindlab.backends.oci.registry", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="IP:PORT")
    parser.add_argument("layouts", nargs="+", type=Path)
    parser.add_argument("--marker", default="", help="a word for the lab's sweep, e.g. kindlab-lab=<lab>")
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    Registry(Layouts(args.layouts), (host, int(port))).serve_forever()


if __name__ == "__main__":
    main()
