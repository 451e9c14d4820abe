"""curl's words, one way for every backend: the URLs it accepts, and what `curl -sS -i` printed read as the
answer, or curl's failure as a kindlab error."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from .cluster import HttpResponse
from .errors import ConnectionRefused, CurlError, RequestTimeout

#: curl's exit codes that the lab's callers tell apart.
CURL_EXIT = {3: "URL rejected", 6: "Could not resolve host", 7: "Failed to connect", 28: "Operation timed out"}


def failure(returncode: int, stderr: str, url: str = "") -> CurlError:
    """curl's failure as its error: 7 ConnectionRefused, 28 RequestTimeout, else CurlError with its exit code."""
    message = stderr.strip() or f"curl: ({returncode}) {CURL_EXIT.get(returncode, 'failed')}" + (
        f": {url}" if url else "")
    error: CurlError
    if returncode == 7:
        error = ConnectionRefused(message)
    elif returncode == 28:
        error = RequestTimeout(message)
    else:
        error = CurlError(message)
    error.exit_code = returncode
    return error


def response(url: str, returncode: int, stdout: bytes | str, stderr: bytes | str,
             elapsed: float = 0.0) -> HttpResponse:
    """The HttpResponse from curl's output; its failure (exit code not 0) raised as `failure` words it."""
    err = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    if returncode != 0:
        raise failure(returncode, err, url)
    status, headers, body = parse_http(stdout)
    return HttpResponse(url=url, status=status, headers=headers, body=body, elapsed=elapsed)


def parse_http(raw: bytes | str) -> tuple[int, dict[str, str], str]:
    """Split `curl -i` output into status, headers and body (skipping interim 1xx answers)."""
    text = raw.decode("iso-8859-1") if isinstance(raw, bytes) else raw
    body_bytes = raw if isinstance(raw, bytes) else None
    while True:
        head, rest = _split_head(text)
        lines = head.splitlines() or [""]
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            raise CurlError(f"curl: not an HTTP response: {lines[0][:80]!r}") from None
        if not (100 <= status < 200 and rest.startswith("HTTP/")):
            break
        text = rest
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip()] = value.strip()
    if body_bytes is not None:  # the body as UTF-8, as the echo server writes it
        rest = rest.encode("iso-8859-1").decode("utf-8", "replace")
    return status, headers, rest


def _split_head(text: str) -> tuple[str, str]:
    for sep in ("\r\n\r\n", "\n\n"):
        head, found, rest = text.partition(sep)
        if found:
            return head, rest
    return text, ""


def curl_error(code: int, message: str) -> CurlError:
    """A CurlError carrying curl's exit code."""
    error = CurlError(f"curl: ({code}) {message}")
    error.exit_code = code
    return error


def split_url(url: str) -> tuple[str, SplitResult, int]:
    """(the URL with a scheme, its parts, its port); curl's exit 1 or 3 words for a URL it would refuse."""
    full = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(full)
        port = parts.port
    except ValueError as exc:
        raise curl_error(3, f"URL rejected: {url!r} is malformed ({exc}); want http://HOST[:PORT]/PATH") from None
    if parts.scheme not in ("http", "https"):
        raise curl_error(1, f'Protocol "{parts.scheme}" not supported: {url}')
    if not parts.hostname:
        raise curl_error(3, f"URL rejected: no host in {url!r}; want http://HOST[:PORT]/PATH")
    return full, parts, port or (443 if parts.scheme == "https" else 80)
