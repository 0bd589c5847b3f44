"""The claims table: each of the article's claims judged on this run, article mode deciding.

Why: the article words its findings ("slightly", "drastically", "trivially fast"); each word
is a named margin (:mod:`imgbench.report.judging`), each claim a rule
(:mod:`imgbench.report.claim_rules`) listed in :mod:`imgbench.report.claims_data`. A verdict
never goes quiet: an absent measurement is "not tested" and says what is missing; an absent
column, field or table raises with the claim's id, since it is a fault of the code, not of the
run.
"""

from __future__ import annotations

import pandas as pd

from imgbench.report.claims_data import CLAIMS, Claim
from imgbench.report.judging import COLUMNS, VERDICTS, Missing, Outcome, Run
from imgbench.report.markdown import md_table
from imgbench.report.select import ReportError


def _evaluate(claim: Claim, run: Run) -> Outcome:
    """One claim in one mode: its rule's outcome, "not tested" when a measurement is absent."""
    try:
        return claim.rule(run)
    except Missing as e:
        return "not tested", f"missing: {e}"
    except ReportError as e:
        raise ReportError(f"claim {claim.id} ({run.mode}): {e}") from e
    except KeyError as e:
        raise ReportError(f"claim {claim.id} ({run.mode}): no column or field {e}") from e


def claims_table(summary: pd.DataFrame, disk: pd.DataFrame, extras: dict) -> pd.DataFrame:
    """One row per claim: what decides it, the numbers used and the verdict (article mode;
    rows of the article's data set, picked by :func:`imgbench.report.select.select`)."""
    rows = []
    for c in CLAIMS:
        verdict, numbers = _evaluate(c, Run(summary, disk, extras, "article"))
        if c.tuned:
            tuned, tuned_numbers = _evaluate(c, Run(summary, disk, extras, "tuned"))
            if tuned != "not tested":
                numbers += f" [tuned {tuned}: {tuned_numbers}]"
        cells = (c.id, c.section, c.claim, c.kind, c.test, c.mode, c.margin, numbers, verdict)
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return pd.DataFrame(rows, columns=COLUMNS)


def claims_markdown(table: pd.DataFrame) -> str:
    """The summary.md section: verdict counts, how verdicts are reached, then the table."""
    counts = ", ".join(f"{v}: {int((table['verdict'] == v).sum())}" for v in VERDICTS)
    return "\n".join(
        [
            "## The article's claims, tested",
            "",
            f"{len(table)} claims; {counts}.",
            "",
            "Article mode decides (tuned mode's verdict is shown beside it in `numbers`). Writes "
            "count until durable on disk, reads are warm (rows whose store was not fully "
            "resident decide nothing); capped parts read epochs from a store 5x the page "
            "cache (capped.csv), each format with its best readahead advice and reads in "
            "flight. Claims about many images use the largest cutoff, crossovers every "
            "cutoff. A difference within the repeat spread of the rows "
            "compared counts as none; with a spread unknown no difference is called real. "
            "`mixed`: some of a claim's checks met, the unmet ones named; `not tested`: a part "
            "not measured or not decided, named.",
            "",
            md_table(table.astype(str)),
            "",
        ]
    )
