"""iptables-save output as pandas: parse it, diff two of it, trace a packet through it.

    rs = kindlab.iptables.parse(text)          # text of `iptables-save [-c]` or `ip6tables-save [-c]`
    rs.chains, rs.rules                        # DataFrames: one row per chain, one row per rule
    rs.to_iptables_save() == text              # the text, byte for byte
    kindlab.iptables.diff(before, after)       # the rules portmap's ADD (or DEL) added (or removed)
    kindlab.iptables.trace(rs, "nat", "PREROUTING", protocol="tcp", dst_port=80, dst_local=True)
    kindlab.iptables.node_rules(lab, "kind-worker")

`rules`, one row per `-A` line in the text's order (RULE_COLUMNS):

- `table`, `chain` (categoricals), `position` (1-based within the chain), `lineno` (1-based in the text);
- `packets`, `bytes`: nullable Int64, from the `[p:b]` of `iptables-save -c`; <NA> without `-c`;
- `protocol`, `source`, `destination`, `in_interface`, `out_interface`, `dport` (tcp/udp `--dport`),
  `dports` (multiport `--dports`): the value as written, with a leading `!` when negated: `! -s 10.0.0.0/8`
  is `"!10.0.0.0/8"`, so a filter on `"10.0.0.0/8"` never picks a negated rule;
- `matches`: the `-m` modules in order, a tuple of str, e.g. `("comment", "multiport")`;
- `comment`: the `--comment` text, unescaped (`say "hi"`, not `say \\"hi\\"`);
- `match_options`: the match options without a column of their own, in order, as iptables text
  (`--mode random --probability 0.5`, `! --ctstate NEW`); a repeated option lands here too, so nothing
  is dropped;
- `target` (categorical), `goto` (True for `-g`), `to_destination` (`--to-destination`) and
  `target_options`: the target's other options as text (`--set-xmark 0x2000/0x2000`);
- `rule`: the rule's text without counters, as `iptables-save` prints it: `-A CHAIN ...`.

`protocol`, `in_interface` and `out_interface` are categoricals too (NaN where absent); the other text
columns hold str, or None where the rule has no such option (object dtype: pandas' str dtype would cost
parse() ~8% more). `chains` (CHAIN_COLUMNS): `table`, `chain`, `builtin`, `policy` (NaN for user
chains), `packets`, `bytes`, `lineno`.

Lines are split into arguments as iptables-restore splits them: a double quote opens and closes a
quoted argument, in which a backslash escapes the next character; whitespace is ASCII whitespace.
"""

from __future__ import annotations

import gc
import ipaddress
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import IptablesParseError, KindlabError

__all__ = ["CHAIN_COLUMNS", "RULE_COLUMNS", "STEP_COLUMNS", "Ruleset", "diff", "node_rules", "parse", "trace"]

CHAIN_COLUMNS = ["table", "chain", "builtin", "policy", "packets", "bytes", "lineno"]
RULE_COLUMNS = ["table", "chain", "position", "packets", "bytes", "protocol", "source", "destination",
                "in_interface", "out_interface", "matches", "comment", "dport", "dports", "match_options",
                "target", "goto", "to_destination", "target_options", "rule", "lineno"]
STEP_COLUMNS = ["step", "depth", "table", "chain", "position", "target", "to_destination", "action", "matched",
                "rule"]

# Rule options with a column of their own -> the index of that column in _VALUE_COLUMNS; the others' kinds.
_MATCH, _JUMP, _GOTO, _OPAQUE = -1, -2, -3, -4
_OPTIONS = {
    "-p": 0, "--protocol": 0, "-s": 1, "--source": 1, "--src": 1, "-d": 2, "--destination": 2, "--dst": 2,
    "-i": 3, "--in-interface": 3, "-o": 4, "--out-interface": 4,
    "--comment": 5, "--dport": 6, "--destination-port": 6, "--dports": 7, "--destination-ports": 7,
    "--to-destination": 8,
    "-m": _MATCH, "--match": _MATCH, "-j": _JUMP, "--jump": _JUMP, "-g": _GOTO, "--goto": _GOTO,
}
# Options without a column that take exactly one value: kept as text with it. This matters for free text that
# iptables-save prints unquoted when it looks like an option (`--log-prefix -j`), and saves time for the rest.
_OPTIONS.update(dict.fromkeys([
    "--log-prefix", "--nflog-prefix", "--ulog-prefix", "--log-level", "--nflog-group", "--mode", "--probability",
    "--every", "--packet", "--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark", "--mark",
    "--dst-type", "--src-type", "--ctstate", "--state", "--reject-with", "--limit", "--limit-burst", "--to-source",
    "--to-ports", "--sport", "--source-port", "--sports", "--source-ports", "--icmp-type", "--icmpv6-type",
    "--uid-owner", "--gid-owner", "--physdev-in", "--physdev-out", "--ctmask", "--nfmask", "--save-mark",
], _OPAQUE))
_WS = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.split() splits an ASCII string on
_MAX_COUNTER = 2**63 - 1


