"""Tables as the book shows them: no index column, numbers rounded to what matters, empty cells left empty."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from pandas.io.formats.style import Styler


def _blank(value: object) -> bool:
    """True for the values a reader should see as an empty cell (NaN, None, <NA>, NaT)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: never blank
        return False


def show(frame: pd.DataFrame | pd.Series, columns: Sequence[str] | None = None, digits: int = 2,
         index: bool = False) -> Styler:
    """`frame` (or its `columns`) for display: floats to `digits` decimals, blanks for missing values, and
    no index column unless `index` (a Series shows its index as its first column)."""
    if isinstance(frame, pd.Series):
        frame, index = frame.to_frame(), True
    shown = frame[list(columns)] if columns is not None else frame
    styler = shown.style.format(lambda v: "" if _blank(v) else
                                (f"{v:.{digits}f}" if isinstance(v, float) else str(v)))
    return styler if index else styler.hide(axis="index")
