"""Does a port specification of an iptables rule cover a port? Written once for tracing and doctor.

The specifications iptables accepts (libxt_tcp, libxt_udp, libxt_multiport), as iptables-save prints them:

- `--dport 80`, `--sport 80`: one port;
- `--dport 80:90`: a range, both ends included; `:90` is `0:90` and `80:` is `80:65535` (open ends);
- `--dports 80,443` and `--dports 80,443:445` (multiport): a list of ports and ranges.

multiport refuses open ends and iptables refuses a range whose low end is above its high end; this reader
accepts open ends everywhere (a superset) and reads such a range as empty. A port is decimal, 0-65535.
"""

from __future__ import annotations

MAX_PORT = 65535


def _bound(text: str, default: int) -> int | None:
    """One end of a range: decimal digits within 0-65535, or `default` when empty; None otherwise."""
    text = text.strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_PORT:
        return None
    return int(text)


def port_range(part: str) -> tuple[int, int] | None:
    """`80` -> (80, 80), `80:90` -> (80, 90), `:90` -> (0, 90), `80:` -> (80, 65535); None if not a port spec."""
    low, colon, high = part.partition(":")
    if not colon:
        port = _bound(low, -1)
        return None if port is None or port < 0 else (port, port)
    lo, hi = _bound(low, 0), _bound(high, MAX_PORT)
    return None if lo is None or hi is None else (lo, hi)


def in_ports(port: int | None, spec: str) -> bool | None:
    """Is `port` in `spec` (`80`, `80:90`, `:90`, `80:`, `80,443:445`)? None when the port is unknown or the
    spec is not one iptables writes (a service name, a negation `!80`, an empty item)."""
    if port is None:
        return None
    hit = False
    for part in spec.split(","):
        bounds = port_range(part)
        if bounds is None:
            return None
        hit = hit or bounds[0] <= port <= bounds[1]
    return hit
