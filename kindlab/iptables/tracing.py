"""A packet's path through a table: from a built-in chain, through the jumps, to a verdict."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import pandas as pd

from ..errors import KindlabError
from .arguments import GOTO, JUMP, MATCH, OPTIONS, split_args
from .ports import in_ports
from .ruleset import Ruleset

STEP_COLUMNS = ["step", "depth", "table", "chain", "position", "target", "to_destination", "action", "matched",
                "rule"]
_NON_TERMINATING = frozenset({"MARK", "CONNMARK", "LOG", "NFLOG", "ULOG", "TRACE", "CT", "NOTRACK", "AUDIT",
                              "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "SET", "CHECKSUM", "TCPMSS", "TEE", "SECMARK",
                              "CONNSECMARK", "IDLETIMER", "LED", "RATEEST", "HMARK", "TPROXY_MARK"})
_PROTOCOL_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp", "icmpv6": "ipv6-icmp"}
_PORT_MODULES = frozenset({"tcp", "udp", "sctp", "udplite", "dccp"})


@dataclass
class _Packet:
    """What trace() knows about the packet; None means unknown."""

    protocol: str | None
    src: Any
    dst: Any
    src_port: int | None
    dst_port: int | None
    in_interface: str | None
    out_interface: str | None
    src_local: bool | None
    dst_local: bool | None
    ctstate: str | None
    mark: int | None


def trace(ruleset: Ruleset, table: str = "nat", chain: str = "PREROUTING", *, protocol: str | None = None,
          src: str | None = None, dst: str | None = None, src_port: int | None = None, dst_port: int | None = None,
          in_interface: str | None = None, out_interface: str | None = None, src_local: bool | None = None,
          dst_local: bool | None = None, ctstate: str | None = None, mark: int | None = 0,
          unknown: Literal["skip", "take"] = "skip", max_jumps: int = 10_000) -> pd.DataFrame:
    """Trace a packet's path: follow the jumps from a built-in chain through the user chains to a verdict.

    The packet is described by the keyword arguments; None means "not known". Returns one row per
    step, in order (columns STEP_COLUMNS): each rule that matched (`action` 'jump', 'goto', 'return',
    'continue' for a non-terminating target such as MARK, 'terminate' for ACCEPT, DROP, DNAT, ...),
    the implicit 'return' at the end of a user chain, and 'policy' when a built-in chain ends.
    `depth` is the call depth: `kindlab.plots.plot_packet_path(steps)` draws the path.

    Evaluated: -p, -s/-d (CIDR, negation), -i/-o (with `+`), tcp/udp/sctp --dport/--sport, multiport,
    addrtype --src-type/--dst-type LOCAL (from src_local/dst_local), mark --mark (from `mark`, 0 for a
    fresh packet; MARK targets update it), conntrack --ctstate / state --state (from `ctstate`), comment.
    Conservatively, a rule whose match cannot be decided (statistic, an unknown module or option, or a
    field given as None) is not taken but kept as a step with action 'skip' and `matched` <NA>;
    unknown='take' takes it instead (matched <NA>, its usual action).
    """
    packet = _Packet(_protocol_name(protocol), _address(src), _address(dst), src_port, dst_port, in_interface,
                     out_interface, src_local, dst_local, ctstate, mark)
    index = _chain_index(ruleset, table)
    if chain not in index:
        raise KindlabError(f"trace: no chain {chain!r} in table {table!r}; chains: {', '.join(sorted(index)) or '-'}")
    policies = _policies(ruleset, table)
    steps = _walk(index, policies, table, chain, packet, unknown == "take", max_jumps)
    frame = pd.DataFrame(steps, columns=STEP_COLUMNS[1:])
    frame.insert(0, "step", range(len(frame)))
    frame["position"] = frame["position"].astype("Int64")
    frame["matched"] = frame["matched"].astype("boolean")
    return frame


def _walk(index: dict[str, list[tuple[Any, ...]]], policies: dict[str, str], table: str, start: str, packet: _Packet,
          take_unknown: bool, max_jumps: int) -> list[tuple[Any, ...]]:
    """The traversal: a stack of (chain, next rule) frames; -j pushes a frame, -g replaces the current one."""
    steps: list[tuple[Any, ...]] = []
    stack = [(start, 0)]
    jumps = 0
    while stack:
        chain, at = stack.pop()
        depth, left = len(stack), None
        for position, rule, target, goto, to_dest, row in index[chain][at:]:
            at += 1
            matched = _rule_matches(row, rule, packet)
            if matched is False:
                continue
            if matched is None and not take_unknown:
                steps.append((depth, table, chain, position, target, to_dest, "skip", None, rule))
                continue
            action = _action(target, goto, index)
            steps.append((depth, table, chain, position, target, to_dest, action, matched, rule))
            if action == "continue":
                _apply_mark(rule, target, packet)
                continue
            if action == "terminate":
                return steps
            left = action
            break
        if left in ("jump", "goto"):
            jumps += 1
            if jumps > max_jumps:
                raise KindlabError(f"trace: more than {max_jumps} jumps from {table}/{start}: do the chains loop?")
            if left == "jump":
                stack.append((chain, at))
            stack.append((steps[-1][4], 0))
            continue
        if chain in policies:  # a built-in chain ended (or RETURNed): its policy decides
            steps.append((depth, table, chain, None, policies[chain], None, "policy", True, None))
            return steps
        if left is None:
            steps.append((depth, table, chain, None, "RETURN", None, "return", True, None))
    if start in policies:  # a -g from the built-in chain, then the end of the chain it went to
        steps.append((0, table, start, None, policies[start], None, "policy", True, None))
    return steps


def _action(target: str | None, goto: bool, index: dict[str, list[tuple[Any, ...]]]) -> str:
    """What a matching rule does with the packet."""
    if target is None or target in _NON_TERMINATING:
        return "continue"
    if target == "RETURN":
        return "return"
    if target in index:
        return "goto" if goto else "jump"
    return "terminate"


def _chain_index(ruleset: Ruleset, table: str) -> dict[str, list[tuple[Any, ...]]]:
    """chain -> [(position, rule, target, goto, to_destination, row)] for one table, cached on the ruleset."""
    if table not in ruleset._index:
        chains = ruleset.chains[ruleset.chains["table"] == table]
        index: dict[str, list[tuple[Any, ...]]] = {str(name): [] for name in chains["chain"]}
        rules = ruleset.rules[ruleset.rules["table"] == table]
        cols = ["chain", "position", "rule", "target", "goto", "to_destination", "protocol", "source", "destination",
                "in_interface", "out_interface", "matches"]
        for chain, position, rule, target, goto, to_dest, *row in zip(*(rules[c].tolist() for c in cols),
                                                                       strict=True):
            target = None if pd.isna(target) else target
            to_dest = None if pd.isna(to_dest) else to_dest
            index.setdefault(chain, []).append((position, rule, target, goto, to_dest, row))
        ruleset._index[table] = index
    return ruleset._index[table]


def _policies(ruleset: Ruleset, table: str) -> dict[str, str]:
    """Built-in chain -> policy, for one table."""
    chains = ruleset.chains[(ruleset.chains["table"] == table) & ruleset.chains["builtin"]]
    return dict(zip(chains["chain"].astype(str), chains["policy"].astype(str), strict=True))


def _rule_matches(row: list[Any], rule: str, packet: _Packet) -> bool | None:
    """True, False or None (cannot tell) for one rule and the packet."""
    protocol, source, destination, in_if, out_if, modules = row
    verdict: bool | None = True
    for value, check in ((protocol, _check_protocol), (source, _check_address_src), (destination, _check_address_dst),
                         (in_if, _check_in), (out_if, _check_out)):
        if isinstance(value, str):
            neg, value = (True, value[1:]) if value[:1] == "!" else (False, value)
            result = _negate(check(value, packet), neg)
            if result is False:
                return False
            if result is None:
                verdict = None
    if modules:
        for module, options in _module_options(rule):
            result = _check_module(module, options, packet)
            if result is False:
                return False
            if result is None:
                verdict = None
    return verdict


def _negate(result: bool | None, neg: bool) -> bool | None:
    return None if result is None else result != neg


def _module_options(rule: str) -> list[tuple[str, list[tuple[bool, str, list[str]]]]]:
    """`-m NAME` sections of a rule: [(name, [(negated, option, values)])], other options left out."""
    sections: list[tuple[str, list[tuple[bool, str, list[str]]]]] = []
    current: list[tuple[bool, str, list[str]]] | None = None
    neg = False
    args = split_args(rule)
    i = 2
    while i < len(args):
        arg = args[i]
        kind = OPTIONS.get(arg)
        if arg == "!":
            neg = True
        elif kind == MATCH and i + 1 < len(args):
            current = []
            sections.append((args[i + 1], current))
            i += 1
        elif kind is not None and (0 <= kind < 5 or kind in (JUMP, GOTO)):
            current, neg = None, False
            i += 1
        elif current is not None and arg.startswith("--"):
            values = []
            while i + 1 < len(args) and not args[i + 1].startswith("-") and args[i + 1] != "!":
                values.append(args[i + 1])
                i += 1
            current.append((neg, arg, values))
            neg = False
        i += 1
    return sections


def _check_module(module: str, options: list[tuple[bool, str, list[str]]], packet: _Packet) -> bool | None:
    """One `-m` module with its options."""
    if module == "comment":
        return True
    verdict: bool | None = True
    for neg, option, values in options:
        result = _negate(_check_option(module, option, values, packet), neg)
        if result is False:
            return False
        if result is None:
            verdict = None
    return verdict


def _check_option(module: str, option: str, values: list[str], packet: _Packet) -> bool | None:
    """One option of a match module; None for what trace() does not evaluate."""
    value = values[0] if len(values) == 1 else None
    if value is None:
        return None
    if module in _PORT_MODULES and option in ("--dport", "--destination-port", "--sport", "--source-port"):
        port = packet.dst_port if option in ("--dport", "--destination-port") else packet.src_port
        return in_ports(port, value)
    if module == "multiport":
        if option in ("--dports", "--destination-ports"):
            return in_ports(packet.dst_port, value)
        if option in ("--sports", "--source-ports"):
            return in_ports(packet.src_port, value)
        if option == "--ports":
            hits = [in_ports(packet.dst_port, value), in_ports(packet.src_port, value)]
            return True if True in hits else (None if None in hits else False)
    if module == "addrtype" and option in ("--dst-type", "--src-type"):
        local = packet.dst_local if option == "--dst-type" else packet.src_local
        types = set(value.upper().split(","))
        if local is None:
            return None
        if local:  # a local address has the type LOCAL, not UNICAST
            return "LOCAL" in types
        return False if types == {"LOCAL"} else None
    if module in ("conntrack", "state") and option in ("--ctstate", "--state"):
        return None if packet.ctstate is None else packet.ctstate.upper() in value.upper().split(",")
    if module == "mark" and option == "--mark":
        mark, mask = _mark_value(value)
        return None if packet.mark is None or mark is None else (packet.mark & mask) == mark
    return None


def _mark_value(text: str) -> tuple[int | None, int]:
    """`0x2000/0x2000` -> (0x2000, 0x2000); a bare value has the mask 0xffffffff."""
    value, _, mask = text.partition("/")
    try:
        return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF
    except ValueError:
        return None, 0


def _apply_mark(rule: str, target: str | None, packet: _Packet) -> None:
    """MARK --set-xmark/--set-mark/--or-mark/--and-mark/--xor-mark change the packet's mark."""
    if target != "MARK" or packet.mark is None:
        return
    args = split_args(rule)
    for option in ("--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark"):
        if option in args[:-1]:
            value, mask = _mark_value(args[args.index(option) + 1])
            if value is None:
                packet.mark = None
            elif option == "--set-xmark":
                packet.mark = (packet.mark & ~mask & 0xFFFFFFFF) ^ value
            elif option == "--set-mark":
                packet.mark = (packet.mark & ~mask & 0xFFFFFFFF) | value
            elif option == "--or-mark":
                packet.mark |= value
            elif option == "--and-mark":
                packet.mark &= value
            else:
                packet.mark ^= value
            return


