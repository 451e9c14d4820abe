"""iptables-save text -> Ruleset: a scan over the lines, then the rule lines, one row each."""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import Any

from ..errors import IptablesParseError
from .arguments import GOTO, MATCH, MAX_COUNTER, OPAQUE, OPTIONS, WS, LineError, join, split_args
from .frames import CHAIN_CELL, NVALUES, RULE_CELL, WIDTH, chain_frame, rule_frame
from .ruleset import Ruleset, written_lines


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
        # (table's index, chain's code, builtin, policy, packets, bytes, lineno)
        self.chains: list[tuple[Any, ...]] = []
        self.runs: list[_Run] = []
        self.names: dict[str, int] = {}
        self.tables: dict[str, dict[int, int]] = {}  # table -> chain's code -> order of declaration
        self.table: str | None = None
        self.table_line = 0
        self.chain_names = 0
        self.lines: list[tuple[int, str]] = []  # (lineno, line): *table, COMMIT, comments, blank lines
        self.odd: dict[int, str] = {}  # lineno -> a chain or rule line that its row would not write as it is

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
        except LineError as exc:
            raise _parse_error(str(exc), done + 1, lines[done]) from None
        if self.table is not None:
            where = self.table_line
            raise _parse_error(f"table {self.table!r} has no COMMIT", where, lines[where - 1])
        self.chain_names = len(self.names)  # rules add target names after these

    def add_run(self, index: int, lines: list[str]) -> None:
        """Rule lines: they must be inside a table."""
        if self.table is None:
            raise LineError("rule outside a table (no *table line before it)")
        self.runs.append(_Run(self.table, index, lines, len(self.tables[self.table]), len(lines)))

    def other(self, index: int, line: str) -> None:
        """Any line but a rule, dispatched on its first character."""
        head = line[:1]
        if head == ":":
            self.chain(index + 1, line)
            return
        if head == "*":
            self.start_table(index + 1, line)
        elif line.rstrip(WS) == "COMMIT":
            if self.table is None:
                raise LineError("COMMIT outside a table (no *table line before it)")
            self.table = None
        elif head in WS and line.strip(WS):  # indented: read without the indent, written back as it is
            stripped = line.lstrip(WS)
            if stripped[:1] in _RULE_HEADS:
                self.add_run(index, [stripped])
            else:
                self.other(index, stripped)
            if self.lines and self.lines[-1][0] == index + 1:
                self.lines[-1] = (index + 1, line)
            else:
                self.odd[index + 1] = line
            return
        elif head != "#" and line.strip(WS):
            raise LineError("not a line of iptables-save output (expected *table, :chain, a rule, COMMIT or #)")
        self.lines.append((index + 1, line))

    def start_table(self, lineno: int, line: str) -> None:
        """`*nat`: a table starts; the previous one must have been committed."""
        if self.table is not None:
            raise LineError(f"table {self.table!r} (line {self.table_line}) has no COMMIT before this table")
        name = line[1:].strip(WS)
        if not name or any(c in WS for c in name):
            raise LineError("a table line is `*` and one name, e.g. `*nat`")
        if name in self.tables:
            raise LineError(f"table {name!r} appears twice")
        self.tables[name] = {}
        self.table, self.table_line = name, lineno

    def chain(self, lineno: int, line: str) -> None:
        """`:NAME POLICY [packets:bytes]`; the policy of a user chain is `-`."""
        table = self.table
        if table is None:
            raise LineError("chain declared outside a table (no *table line before it)")
        parts = line[1:].split()
        packets: int | None
        nbytes: int | None
        if len(parts) == 3:
            packets, nbytes, _ = _ZERO if parts[2] == "[0:0]" else _counters(parts[2])
        elif len(parts) == 2:
            packets = nbytes = None
        else:
            raise LineError("a chain line is `:NAME POLICY [packets:bytes]`")
        name, policy = parts[0], parts[1]
        names = self.names
        code = names.get(name)
        if code is None:
            code = names[name] = len(names)
        declared = self.tables[table]
        if code in declared:
            raise LineError(f"chain {name!r} declared twice in table {table!r}")
        declared[code] = len(declared)
        if policy == "-":
            self.chains.append((len(self.tables) - 1, code, False, None, packets, nbytes, lineno))
        else:
            self.chains.append((len(self.tables) - 1, code, True, policy, packets, nbytes, lineno))
        written = f":{name} {policy}" if packets is None else f":{name} {policy} [{packets}:{nbytes}]"
        if line != written:
            self.odd[lineno] = line


_RULE_HEADS = ("-", "[")


@lru_cache(maxsize=4096)
def _counters(token: str) -> tuple[int, int, bool]:
    """`[12:3456]` -> (12, 3456, True); False when the numbers are written otherwise (`[012:3456]`)."""
    packets, colon, nbytes = token[1:-1].partition(":")
    if (token[:1] != "[" or token[-1:] != "]" or not colon or not packets.isascii() or not packets.isdigit()
            or not nbytes.isascii() or not nbytes.isdigit()):
        raise LineError(f"bad counters {token!r}: expected [packets:bytes]")
    value = (int(packets), int(nbytes))
    if max(value) > MAX_COUNTER:
        raise LineError(f"counters {token!r} are too large")
    return (*value, token == f"[{value[0]}:{value[1]}]")


_ZERO = (0, 0, True)



_GET_OPTION = OPTIONS.get
_COMMENT: Any = object()  # stands for `-m comment --comment "<the quoted argument>"` in _rule_row()
_ANY: Any = object()
_COMMENT_ARGS = ["-m", "comment", "--comment"]


