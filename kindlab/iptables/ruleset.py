"""Ruleset: the `chains` and `rules` DataFrames, and the text they write back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import KindlabError


@dataclass(eq=False)
class Ruleset:
    """The `chains` and `rules` of an `iptables-save` text as DataFrames (see `kindlab.iptables`).

    `layout` holds the text's other lines, `(lineno, line)`: `*table`, `COMMIT`, comments, blank lines.
    `verbatim` holds, by line number, the chain and rule lines that their row would not write back
    byte for byte (extra whitespace, counters written `[007:1]`): `(what the row writes, the line)`.
    """

    chains: pd.DataFrame
    rules: pd.DataFrame
    layout: list[tuple[int, str]] = field(default_factory=list, repr=False)
    verbatim: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)
    _index: dict[str, dict[str, list[tuple[Any, ...]]]] = field(  # trace()
        default_factory=dict, init=False, repr=False)

    def to_iptables_save(self) -> str:
        """The text, written from the frames: for a parsed ruleset, its input byte for byte.

        Lines go in `lineno` order; a chain line is written from `chain`, `policy`, `packets` and `bytes`,
        a rule line from `packets`, `bytes` and `rule`. So a filtered `rules` frame, or changed counters,
        give the text of that ruleset (rows need their `lineno`).
        """
        for name, frame in (("chains", self.chains), ("rules", self.rules)):
            if frame["lineno"].isna().any():
                raise KindlabError(f"to_iptables_save: {frame['lineno'].isna().sum()} row(s) of `{name}` have no "
                                   "lineno; give each row the line number it is to be written at")
        linenos = np.concatenate([
            np.array([lineno for lineno, _ in self.layout], dtype=np.int64),
            self.chains["lineno"].to_numpy(dtype=np.int64),
            self.rules["lineno"].to_numpy(dtype=np.int64),
        ])
        lines = [line for _, line in self.layout] + chain_lines(self.chains) + rule_lines(self.rules)
        order = np.argsort(linenos, kind="stable")
        out = [lines[i] for i in order.tolist()]
        if self.verbatim:
            ordered = linenos[order]
            for lineno, (written, line) in self.verbatim.items():
                k = int(np.searchsorted(ordered, lineno))
                if k < len(out) and ordered[k] == lineno and out[k] == written:
                    out[k] = line
        return "\n".join(out)

    @property
    def tables(self) -> list[str]:
        """The tables, in the text's order (an empty one too)."""
        dtype = self.chains["table"].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return [str(table) for table in dtype.categories]
        return list(dict.fromkeys(self.chains["table"].astype(str)))

    def __repr__(self) -> str:
        return f"<Ruleset: {len(self.tables)} tables, {len(self.chains)} chains, {len(self.rules)} rules>"


def _counter_tokens(frame: pd.DataFrame) -> list[str | None]:
    """`[packets:bytes]` per row, None where the text had no counters."""
    packets, nbytes = frame["packets"], frame["bytes"]
    missing = (packets.isna() | nbytes.isna()).to_numpy()
    pairs = zip(packets.to_numpy(dtype=np.int64, na_value=0).tolist(),
                nbytes.to_numpy(dtype=np.int64, na_value=0).tolist(), strict=True)
    return [None if gone else f"[{p}:{b}]" for (p, b), gone in zip(pairs, missing.tolist(), strict=True)]


def chain_lines(chains: pd.DataFrame) -> list[str]:
    """`:NAME POLICY [packets:bytes]` per chain; a user chain's policy is `-`."""
    policies = [policy if builtin else "-" for policy, builtin in
                zip(chains["policy"].astype(object).tolist(), chains["builtin"].tolist(), strict=True)]
    return [f":{name} {policy}" if counters is None else f":{name} {policy} {counters}"
            for name, policy, counters in zip(chains["chain"].astype(str).tolist(), policies, _counter_tokens(chains),
                                              strict=True)]


def rule_lines(rules: pd.DataFrame) -> list[str]:
    """`[packets:bytes] -A CHAIN ...` per rule, or the rule alone where it has no counters."""
    return [rule if counters is None else f"{counters} {rule}"
            for rule, counters in zip(rules["rule"].tolist(), _counter_tokens(rules), strict=True)]


def written_lines(ruleset: Ruleset, linenos: list[int]) -> dict[int, str]:
    """What the rows at these line numbers write (chains and rules), by line number."""
    written: dict[int, str] = {}
    for frame, write in ((ruleset.chains, chain_lines), (ruleset.rules, rule_lines)):
        rows = frame[frame["lineno"].isin(linenos)]
        written.update(zip(rows["lineno"].tolist(), write(rows), strict=True))
    return written
