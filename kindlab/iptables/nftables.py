"""`nft -j list table ...` as the same rule frame as iptables-save's, for portmap's nftables backend (plugins 1.6+).

    rules = kindlab.iptables.parse_nft(text)      # text of `nft -j list table ip cni_hostport` (or ruleset)
    rules = kindlab.iptables.node_nft_rules(lab, "kind-worker")   # the same, read in a node

One row per rule in the document's order, the columns of RULE_COLUMNS where they mean the same, then two of
nftables' own (NFT_RULE_COLUMNS):

- `table` (`cni_hostport`), `chain` (`hostports`), `position` (1-based within the chain);
- `packets`, `bytes`: from the rule's `counter` statement, <NA> without one (portmap writes none);
- `protocol` (`tcp dport ...`, `meta l4proto`), `source`/`destination` (`ip saddr`/`ip daddr`, `ip6 ...`),
  `in_interface`/`out_interface` (`iifname`/`oifname`), `dport` (one port or a range `1000:2000`, iptables'
  spelling so that ports.in_ports reads it) and `dports` (a set, `80,443`): `!` in front when negated (`!=`);
- `matches`: every match's left-hand side in order (`("ip daddr", "tcp dport")`); `match_options`: the matches
  without a column of their own as nft prints them (`fib daddr type local`);
- `comment`: the rule's comment (portmap's: the container ID);
- `target`: `DNAT`, `SNAT`, `MASQUERADE`, `REDIRECT`, `ACCEPT`, `DROP`, `RETURN`, or the chain a `jump`/`goto`
  names (`goto` True for goto), as iptables' `-j`; `to_destination`: dnat's `addr:port` (`[addr]:port` for
  IPv6); `target_options`: the other statements, as nft prints them (`log prefix "x"`, snat's `to ...`);
- `rule`: the rule as `nft list` prints it (counter included, `# handle` not);
- `lineno`: the rule's 1-based place among the document's objects (JSON has no lines);
- `family` (`ip`, `ip6`, `inet`, ...) and `handle` (what `nft delete rule FAMILY TABLE CHAIN handle N` takes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd

from ..errors import KindlabError
from . import nft_text
from .frames import RULE_COLUMNS, _categorical, _counts

NFT_RULE_COLUMNS = [*RULE_COLUMNS, "family", "handle"]
#: portmap's table (model.portmap.NFT_TABLE; repeated here: kindlab.iptables imports nothing of the model).
PORTMAP_TABLE = "cni_hostport"
FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp", "udplite", "th"})
_TARGETS = {"dnat": "DNAT", "snat": "SNAT", "masquerade": "MASQUERADE", "redirect": "REDIRECT",
            "accept": "ACCEPT", "drop": "DROP", "return": "RETURN", "reject": "REJECT", "queue": "QUEUE"}
_CATEGORIES = ("table", "chain", "protocol", "in_interface", "out_interface", "target", "family")
_HOW = "pass the output of `nft -j list table ip cni_hostport` (or `nft -j list ruleset`)"


class NftParseError(KindlabError):
    """`nft -j` output that does not parse: says where and what to pass instead."""


def parse_nft(text: str | bytes) -> pd.DataFrame:
    """The rules of `nft -j list ...` output as a DataFrame (NFT_RULE_COLUMNS). Raises NftParseError."""
    objects = _objects(text)
    rows: list[dict[str, Any]] = []
    positions: dict[tuple[str, str, str], int] = {}
    for index, item in enumerate(objects, start=1):
        if not isinstance(item, dict):
            raise NftParseError(f"nft -j output, object {index}: not a JSON object but {type(item).__name__}; {_HOW}")
        if "rule" not in item:
            continue
        rule = item["rule"]
        try:
            row = _row(rule)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            shown = json.dumps(rule)[:200]
            raise NftParseError(f"nft -j output, object {index}: a rule that cannot be read ({exc!r}): {shown}; "
                                f"{_HOW}") from None
        key = (row["family"], row["table"], row["chain"])
        positions[key] = positions.get(key, 0) + 1
        rows.append({**row, "position": positions[key], "lineno": index})
    return _frame(rows)


def _objects(text: str | bytes) -> list[Any]:
    """The `nftables` array of the document."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str):
        raise TypeError(f"parse_nft() takes the text of `nft -j`, not {type(text).__name__}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NftParseError(f"nft -j output: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): "
                            f"{text[:80]!r}; {_HOW}") from None
    except RecursionError:
        raise NftParseError(f"nft -j output: JSON nested too deeply; {_HOW}") from None
    objects = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(objects, list):
        raise NftParseError(f"nft -j output: no top-level \"nftables\" array; {_HOW}")
    return objects


def _name(rule: dict[str, Any], key: str) -> str:
    got = rule[key]
    if not isinstance(got, str) or not got:
        raise ValueError(f"{key} is {got!r}, not a name")
    return got


def _row(rule: dict[str, Any]) -> dict[str, Any]:
    """One rule's cells (all but position and lineno)."""
    expr = rule.get("expr", [])
    if not isinstance(expr, list) or not all(isinstance(e, dict) and len(e) == 1 for e in expr):
        raise ValueError("expr is not a list of one-key objects")
    handle = rule.get("handle")
    row: dict[str, Any] = {
        "family": _name(rule, "family"), "table": _name(rule, "table"), "chain": _name(rule, "chain"),
        "handle": handle if isinstance(handle, int) and not isinstance(handle, bool) else None,
        "comment": rule["comment"] if isinstance(rule.get("comment"), str) else None,
        "packets": None, "bytes": None, "goto": False, "target": None, "to_destination": None,
    }
    columns = {name: None for name in ("protocol", "source", "destination", "in_interface", "out_interface",
                                       "dport", "dports")}
    matches, other, options, words = [], [], [], []
    for statement in expr:
        (kind, spec), = statement.items()
        words.append(nft_text.statement(kind, spec))
        if kind == "match" and isinstance(spec, dict):
            matches.append(nft_text.selector(spec.get("left")))
            if not _column_match(spec, columns):
                other.append(words[-1])
        elif kind == "counter" and isinstance(spec, dict):
            row["packets"], row["bytes"] = spec.get("packets"), spec.get("bytes")
        elif (left := _target(kind, spec, row)) is None:
            options.append(words[-1])
        elif left:
            options.append(left)
    if row["comment"] is not None:
        words.append(f"comment {nft_text.quoted(row['comment'])}")
    row.update(columns, matches=tuple(matches), match_options=" ".join(other) or None,
               target_options=" ".join(options) or None, rule=" ".join(words))
    return row