class _LineError(Exception):
    """A problem with one line; parse() turns it into IptablesParseError with the line's number."""


# -- splitting a line into arguments ------------------------------------------------------------
def _split_args(line: str) -> list[str]:
    """Split one line into arguments as iptables-restore does: `"a b"` is one, `\\"` inside quotes is `"`."""
    if line.isascii():
        if '"' not in line:
            return line.split()
        if "\\" not in line:
            args = _split_plain_quotes(line)
            if args is not None:
                return args
    return _split_slow(line)


def _split_plain_quotes(line: str) -> list[str] | None:
    """Fast path for quotes without backslashes, each opening a new argument; None when that does not hold."""
    parts = line.split('"')
    if not len(parts) % 2:
        return None  # an unterminated quote: the slow path says so
    args = parts[0].split()
    for k in range(1, len(parts), 2):
        before = parts[k - 1]
        if before and before[-1] not in _WS:
            return None  # the quote continues an argument (a"b c"): the slow path handles it
        args.append(parts[k])
        args += parts[k + 1].split()
    return args


def _split_slow(line: str) -> list[str]:
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
        elif ch in _WS:
            if buf:
                args.append("".join(buf))
                buf = []
        else:
            buf.append(ch)
    if quoted:
        raise _LineError("unterminated double quote")
    if buf:
        args.append("".join(buf))
    return args


_MUST_QUOTE = re.compile("[" + re.escape(_WS) + '"\\\\]')  # whitespace, a double quote or a backslash
_ODD = re.compile("[" + re.escape(_WS.replace(" ", "")) + '"\\\\]')  # the same but a space


