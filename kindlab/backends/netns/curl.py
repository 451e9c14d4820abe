"""curl from the lab host namespace, as the seed curls node addresses from the Docker host.

Only the lab's own addresses are asked for: its node network (172.18.0.0/16), its pod and service
subnets, and loopback (the lab host's own); any other address is refused before anything is sent.
Node names resolve to their addresses (like Docker's DNS). curl runs only in a lab host namespace whose
links are the lab's own (its bridge, the nodes' veths, loopback): no route there leaves the lab.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable

from ... import curl_output
from ...cluster import HttpResponse
from ...curl_output import curl_error, split_url
from ...errors import RequestTimeout
from . import tools
from .names import BRIDGE, SUBNET, netns_path
from .tools import nsenter, which

LOOPBACK = ("127.0.0.0/8", "::1/128")
LAB_LINK = re.compile(rf"lo|{BRIDGE}|veth\d+")    # the links host.create makes


def check_no_way_out(host_netns: str) -> None:
    """CurlError unless the lab host namespace has only the lab's own links (so nothing routes out of it)."""
    done = tools.run([*nsenter(net=netns_path(host_netns)), which("ip"), "-o", "link", "show"],
                     f"listing the links of {host_netns}", check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in done.stdout.decode().splitlines() if ":" in line]
    if done.returncode != 0 or not names:
        raise curl_error(7, f"cannot list the links of the lab host namespace {host_netns}; is the lab running? "
                            "(kindlab get clusters)")
    if strange := [n for n in names if not LAB_LINK.fullmatch(n)]:
        raise curl_error(7, f"the lab host namespace {host_netns} has links the lab did not make "
                            f"({', '.join(strange)}): a request could leave the lab, so none is sent")


def check_address(address: str, networks: Iterable[str]) -> None:
    """CurlError unless `address` lies in one of the lab's `networks` or is loopback."""
    ip = ipaddress.ip_address(address)
    allowed = [ipaddress.ip_network(n, strict=False) for n in (*networks, *LOOPBACK)]
    if not any(ip.version == n.version and ip in n for n in allowed):
        shown = ", ".join(str(n) for n in allowed)
        raise curl_error(7, f"{address} is outside the lab: kindlab curl reaches only the lab's own networks "
                            f"({shown}) and sends nothing elsewhere; curl a node's or a pod's address")


def curl(host_netns: str, url: str, timeout: float, names: dict[str, str],
         networks: Iterable[str] = ()) -> HttpResponse:
    """GET `url` from the lab host namespace; `names` maps node names to addresses; `networks` are the
    lab's subnets besides the node network."""
    full, parts, port = split_url(url)
    hostname = parts.hostname or ""
    extra = []
    if hostname in names:
        extra = ["--resolve", f"{hostname}:{port}:{names[hostname]}"]
    else:
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            raise curl_error(6, f"Could not resolve host: {hostname} (the lab knows its node names "
                                f"{', '.join(sorted(names))} and IP addresses)") from None
        check_address(hostname, (SUBNET, *networks))
    check_no_way_out(host_netns)
    argv = [*nsenter(net=netns_path(host_netns)), which("curl"), "-sS", "-i", "--max-time", f"{timeout:g}",
            "--noproxy", "*", *extra, full]
    started = time.monotonic()
    try:
        done = tools.run(argv, f"curl {url}", timeout=timeout + 5, check=False)
    except tools.TimedOut:
        raise RequestTimeout(f"curl: (28) no answer from {url} in {timeout:g}s") from None
    return curl_output.response(url, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def parse(url: str, raw: bytes, elapsed: float = 0.0) -> HttpResponse:
    """Split `curl -i` output into status, headers and body (kindlab.curl_output)."""
    return curl_output.response(url, 0, raw, b"", elapsed)
