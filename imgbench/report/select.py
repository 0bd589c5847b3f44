"""One way to pick a table's rows, so no lookup forgets a dimension of the rows it compares.

Why: tables hold rows of several data sets (``cifar32`` beside ``cifar128`` and ``cifar256``),
and a lookup that filters only format, mode and operation picks whichever size sorts first
(``"cifar128" < "cifar32"``). Every lookup of the claims, the article comparison and "which
format" goes through :func:`select`, which fixes every dimension in :data:`DIMENSIONS` to the
article's value unless the caller names it. Later dimensions (storage kinds, cache kinds) are
one more entry here.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from imgbench.report import article

#: Dimensions a row can have beyond its measurement's identity -> the value the article's
#: comparisons use when a lookup does not name one.
DIMENSIONS: dict[str, object] = {"data": article.DATA}
#: Pass as a dimension's value to take rows of every value of it.
ANY: Final = object()


class ReportError(Exception):
    """A table lacks a column or a lookup is ambiguous: a code fault, never a verdict."""


def partial_warm(df: pd.DataFrame) -> pd.Series:
    """Warm rows whose store was not fully resident when timed (``cache_scope`` "partial")."""
    if "cache_scope" not in df.columns or "cache" not in df.columns:
        return pd.Series(False, index=df.index)
    scope = df["cache_scope"].astype(str)
    return (df["cache"] == "warm") & scope.str.contains("partial", regex=False)


def select(df: pd.DataFrame, *, partial: bool = False, **eq: object) -> pd.DataFrame:
    """Rows of *df* equal to *eq* on every key, and to :data:`DIMENSIONS`' values on every
    dimension *eq* does not name (a dimension column *df* lacks is skipped: that table holds
    one value of it). Partially resident warm rows are left out unless *partial*: they
    measured a half-cold read. A key column *df* lacks raises ReportError."""
    missing = [k for k in eq if k not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns)) or "none"
        raise ReportError(f"no column {', '.join(missing)} in the table (columns: {have})")
    keys = {k: v for k, v in DIMENSIONS.items() if k in df.columns} | eq
    mask = np.ones(len(df), dtype=bool)
    for k, v in keys.items():
        if v is not ANY:
            mask &= (df[k] == v).to_numpy()
    if not partial:
        mask &= ~partial_warm(df).to_numpy()
    return df[mask]


def one(df: pd.DataFrame, **eq: object) -> pd.Series | None:
    """The single row :func:`select` finds, None when there is none; more than one raises
    ReportError (the key misses a dimension, so the answer would depend on row order)."""
    sel = select(df, **eq)
    if len(sel) > 1:
        raise ReportError(f"{len(sel)} rows match {eq}: the lookup misses a dimension")
    return sel.iloc[0] if len(sel) else None