def _quote(arg: str) -> str:
    """An argument as iptables-save writes it: quoted (with \\ and \" escaped) when it must be."""
    if arg and not _MUST_QUOTE.search(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(args: tuple[str, ...] | list[str]) -> str:
    """Arguments back to one line of text, quoting only where needed."""
    text = " ".join(args)
    if text.count(" ") == len(args) - 1 and "" not in args and not _ODD.search(text):
        return text
    return " ".join(map(_quote, args))


# -- parsing ----------------------------------------------------------------------------------
@dataclass(eq=False)
class Ruleset:
    """One `iptables-save` text and its `chains` and `rules` as DataFrames (see the module's docstring)."""

    chains: pd.DataFrame
    rules: pd.DataFrame
    text: str = field(repr=False)
    _index: dict[str, dict[str, list[tuple]]] = field(default_factory=dict, init=False, repr=False)  # trace()

    def to_iptables_save(self) -> str:
        """The text this ruleset was parsed from, unchanged: a byte-for-byte round trip by construction."""
        return self.text

    @property
    def tables(self) -> list[str]:
        """The tables, in the text's order (an empty one too)."""
        dtype = self.chains["table"].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return [str(table) for table in dtype.categories]
        return list(dict.fromkeys(self.chains["table"].astype(str)))

    def __repr__(self) -> str:
        return f"<Ruleset: {len(self.tables)} tables, {len(self.chains)} chains, {len(self.rules)} rules>"


@dataclass
class _Run:
    """Consecutive rule lines of one table: where they start and how many chains were declared before them."""

    table: str
    index: int  # of the first line, 0-based
    lines: list[str]  # emptied once parsed, so that the lines can go
    declared: int
    size: int


class _Layout:
    """The lines that are not rules (tables, chains, COMMIT, comments), checked in order; rules come in runs.

    `names` numbers every chain and target name: the codes of the `chain` and `target` categoricals.
    """

    def __init__(self) -> None:
        self.chains: list[tuple] = []  # (table's index, chain's code, builtin, policy, packets, bytes, lineno)
        self.runs: list[_Run] = []
        self.names: dict[str, int] = {}
        self.tables: dict[str, dict[int, int]] = {}  # table -> chain's code -> order of declaration
        self.table: str | None = None
        self.table_line = 0
        self.chain_names = 0

    def scan(self, lines: list[str]) -> None:
        """One pass over the lines; rule lines are only sliced out here, in runs."""
        done = 0
        chain, other = self.chain, self.other
        try:
            for i, line in [(i, line) for i, line in enumerate(lines) if line[:1] not in _RULE_HEADS]:
                if i > done:
                    self.add_run(done, lines[done:i])
                done = i
                if line[:1] == ":":
                    chain(i + 1, line)
                else:
                    other(i, line)
                done = i + 1
            if done < len(lines):
                self.add_run(done, lines[done:])
        except _LineError as exc:
            raise _parse_error(str(exc), done + 1, lines[done]) from None
        if self.table is not None:
            where = self.table_line
            raise _parse_error(f"table {self.table!r} has no COMMIT", where, lines[where - 1])
        self.chain_names = len(self.names)  # rules add target names after these

    def add_run(self, index: int, lines: list[str]) -> None:
        """Rule lines: they must be inside a table."""
        if self.table is None:
            raise _LineError("rule outside a table (no *table line before it)")
        self.runs.append(_Run(self.table, index, lines, len(self.tables[self.table]), len(lines)))

    def other(self, index: int, line: str) -> None:
        """Any line but a rule, dispatched on its first character."""
        head = line[:1]
        if head == ":":
            self.chain(index + 1, line)
        elif head == "#":
            pass
        elif head == "*":
            self.start_table(index + 1, line)
        elif line.rstrip(_WS) == "COMMIT":
            if self.table is None:
                raise _LineError("COMMIT outside a table (no *table line before it)")
            self.table = None
        elif not line.strip(_WS):
            pass
        elif head in _WS and line.lstrip(_WS)[:1] in _RULE_HEADS:
            self.add_run(index, [line.lstrip(_WS)])
        elif head in _WS:
            self.other(index, line.lstrip(_WS))
        else:
            raise _LineError("not a line of iptables-save output (expected *table, :chain, a rule, COMMIT or #)")

    def start_table(self, lineno: int, line: str) -> None:
        """`*nat`: a table starts; the previous one must have been committed."""
        if self.table is not None:
            raise _LineError(f"table {self.table!r} (line {self.table_line}) has no COMMIT before this table")
        name = line[1:].strip(_WS)
        if not name or any(c in _WS for c in name):
            raise _LineError("a table line is `*` and one name, e.g. `*nat`")
        if name in self.tables:
            raise _LineError(f"table {name!r} appears twice")
        self.tables[name] = {}
        self.table, self.table_line = name, lineno

    def chain(self, lineno: int, line: str) -> None:
        """`:NAME POLICY [packets:bytes]`; the policy of a user chain is `-`."""
        table = self.table
        if table is None:
            raise _LineError("chain declared outside a table (no *table line before it)")
        parts = line[1:].split()
        if len(parts) == 3:
            packets, nbytes = (0, 0) if parts[2] == "[0:0]" else _counters(parts[2])
        elif len(parts) == 2:
            packets = nbytes = None
        else:
            raise _LineError("a chain line is `:NAME POLICY [packets:bytes]`")
        name, policy = parts[0], parts[1]
        names = self.names
        code = names.get(name)
        if code is None:
            code = names[name] = len(names)
        declared = self.tables[table]
        if code in declared:
            raise _LineError(f"chain {name!r} declared twice in table {table!r}")
        declared[code] = len(declared)
        if policy == "-":
            self.chains.append((len(self.tables) - 1, code, False, None, packets, nbytes, lineno))
        else:
            self.chains.append((len(self.tables) - 1, code, True, policy, packets, nbytes, lineno))


_RULE_HEADS = ("-", "[")


@lru_cache(maxsize=4096)
def _counters(token: str) -> tuple[int, int]:
    """`[12:3456]` -> (12, 3456)."""
    packets, colon, nbytes = token[1:-1].partition(":")
    if (token[:1] != "[" or token[-1:] != "]" or not colon or not packets.isascii() or not packets.isdigit()
            or not nbytes.isascii() or not nbytes.isdigit()):
        raise _LineError(f"bad counters {token!r}: expected [packets:bytes]")
    value = (int(packets), int(nbytes))
    if max(value) > _MAX_COUNTER:
        raise _LineError(f"counters {token!r} are too large")
    return value


# The row _rule_row() makes: RULE_COLUMNS but table, position and lineno (which come from the runs);
# `chain` and `target` are codes into _Layout.names (-1: no target).
_VALUE_COLUMNS = ["protocol", "source", "destination", "in_interface", "out_interface", "comment", "dport", "dports",
                  "to_destination"]  # in the order of the _OPTIONS indices
_ROW_COLUMNS = [*_VALUE_COLUMNS, "packets", "bytes", "chain", "target", "goto", "matches", "match_options",
                "target_options", "rule"]
_WIDTH, _NVALUES = len(_ROW_COLUMNS), len(_VALUE_COLUMNS)
_CHAIN, _RULE = _ROW_COLUMNS.index("chain"), _ROW_COLUMNS.index("rule")
_GET_OPTION = _OPTIONS.get
_COMMENT: Any = object()  # stands for `-m comment --comment "<the quoted argument>"` in _rule_row()
_ANY: Any = object()
_COMMENT_ARGS = ["-m", "comment", "--comment"]


def _rule_row(line: str, names: dict[str, int], seen: dict, out: list, at: int) -> None:
    """`[p:b] -A CHAIN options...` -> one row (_ROW_COLUMNS), written to `out[at:at + _WIDTH]` (all None before).

    The hot loop of parse(): kept flat on purpose.
    """
    parts = line.split('"')
    quoted: Any = None  # the one argument that may need quotes again in the *_options text (_ANY: any may)
    if len(parts) == 1 and line.isascii():
        args = iter(line.split())
    elif len(parts) == 3 and (not parts[0] or parts[0][-1] == " ") and "\\" not in parts[1] and line.isascii():
        quoted = parts[1]  # one quoted argument, as a comment: the common case
        head = parts[0]
        if head.endswith(" -m comment --comment "):
            tokens = head[:-22].split()
            if len(tokens) > 1 and tokens[-1] != "!" and tokens[-1] not in _OPTIONS:  # `-m` is not a value
                tokens.append(_COMMENT)  # `-m comment --comment "..."`, read in one go below
            else:
                tokens += _COMMENT_ARGS
                tokens.append(quoted)
        else:
            tokens = head.split()
            tokens.append(quoted)
        tokens += parts[2].split()
        args = iter(tokens)
    else:
        args = iter(_split_args(line))
        quoted = _ANY
    nxt, get = args.__next__, _GET_OPTION
    first = next(args, "")
    packets = nbytes = None
    if first[:1] == "[":
        packets, nbytes = (0, 0) if first == "[0:0]" else _counters(first)
        line = line[len(first) + 1:]
        if line[:1] in _WS:
            line = line.lstrip(_WS)
        first = next(args, "")
    if first != "-A" and first != "--append":
        raise _LineError("a rule line is `[packets:bytes] -A CHAIN ...` (only -A, as iptables-save writes)")
    name = next(args, "")
    if not name:
        raise _LineError("-A needs a chain")
    chain = names.get(name, -1)
    mods: list[str] = []
    mopts: list[str] | None = None
    topts: list[str] | None = None
    target = None
    goto = neg = False
    arg = ""
    try:
        for arg in args:
            kind = get(arg)
            if kind is None:
                if arg is _COMMENT:
                    mods.append("comment")
                    if out[at + 5] is None:
                        out[at + 5] = quoted
                        continue
                    arg, value = "--comment", quoted  # a second comment: kept as text
                elif arg == "!":
                    if neg:
                        raise _LineError("`! !`: a negation must precede an option")
                    neg = True
                    continue
                else:
                    value = None
            else:
                value = nxt()
                if kind >= 0:  # one of the _VALUE_COLUMNS
                    if out[at + kind] is None:
                        out[at + kind] = "!" + value if neg else value
                        neg = False
                        continue
                elif kind == _MATCH:
                    if not neg:
                        mods.append(value)
                        continue
                elif kind != _OPAQUE and target is None:
                    if neg:
                        raise _LineError(f"{arg} cannot be negated")
                    target, goto = value, kind == _GOTO
                    continue
            # kept as text: unknown, repeated or free-text options
            if target is None:
                rest = mopts = [] if mopts is None else mopts
            else:
                rest = topts = [] if topts is None else topts
            if neg:
                rest.append("!")
                neg = False
            rest.append(arg)
            if value is not None:
                rest.append(value)
    except StopIteration:
        raise _LineError(f"option {arg} needs a value") from None
    if neg:
        raise _LineError("`!` at the end of the rule: it must precede an option")
    if target is None:
        code = -1
    else:
        code = names.get(target)
        if code is None:
            code = names[target] = len(names)
    if mopts is not None:
        mopts = " ".join(mopts) if quoted is None or quoted is not _ANY and quoted not in mopts else _join(mopts)
    if topts is not None:
        topts = " ".join(topts) if quoted is None or quoted is not _ANY and quoted not in topts else _join(topts)
    mods = tuple(mods)
    out[at + _NVALUES:at + _WIDTH] = (packets, nbytes, chain, code, goto, seen.setdefault(mods, mods), mopts, topts,
                                      line)


def _parse_run(run: _Run, names: dict[str, int], seen: dict, declared: dict[int, int], cells: list, at: int
               ) -> None:
    """Parse one run of rule lines into `cells[at:]` (_WIDTH per rule) and check their chains; errors name the line."""
    offsets = range(at, at + len(run.lines) * _WIDTH, _WIDTH)
    try:
        deque(map(_rule_row, run.lines, repeat(names), repeat(seen), repeat(cells), offsets), maxlen=0)
    except _LineError:
        cells[at:at + len(run.lines) * _WIDTH] = [None] * (len(run.lines) * _WIDTH)
        for line, offset in zip(run.lines, offsets, strict=True):
            try:
                _rule_row(line, names, seen, cells, offset)
            except _LineError as exc:
                raise _parse_error(str(exc), run.index + (offset - at) // _WIDTH + 1, line) from None
    chains = cells[at + _CHAIN:at + len(run.lines) * _WIDTH:_WIDTH]
    for code in set(chains):
        if declared.get(code, run.declared) >= run.declared:
            i = chains.index(code)
            name = _split_args(cells[at + i * _WIDTH + _RULE])[1]
            why = f"chain {name!r} is not declared in table {run.table!r} before this rule"
            raise _parse_error(why, run.index + i + 1, run.lines[i])
    run.lines = []


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: parse() allocates ~10^6 objects and none of them form cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse(text: str | bytes) -> Ruleset:
    """Parse `iptables-save` / `ip6tables-save` output (with or without `-c`, nft or legacy) into a Ruleset.

    Raises IptablesParseError, naming the line number and the line, for text that is not such output.
    Bytes are decoded as UTF-8 with surrogateescape, so `.to_iptables_save().encode(...)` gives them back.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "surrogateescape")
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the text of iptables-save, not {type(text).__name__}")
    with _gc_paused():
        layout = _Layout()
        layout.scan(text.split("\n"))
        cells: list = [None] * (sum(run.size for run in layout.runs) * _WIDTH)
        seen: dict = {}  # the `matches` tuples, shared: most rules repeat a few combinations
        at = 0
        for run in layout.runs:
            _parse_run(run, layout.names, seen, layout.tables[run.table], cells, at)
            at += run.size * _WIDTH
        ruleset = Ruleset(_chain_frame(layout), _rule_frame(layout, cells), text)  # _rule_frame empties `cells`
        del layout, seen  # before the GC resumes, so that it has fewer objects to look at
    return ruleset


def _parse_error(why: str, lineno: int, line: str) -> IptablesParseError:
    """The error parse() raises: line number, the line, and what to do."""
    shown = line if len(line) <= 200 else line[:200] + "..."
    return IptablesParseError(f"iptables-save text, line {lineno}: {why}: {shown!r} "
                              "(pass the output of `iptables-save` or `iptables-save -c`)", lineno, line)


def _objects(values: tuple | list) -> np.ndarray:
    """A 1-d object array (np.array() would try to nest tuples)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _categorical(values: tuple | list | np.ndarray) -> pd.Categorical:
    """Categories in order of appearance, None as missing."""
    codes, uniques = pd.factorize(values if isinstance(values, np.ndarray) else _objects(values))
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype="str"))


