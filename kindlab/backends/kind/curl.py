"""curl for the kind backend: from the host, or (where the host cannot route to the Docker
network, as with Docker Desktop) with `curl -s -S -i` inside a node, parsed back."""

from __future__ import annotations

import errno
import http.client
import subprocess
import time
from pathlib import Path

from ... import curl_output
from ...cluster import HttpResponse
from ...curl_output import split_url
from ...errors import ConnectionRefused, CurlError, RequestTimeout

UNROUTABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH}
USER_AGENT = "kindlab"


class Unroutable(OSError):
    """The host has no route to the address: the caller should curl from inside a node."""


def host_get(url: str, timeout: float = 5.0) -> HttpResponse:
    """GET `url` from this host like curl: no redirects followed, refused and timeout as curl says them."""
    _, parts, port = split_url(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname or "", port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    except ConnectionRefusedError:
        raise ConnectionRefused(f"curl: (7) Failed to connect to {parts.hostname} port "
                                f"{parts.port or conn.default_port}: Connection refused") from None
    except TimeoutError:
        raise RequestTimeout(f"curl: (28) Operation timed out after {timeout * 1000:.0f} milliseconds "
                             f"({url})") from None
    except OSError as exc:
        if exc.errno in UNROUTABLE:
            raise Unroutable(exc.errno, exc.strerror) from None
        raise CurlError(f"curl: {url}: {exc}") from None
    finally:
        conn.close()
    return HttpResponse(url=url, status=resp.status, headers=dict(resp.getheaders()), body=body,
                        elapsed=time.monotonic() - started)


def netns_get(netns: Path, url: str, timeout: float = 5.0) -> HttpResponse:
    """GET `url` with the machine's curl inside network namespace `netns` (kindlab's Docker Engine's, where the
    nodes' network is): no address outside it can be reached from there."""
    started = time.monotonic()
    argv = ["nsenter", f"--net={netns}", *curl_argv(url, timeout)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        raise RequestTimeout(f"curl: (28) Operation timed out after {timeout * 1000:.0f} milliseconds "
                             f"({url})") from None
    return from_curl(url, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def curl_argv(url: str, timeout: float) -> list[str]:
    """The curl command run inside a node: silent, errors shown, headers included (CurlError for a bad URL)."""
    split_url(url)
    return ["curl", "-s", "-S", "-i", "--max-time", f"{timeout:g}", url]


def from_curl(url: str, returncode: int, stdout: str, stderr: str, elapsed: float = 0.0) -> HttpResponse:
    """An HttpResponse from `curl -s -S -i` output in a node (kindlab.curl_output reads it)."""
    return curl_output.response(url, returncode, stdout, stderr, elapsed)