def _protocol_name(protocol: str | int | None) -> str | None:
    if protocol is None:
        return None
    name = str(protocol).lower()
    return _PROTOCOL_NUMBERS.get(name, name)


def _address(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise KindlabError(f"trace: {text!r} is not an IP address") from None


@lru_cache(maxsize=65536)
def _networks(text: str) -> tuple[Any, ...]:
    """`10.0.0.0/8` or `a,b` -> networks; () when unreadable."""
    try:
        return tuple(ipaddress.ip_network(part, strict=False) for part in text.split(","))
    except ValueError:
        return ()


def _check_address(value: str, address: Any) -> bool | None:
    networks = _networks(value)
    if address is None or not networks:
        return None
    return any(address.version == net.version and address in net for net in networks)


def _check_address_src(value: str, packet: _Packet) -> bool | None:
    return _check_address(value, packet.src)


def _check_address_dst(value: str, packet: _Packet) -> bool | None:
    return _check_address(value, packet.dst)


def _check_protocol(value: str, packet: _Packet) -> bool | None:
    wanted = _protocol_name(value)
    if wanted in ("all", "0"):
        return True
    return None if packet.protocol is None else packet.protocol == wanted


def _check_interface(value: str, name: str | None) -> bool | None:
    if name is None:
        return None
    return name.startswith(value[:-1]) if value.endswith("+") else name == value


def _check_in(value: str, packet: _Packet) -> bool | None:
    return _check_interface(value, packet.in_interface)


def _check_out(value: str, packet: _Packet) -> bool | None:
    return _check_interface(value, packet.out_interface)