def _counts(values: tuple | list | np.ndarray) -> pd.arrays.IntegerArray:
    """Counters as nullable Int64 (<NA> where the text had none)."""
    values = np.asarray(values, dtype=object)
    missing = values == None  # noqa: E711  (elementwise, on an object array)
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)


def _chain_frame(layout: _Layout) -> pd.DataFrame:
    """The `chains` DataFrame; `table` and `chain` have the categories of the rules' columns."""
    cols = list(zip(*layout.chains, strict=True)) if layout.chains else [()] * len(CHAIN_COLUMNS)
    return pd.DataFrame({
        "table": pd.Categorical.from_codes(np.array(cols[0], dtype=np.int64), categories=_tables(layout)),
        "chain": pd.Categorical.from_codes(np.array(cols[1], dtype=np.int64),
                                           categories=_names(layout)[:layout.chain_names]),
        "builtin": np.array(cols[2], dtype=bool),
        "policy": _categorical(cols[3]),
        "packets": _counts(cols[4]),
        "bytes": _counts(cols[5]),
        "lineno": np.array(cols[6], dtype=np.int64),
    })


def _tables(layout: _Layout) -> pd.Index:
    return pd.Index(list(layout.tables), dtype="str")


def _names(layout: _Layout) -> pd.Index:
    """Every chain and target name, numbered as _Layout.names: the chains first (scan() met them first)."""
    return pd.Index(list(layout.names), dtype="str")


