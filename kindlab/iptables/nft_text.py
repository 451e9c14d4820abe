"""One expression of `nft -j` output written back as `nft list` prints it: `tcp dport 80`, `dnat to 1.2.3.4:80`.

Written for what portmap and kube-proxy's nftables mode write (payload, meta, fib and ct matches; counter, NAT,
verdicts, log, mangle) and checked against `nft list` on the same ruleset (tests/data/nftables); an expression
it does not know is written as its JSON, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Comparison operators nft prints in words or symbols; `==` and `in` are implicit (`tcp dport 80`).
_IMPLICIT_OPS = ("==", "in")
#: meta keys nft prints without `meta ` (`iifname "eth0"`, but `meta l4proto tcp`).
_BARE_META = frozenset({"iif", "oif", "iifname", "oifname", "iiftype", "oiftype", "iifgroup", "oifgroup",
                        "skuid", "skgid", "rtclassid", "ibrname", "obrname", "cpu", "cgroup"})
#: Strings nft prints quoted: interface names and comments; other strings (addresses, keywords) as they are.
_QUOTED_KEYS = frozenset({"iifname", "oifname", "ibrname", "obrname"})
_MARKS = frozenset({"meta mark", "ct mark"})
_PLAIN = re.compile(r"[A-Za-z0-9_./:-]+")
VERDICTS = ("accept", "drop", "continue", "return", "queue", "reject")


def quoted(text: str) -> str:
    """A string as nft prints it in double quotes (comments, interface names)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value(v: Any, quote: bool = False) -> str:
    """A right-hand side: 80, "eth0", { 80, 443 }, 1000-2000, 10.0.0.0/8, established,related."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return quoted(v) if quote or not _PLAIN.fullmatch(v) else v
    if isinstance(v, list):
        return ",".join(value(x, quote) for x in v)
    if isinstance(v, dict) and len(v) == 1:
        (key, inner), = v.items()
        if key == "set":
            items = inner if isinstance(inner, list) else [inner]
            return "{ " + ", ".join(value(x, quote) for x in items) + " }"
        if key == "range" and isinstance(inner, list) and len(inner) == 2:
            return f"{value(inner[0])}-{value(inner[1])}"
        if key == "prefix" and isinstance(inner, dict):
            return f"{value(inner.get('addr'))}/{value(inner.get('len'))}"
        if key == "concat" and isinstance(inner, list):
            return " . ".join(value(x, quote) for x in inner)
        return selector(v)
    return json.dumps(v, separators=(",", ":"))


def selector(left: Any) -> str:
    """A match's left-hand side: `tcp dport`, `ip daddr`, `meta l4proto`, `iifname`, `fib daddr type`, `ct state`."""
    if not isinstance(left, dict) or len(left) != 1:
        return value(left)
    (kind, spec), = left.items()
    if not isinstance(spec, dict):
        return json.dumps(left, separators=(",", ":"))
    if kind == "payload" and "protocol" in spec:
        return f"{spec['protocol']} {spec.get('field')}"
    if kind == "payload":
        return f"@{spec.get('base')},{spec.get('offset')},{spec.get('len')}"
    if kind == "meta":
        key = str(spec.get("key"))
        return key if key in _BARE_META else f"meta {key}"
    if kind == "fib":
        flags = spec.get("flags") or []
        flags = flags if isinstance(flags, list) else [flags]
        return f"fib {' . '.join(map(str, flags))} {spec.get('result')}"
    if kind == "ct":
        where = [str(spec[k]) for k in ("dir", "family") if k in spec]
        return " ".join(["ct", *where, str(spec.get("key"))])
    return json.dumps(left, separators=(",", ":"))


def _right(left: Any, right: Any) -> str:
    """A right-hand side as nft prints it after `left`: interface names quoted, marks in 8-digit hex."""
    name = selector(left)
    if name in _MARKS and isinstance(right, int) and not isinstance(right, bool):
        return f"0x{right:08x}"
    return value(right, quote=name in _QUOTED_KEYS)


def match(spec: dict[str, Any]) -> str:
    """`tcp dport 80`, `ip saddr != 10.0.0.0/8`, `fib daddr type local`."""
    left, op = spec.get("left"), str(spec.get("op", "=="))
    right = _right(left, spec.get("right"))
    return f"{selector(left)} {right}" if op in _IMPLICIT_OPS else f"{selector(left)} {op} {right}"


def host_port(addr: Any, port: Any) -> str:
    """`192.168.1.5:8080`, `[fd00::5]:8080`, or the address alone (iptables' --to-destination form)."""
    shown = value(addr) if addr is not None else ""
    if port is None:
        return shown
    return f"[{shown}]:{value(port)}" if ":" in shown else f"{shown}:{value(port)}"


def nat(kind: str, spec: Any) -> str:
    """`dnat to 192.168.1.5:8080`, `dnat ip to ...` (in an inet table), `masquerade`, `redirect to :8080`."""
    if not isinstance(spec, dict):
        return kind
    words = [kind]
    if "family" in spec:
        words.append(str(spec["family"]))
    if "addr" in spec or "port" in spec:
        target = host_port(spec.get("addr"), spec.get("port")) if "addr" in spec else f":{value(spec['port'])}"
        words += ["to", target]
    flags = spec.get("flags")
    if flags:
        words.append(" ".join(flags) if isinstance(flags, list) else str(flags))
    return " ".join(words)


def statement(kind: str, spec: Any) -> str:
    """Any statement of a rule's `expr` list, as nft prints it."""
    if kind == "match" and isinstance(spec, dict):
        return match(spec)
    if kind in ("dnat", "snat", "masquerade", "redirect"):
        return nat(kind, spec)
    if kind in ("jump", "goto") and isinstance(spec, dict):
        return f"{kind} {spec.get('target')}"
    if kind in VERDICTS and spec is None:
        return kind
    if kind == "counter" and isinstance(spec, dict):
        return f"counter packets {spec.get('packets', 0)} bytes {spec.get('bytes', 0)}"
    if kind == "counter" and spec is None:
        return "counter"
    if kind == "log" and isinstance(spec, dict):
        return " ".join(["log", *(f"{k} {value(v, quote=k == 'prefix')}" for k, v in spec.items())])
    if kind == "log" and spec is None:
        return "log"
    if kind == "mangle" and isinstance(spec, dict):
        return f"{selector(spec.get('key'))} set {_right(spec.get('key'), spec.get('value'))}"
    return f"{kind} {json.dumps(spec, separators=(',', ':'))}"
