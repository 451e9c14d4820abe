"""curl from the lab host namespace, as the seed curls node addresses from the Docker host.

The lab host namespace has a route only to the lab's bridge, so a request can reach nothing
but the lab's own nodes; node names resolve to their addresses (like Docker's DNS).
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from urllib.parse import urlsplit

from ...cluster import HttpResponse
from ...errors import ConnectionRefused, CurlError, RequestTimeout
from .commands import ENV, nsenter, which
from .names import netns_path

CURL_EXIT = {6: "Could not resolve host", 7: "Failed to connect", 28: "Operation timed out"}


def curl(host_netns: str, url: str, timeout: float, names: dict[str, str]) -> HttpResponse:
    """GET `url` from the lab host namespace; `names` maps node names to addresses."""
    full = url if "://" in url else f"http://{url}"
    parts = urlsplit(full)
    if parts.scheme not in ("http", "https"):
        raise CurlError(f"curl: (1) Protocol \"{parts.scheme}\" not supported: {url}")
    hostname = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    extra = []
    if hostname in names:
        extra = ["--resolve", f"{hostname}:{port}:{names[hostname]}"]
    else:
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            error = CurlError(f"curl: (6) Could not resolve host: {hostname} (the lab knows its node names "
                              f"{', '.join(sorted(names))} and IP addresses)")
            error.exit_code = 6
            raise error from None
    argv = [*nsenter(net=netns_path(host_netns)), which("curl"), "-sS", "-i", "--max-time", f"{timeout:g}",
            "--noproxy", "*", *extra, full]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout + 5, env=ENV, cwd="/")
    except subprocess.TimeoutExpired:
        raise RequestTimeout(f"curl: (28) no answer from {url} in {timeout:g}s") from None
    elapsed = time.monotonic() - started
    message = done.stderr.decode(errors="replace").strip()
    if done.returncode == 7:
        raise ConnectionRefused(message or f"curl: (7) Failed to connect to {hostname} port {port}")
    if done.returncode == 28:
        raise RequestTimeout(message or f"curl: (28) no answer from {url} in {timeout:g}s")
    if done.returncode != 0:
        error = CurlError(message or f"curl: ({done.returncode}) {CURL_EXIT.get(done.returncode, 'failed')}")
        error.exit_code = done.returncode
        raise error
    return parse(url, done.stdout, elapsed)


def parse(url: str, raw: bytes, elapsed: float = 0.0) -> HttpResponse:
    """Split `curl -i` output into status, headers and body (skipping 1xx interim answers)."""
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
        if 100 <= status < 200 and sep:
            raw = rest
            continue
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        return HttpResponse(url=url, status=status, headers=headers, body=rest.decode(errors="replace"),
                            elapsed=elapsed)