def _rule_frame(layout: _Layout, cells: list) -> pd.DataFrame:
    """The `rules` DataFrame, column by column; table, position and lineno come from the runs."""
    runs = layout.runs
    count = len(cells) // _WIDTH
    cols = {name: np.fromiter(cells[i::_WIDTH], dtype=object, count=count) for i, name in enumerate(_ROW_COLUMNS)}
    cells.clear()
    tables = list(layout.tables)
    table_codes = np.repeat(np.array([tables.index(run.table) for run in runs], dtype=np.int64),
                            [run.size for run in runs])
    names = _names(layout)
    chain_codes = cols["chain"].astype(np.int64)
    keys = pd.Series(table_codes << 32 | chain_codes)
    data: dict[str, Any] = {
        "table": pd.Categorical.from_codes(table_codes, categories=_tables(layout)),
        "chain": pd.Categorical.from_codes(chain_codes, categories=names[:layout.chain_names]),
        "position": keys.groupby(keys, sort=False).cumcount().to_numpy() + 1,
        "packets": _counts(cols["packets"]),
        "bytes": _counts(cols["bytes"]),
        "target": pd.Categorical.from_codes(cols["target"].astype(np.int64), categories=names),
        "goto": cols["goto"].astype(bool),
        "matches": cols["matches"],
        "lineno": np.concatenate([np.arange(run.index + 1, run.index + 1 + run.size) for run in runs]
                                 or [np.zeros(0, dtype=np.int64)]),
    }
    for name in ("protocol", "in_interface", "out_interface"):
        data[name] = _categorical(cols[name])
    for name in ("source", "destination", "comment", "dport", "dports", "match_options", "to_destination",
                 "target_options", "rule"):
        data[name] = pd.Series(cols[name], dtype=object, copy=False)  # str or None; pandas' str dtype: +8% time
    return pd.DataFrame(data, columns=RULE_COLUMNS, copy=False)


