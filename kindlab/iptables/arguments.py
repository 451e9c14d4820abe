"""A rule line's arguments: split as iptables-restore splits them, quoted as iptables-save quotes them.

Also the options kindlab reads from a rule (OPTIONS), which both parsing and tracing use.
"""

from __future__ import annotations

import re

# Rule options with a column of their own -> the index of that column in frames.VALUE_COLUMNS; the others' kinds.
MATCH, JUMP, GOTO, OPAQUE = -1, -2, -3, -4
OPTIONS = {
    "-p": 0, "--protocol": 0, "-s": 1, "--source": 1, "--src": 1, "-d": 2, "--destination": 2, "--dst": 2,
    "-i": 3, "--in-interface": 3, "-o": 4, "--out-interface": 4,
    "--comment": 5, "--dport": 6, "--destination-port": 6, "--dports": 7, "--destination-ports": 7,
    "--to-destination": 8,
    "-m": MATCH, "--match": MATCH, "-j": JUMP, "--jump": JUMP, "-g": GOTO, "--goto": GOTO,
}
# Options without a column that take exactly one value: kept as text with it. This matters for free text that
# iptables-save prints unquoted when it looks like an option (`--log-prefix -j`), and saves time for the rest.
OPTIONS.update(dict.fromkeys([
    "--log-prefix", "--nflog-prefix", "--ulog-prefix", "--log-level", "--nflog-group", "--mode", "--probability",
    "--every", "--packet", "--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark", "--mark",
    "--dst-type", "--src-type", "--ctstate", "--state", "--reject-with", "--limit", "--limit-burst", "--to-source",
    "--to-ports", "--sport", "--source-port", "--sports", "--source-ports", "--icmp-type", "--icmpv6-type",
    "--uid-owner", "--gid-owner", "--physdev-in", "--physdev-out", "--ctmask", "--nfmask", "--save-mark",
], OPAQUE))
WS = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.split() splits an ASCII string on
MAX_COUNTER = 2**63 - 1


class LineError(Exception):
    """A problem with one line; parse() turns it into IptablesParseError with the line's number."""


# -- splitting a line into arguments ------------------------------------------------------------
def split_args(line: str) -> list[str]:
    """Split one line into arguments as iptables-restore does: `"a b"` is one, `\\"` inside quotes is `"`."""
    if line.isascii():
        if '"' not in line:
            return line.split()
        if "\\" not in line:
            args = _split_plain_quotes(line)
            if args is not None:
                return args
    return split_slow(line)


def _split_plain_quotes(line: str) -> list[str] | None:
    """Fast path for quotes without backslashes, each opening a new argument; None when that does not hold."""
    parts = line.split('"')
    if not len(parts) % 2:
        return None  # an unterminated quote: the slow path says so
    args = parts[0].split()
    for k in range(1, len(parts), 2):
        before = parts[k - 1]
        if before and before[-1] not in WS:
            return None  # the quote continues an argument (a"b c"): the slow path handles it
        args.append(parts[k])
        args += parts[k + 1].split()
    return args


def split_slow(line: str) -> list[str]:
    """Character by character, as iptables' add_param_to_argv(): a closing quote always ends an argument."""
    args: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in line:
        if quoted:
            if escaped:
                buf.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                args.append("".join(buf))
                buf, quoted = [], False
            else:
                buf.append(ch)
        elif ch == '"':
            quoted = True
        elif ch in WS:
            if buf:
                args.append("".join(buf))
                buf = []
        else:
            buf.append(ch)
    if quoted:
        raise LineError("unterminated double quote")
    if buf:
        args.append("".join(buf))
    return args


_MUST_QUOTE = re.compile("[" + re.escape(WS) + '"\\\\]')  # whitespace, a double quote or a backslash
_ODD = re.compile("[" + re.escape(WS.replace(" ", "")) + '"\\\\]')  # the same but a space


def quote(arg: str) -> str:
    """An argument as iptables-save writes it: quoted (with \\ and \" escaped) when it must be."""
    if arg and not _MUST_QUOTE.search(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def join(args: tuple[str, ...] | list[str]) -> str:
    """Arguments back to one line of text, quoting only where needed."""
    text = " ".join(args)
    if text.count(" ") == len(args) - 1 and "" not in args and not _ODD.search(text):
        return text
    return " ".join(map(quote, args))

