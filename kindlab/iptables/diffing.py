"""What changed between two rulesets: the rules one added and the other removed."""

from __future__ import annotations

import pandas as pd

from .frames import RULE_COLUMNS
from .ruleset import Ruleset


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