# -- diff -------------------------------------------------------------------------------------
def diff(before: Ruleset, after: Ruleset) -> pd.DataFrame:
    """The rules removed from `before` and added in `after`, ignoring counters and moves within a chain.

    Rules are compared by (table, chain, rule text); a rule present twice counts twice. One row per
    change: `change` ('removed' rows first, in `before`'s order, then 'added', in `after`'s order)
    and the rule's columns, its `position` and `lineno` being in the ruleset it belongs to.
    """
    old, new = _occurrence_keys(before.rules), _occurrence_keys(after.rules)
    removed = before.rules[~old.isin(new)]
    added = after.rules[~new.isin(old)]
    out = pd.concat([_as_plain(removed).assign(change="removed"), _as_plain(added).assign(change="added")],
                    ignore_index=True)
    return out[["change", *RULE_COLUMNS]]


def _occurrence_keys(rules: pd.DataFrame) -> pd.MultiIndex:
    """(table, chain, rule, n): the n-th occurrence of the same rule text in the same chain."""
    keys = rules[["table", "chain", "rule"]].astype(str)
    nth = keys.groupby(["table", "chain", "rule"], sort=False).cumcount()
    return pd.MultiIndex.from_arrays([keys["table"], keys["chain"], keys["rule"], nth])


def _as_plain(rules: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as str, so frames with different categories concatenate cleanly."""
    cats = [c for c in rules.columns if isinstance(rules[c].dtype, pd.CategoricalDtype)]
    return rules.astype({c: "str" for c in cats})


# -- trace ------------------------------------------------------------------------------------
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


def _walk(index: dict[str, list[tuple]], policies: dict[str, str], table: str, start: str, packet: _Packet,
          take_unknown: bool, max_jumps: int) -> list[tuple]:
    """The traversal: a stack of (chain, next rule) frames; -j pushes a frame, -g replaces the current one."""
    steps: list[tuple] = []
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


def _action(target: str | None, goto: bool, index: dict[str, list[tuple]]) -> str:
    """What a matching rule does with the packet."""
    if target is None or target in _NON_TERMINATING:
        return "continue"
    if target == "RETURN":
        return "return"
    if target in index:
        return "goto" if goto else "jump"
    return "terminate"


def _chain_index(ruleset: Ruleset, table: str) -> dict[str, list[tuple]]:
    """chain -> [(position, rule, target, goto, to_destination, row)] for one table, cached on the ruleset."""
    if table not in ruleset._index:
        chains = ruleset.chains[ruleset.chains["table"] == table]
        index: dict[str, list[tuple]] = {str(name): [] for name in chains["chain"]}
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


def _rule_matches(row: list, rule: str, packet: _Packet) -> bool | None:
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
    args = _split_args(rule)
    i = 2
    while i < len(args):
        arg = args[i]
        kind = _OPTIONS.get(arg)
        if arg == "!":
            neg = True
        elif kind == _MATCH and i + 1 < len(args):
            current = []
            sections.append((args[i + 1], current))
            i += 1
        elif kind is not None and (0 <= kind < 5 or kind in (_JUMP, _GOTO)):
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
        return _in_ports(port, value)
    if module == "multiport":
        if option in ("--dports", "--destination-ports"):
            return _in_ports(packet.dst_port, value)
        if option in ("--sports", "--source-ports"):
            return _in_ports(packet.src_port, value)
        if option == "--ports":
            hits = [_in_ports(packet.dst_port, value), _in_ports(packet.src_port, value)]
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


def _in_ports(port: int | None, spec: str) -> bool | None:
    """Is the port in `80`, `80:90` or `80,443:445`?"""
    if port is None:
        return None
    for part in spec.split(","):
        low, colon, high = part.partition(":")
        try:
            lo = int(low) if low else 0
            hi = (int(high) if high else 65535) if colon else lo
        except ValueError:
            return None
        if lo <= port <= hi:
            return True
    return False


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
    args = _split_args(rule)
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
def _networks(text: str) -> tuple:
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


# -- a node's rules ---------------------------------------------------------------------------
def node_rules(lab: Any, node: str, table: str | None = None, ipv6: bool = False) -> Ruleset:
    """Parse `iptables-save -c` (or `ip6tables-save -c`) run in a node of the lab, optionally one table only."""
    cmd = ["ip6tables-save" if ipv6 else "iptables-save", "-c"]
    if table is not None:
        cmd += ["-t", table]
    return parse(lab.exec(node, cmd))
