"""The one markdown-table writer every summary.md section uses (pandas' to_markdown, tabulate).

Why one: the tables must agree on how a missing number looks (an empty cell, not "nan"), how
floats are rounded, and that a ``|`` inside a cell is escaped so it cannot split a row.
"""

from __future__ import annotations

import pandas as pd


def md_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """*df* as a GitHub markdown table: no index, NaN and None as empty cells, pipes escaped."""
    cells = df.astype(object).map(lambda v: v.replace("|", r"\|") if isinstance(v, str) else v)
    cells = cells.mask(df.isna().to_numpy(), "")  # tabulate prints NaN as "nan"
    cells.columns = [str(c).replace("|", r"\|") for c in cells.columns]
    return cells.to_markdown(index=False, floatfmt=floatfmt)