def _rule_row(line: str, names: dict[str, int], seen: dict[Any, Any], odd: list[Any], out: list[Any], at: int) -> None:
    """`[p:b] -A CHAIN options...` -> one row (ROW_COLUMNS), written to `out[at:at + WIDTH]` (all None before).

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
            if len(tokens) > 1 and tokens[-1] != "!" and tokens[-1] not in OPTIONS:  # `-m` is not a value
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
        args = iter(split_args(line))
        quoted = _ANY
    nxt, get = args.__next__, _GET_OPTION
    first = next(args, "")
    packets = nbytes = None
    if first[:1] == "[":
        packets, nbytes, plain = _ZERO if first == "[0:0]" else _counters(first)
        rest = line[len(first) + 1:]
        if not plain or rest[:1] in WS or line[len(first):len(first) + 1] != " ":
            odd.append((at, line))  # the row will not write it back as it is
            rest = rest.lstrip(WS)
        line = rest
        first = next(args, "")
    if first != "-A" and first != "--append":
        raise LineError("a rule line is `[packets:bytes] -A CHAIN ...` (only -A, as iptables-save writes)")
    name = next(args, "")
    if not name:
        raise LineError("-A needs a chain")
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
                        raise LineError("`! !`: a negation must precede an option")
                    neg = True
                    continue
                else:
                    value = None
            else:
                value = nxt()
                if kind >= 0:  # one of the VALUE_COLUMNS
                    if out[at + kind] is None:
                        out[at + kind] = "!" + value if neg else value
                        neg = False
                        continue
                elif kind == MATCH:
                    if not neg:
                        mods.append(value)
                        continue
                elif kind != OPAQUE and target is None:
                    if neg:
                        raise LineError(f"{arg} cannot be negated")
                    target, goto = value, kind == GOTO
                    continue
            # kept as text: unknown, repeated or free-text options
            if target is None:
                kept = mopts = [] if mopts is None else mopts
            else:
                kept = topts = [] if topts is None else topts
            if neg:
                kept.append("!")
                neg = False
            kept.append(arg)
            if value is not None:
                kept.append(value)
    except StopIteration:
        raise LineError(f"option {arg} needs a value") from None
    if neg:
        raise LineError("`!` at the end of the rule: it must precede an option")
    code: int | None
    if target is None:
        code = -1
    else:
        code = names.get(target)
        if code is None:
            code = names[target] = len(names)
    mtext = ttext = None
    if mopts is not None:
        mtext = " ".join(mopts) if quoted is None or quoted is not _ANY and quoted not in mopts else join(mopts)
    if topts is not None:
        ttext = " ".join(topts) if quoted is None or quoted is not _ANY and quoted not in topts else join(topts)
    matches = tuple(mods)
    out[at + NVALUES:at + WIDTH] = (packets, nbytes, chain, code, goto, seen.setdefault(matches, matches), mtext,
                                      ttext, line)


def _parse_run(run: _Run, layout: _Layout, seen: dict[Any, Any], cells: list[Any], at: int) -> None:
    """Parse one run of rule lines into `cells[at:]` (WIDTH per rule) and check their chains; errors name the line."""
    names, declared = layout.names, layout.tables[run.table]
    odd: list[tuple[int, str]] = []
    offsets = range(at, at + len(run.lines) * WIDTH, WIDTH)
    try:
        deque(map(_rule_row, run.lines, repeat(names), repeat(seen), repeat(odd), repeat(cells), offsets), maxlen=0)
    except LineError:
        cells[at:at + len(run.lines) * WIDTH] = [None] * (len(run.lines) * WIDTH)
        for line, offset in zip(run.lines, offsets, strict=True):
            try:
                _rule_row(line, names, seen, odd, cells, offset)
            except LineError as exc:
                raise _parse_error(str(exc), run.index + (offset - at) // WIDTH + 1, line) from None
    for offset, line in odd:
        layout.odd.setdefault(run.index + (offset - at) // WIDTH + 1, line)  # an indented line is there already
    chains = cells[at + CHAIN_CELL:at + len(run.lines) * WIDTH:WIDTH]
    for code in set(chains):
        if declared.get(code, run.declared) >= run.declared:
            i = chains.index(code)
            name = split_args(cells[at + i * WIDTH + RULE_CELL])[1]
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
    Nothing is dropped: `to_iptables_save()` writes the input back from the frames, byte for byte.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "surrogateescape")
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the text of iptables-save, not {type(text).__name__}")
    with _gc_paused():
        layout = _Layout()
        layout.scan(text.split("\n"))
        cells: list[Any] = [None] * (sum(run.size for run in layout.runs) * WIDTH)
        seen: dict[Any, Any] = {}  # the `matches` tuples, shared: most rules repeat a few combinations
        at = 0
        for run in layout.runs:
            _parse_run(run, layout, seen, cells, at)
            at += run.size * WIDTH
        ruleset = Ruleset(chain_frame(layout), rule_frame(layout, cells), layout.lines)  # rule_frame empties `cells`
        if layout.odd:
            written = written_lines(ruleset, list(layout.odd))
            ruleset.verbatim = {lineno: (written[lineno], line) for lineno, line in layout.odd.items()}
        del layout, seen  # before the GC resumes, so that it has fewer objects to look at
    return ruleset


def _parse_error(why: str, lineno: int, line: str) -> IptablesParseError:
    """The error parse() raises: line number, the line, and what to do."""
    shown = line if len(line) <= 200 else line[:200] + "..."
    return IptablesParseError(f"iptables-save text, line {lineno}: {why}: {shown!r} "
                              "(pass the output of `iptables-save` or `iptables-save -c`)", lineno, line)