def _negated(op: str, text: str) -> str:
    return f"!{text}" if op == "!=" else text


def _ports(right: Any) -> tuple[str, str] | None:
    """("dport", "80") / ("dport", "1000:2000") / ("dports", "80,443") for a port match's right side."""
    if isinstance(right, int) and not isinstance(right, bool):
        return "dport", str(right)
    if isinstance(right, dict) and isinstance(right.get("range"), list) and len(right["range"]) == 2:
        return "dport", ":".join(str(p) for p in right["range"])
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        parts = [_ports(p) for p in right["set"]]
        if all(p is not None for p in parts):
            return "dports", ",".join(p[1] for p in parts if p is not None)
    return None


def _column_match(spec: dict[str, Any], columns: dict[str, Any]) -> bool:
    """Fill the column a match has (protocol, addresses, interfaces, ports); False if it has none."""
    left, op, right = spec.get("left"), str(spec.get("op", "==")), spec.get("right")
    if op not in ("==", "!=", "in"):
        return False
    payload = left.get("payload") if isinstance(left, dict) else None
    meta = left.get("meta") if isinstance(left, dict) else None
    if isinstance(payload, dict) and payload.get("protocol") in _PORT_PROTOCOLS and payload.get("field") == "dport":
        ports = _ports(right)
        if ports is None or columns[ports[0]] is not None:
            return False
        columns["protocol"] = columns["protocol"] or payload["protocol"]
        columns[ports[0]] = _negated(op, ports[1])
        return True
    where = {"saddr": "source", "daddr": "destination"}
    if isinstance(payload, dict) and payload.get("protocol") in ("ip", "ip6") and payload.get("field") in where:
        name = where[payload["field"]]
        if columns[name] is not None or isinstance(right, dict) and "prefix" not in right:
            return False
        columns[name] = _negated(op, nft_text.value(right))
        return True
    interfaces = {"iifname": "in_interface", "oifname": "out_interface", "l4proto": "protocol"}
    if isinstance(meta, dict) and meta.get("key") in interfaces and isinstance(right, str):
        name = interfaces[meta["key"]]
        if columns[name] is not None:
            return False
        columns[name] = _negated(op, right)
        return True
    return False


def _target(kind: str, spec: Any, row: dict[str, Any]) -> str | None:
    """Fill target, goto and to_destination from the rule's first verdict or NAT statement; returns what is left
    of it for target_options ("" for nothing), None for any other statement."""
    if row["target"] is not None:
        return None
    if kind in ("jump", "goto"):
        if not isinstance(spec, dict) or not isinstance(spec.get("target"), str):
            return None
        row["target"], row["goto"] = spec["target"], kind == "goto"
        return ""
    if kind not in _TARGETS:
        return None
    row["target"] = _TARGETS[kind]
    if kind == "dnat" and isinstance(spec, dict) and "addr" in spec:
        row["to_destination"] = nft_text.host_port(spec["addr"], spec.get("port"))
        spec = {k: v for k, v in spec.items() if k not in ("addr", "port")}
    return nft_text.statement(kind, spec)[len(kind):].strip()


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a frame with iptables' dtypes: categoricals, nullable counters, object text."""
    def col(name: str) -> list[Any]:
        return [r[name] for r in rows]
    data: dict[str, Any] = {name: pd.Series(col(name), dtype=object) for name in NFT_RULE_COLUMNS}
    for name in _CATEGORIES:
        data[name] = _categorical(col(name))
    data["position"] = np.array(col("position"), dtype=np.int64)
    data["lineno"] = np.array(col("lineno"), dtype=np.int64)
    data["goto"] = np.array(col("goto"), dtype=bool)
    for name in ("packets", "bytes", "handle"):
        data[name] = _counts(col(name))
    return pd.DataFrame(data, columns=NFT_RULE_COLUMNS)


def nft_list_command(family: str = "ip", table: str = PORTMAP_TABLE) -> str:
    """The shell command node_nft_rules runs: the table's JSON, or the list of tables where it does not exist
    (no rules), and exit 127 where nft is not installed."""
    if family not in FAMILIES:
        raise KindlabError(f"nftables family {family!r}: use one of {', '.join(FAMILIES)}")
    if not _NAME.fullmatch(table):
        raise KindlabError(f"nftables table name {table!r}: use letters, digits, '_', '.' or '-' (as nft does)")
    return ("command -v nft >/dev/null || { echo 'nft: not found' >&2; exit 127; }; "
            f"nft -j list table {family} {table} 2>/dev/null || nft -j list tables")


def node_nft_rules(lab: Any, node: str, family: str = "ip", table: str = PORTMAP_TABLE) -> pd.DataFrame:
    """The rules of nftables table `family table` in a node of the lab (portmap's `ip cni_hostport` by default),
    through lab.exec; empty where the node has no such table. ExecError where the node has no `nft`."""
    return parse_nft(lab.exec(node, ["sh", "-c", nft_list_command(family, table)]))
