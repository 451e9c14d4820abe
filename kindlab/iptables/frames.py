"""The `chains` and `rules` DataFrames, built column by column from what parsing collected."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd


class _Layout(Protocol):
    """What parsing collected that the frames read (parsing's layout has these and more)."""

    chains: list[tuple[Any, ...]]
    names: dict[str, int]
    tables: dict[str, dict[int, int]]
    chain_names: int
    runs: list[Any]

CHAIN_COLUMNS = ["table", "chain", "builtin", "policy", "packets", "bytes", "lineno"]
RULE_COLUMNS = ["table", "chain", "position", "packets", "bytes", "protocol", "source", "destination",
                "in_interface", "out_interface", "matches", "comment", "dport", "dports", "match_options",
                "target", "goto", "to_destination", "target_options", "rule", "lineno"]

# The row parsing._rule_row() makes: RULE_COLUMNS but table, position and lineno (which come from the runs);
# `chain` and `target` are codes into _Layout.names (-1: no target).
VALUE_COLUMNS = ["protocol", "source", "destination", "in_interface", "out_interface", "comment", "dport", "dports",
                 "to_destination"]  # in the order of the arguments.OPTIONS indices
ROW_COLUMNS = [*VALUE_COLUMNS, "packets", "bytes", "chain", "target", "goto", "matches", "match_options",
               "target_options", "rule"]
WIDTH, NVALUES = len(ROW_COLUMNS), len(VALUE_COLUMNS)
CHAIN_CELL, RULE_CELL = ROW_COLUMNS.index("chain"), ROW_COLUMNS.index("rule")


def _objects(values: tuple[Any, ...] | list[Any]) -> np.ndarray:
    """A 1-d object array (np.array() would try to nest tuples)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _categorical(values: tuple[Any, ...] | list[Any] | np.ndarray) -> pd.Categorical:
    """Categories in order of appearance, None as missing."""
    codes, uniques = pd.factorize(values if isinstance(values, np.ndarray) else _objects(values))
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype="str"))


def _counts(values: tuple[Any, ...] | list[Any] | np.ndarray) -> pd.arrays.IntegerArray:
    """Counters as nullable Int64 (<NA> where the text had none)."""
    values = np.asarray(values, dtype=object)
    missing = values == None  # noqa: E711  (elementwise, on an object array)
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)


def chain_frame(layout: _Layout) -> pd.DataFrame:
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


def rule_frame(layout: _Layout, cells: list[Any]) -> pd.DataFrame:
    """The `rules` DataFrame, column by column; table, position and lineno come from the runs."""
    runs = layout.runs
    count = len(cells) // WIDTH
    cols = {name: np.fromiter(cells[i::WIDTH], dtype=object, count=count) for i, name in enumerate(ROW_COLUMNS)}
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

