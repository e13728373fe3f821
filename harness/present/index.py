"""The run at a glance: index.html (the family × graph-kind matrix, present/matrix.py, then a sortable row per family
and graph kind, failing rows first) and summary.csv (the same rows, plus what a spreadsheet wants: model_type, seed,
localisation)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.kinds import order
from ..core.record import VERDICTS, Record
from ..core.summary import RunInfo
from .console import agreement, counts
from .matrix import NOT_APPLICABLE, matrix
from .pages import ENV, page_name

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["family", "mutant", "model_type", "seed", "graph", "verdict", "max_abs_diff", "bound", "margin",
           "bound_used", "token_agreement", "first_divergence", "structural", "localisation", "time_s", "message",
           "page", "xla_verdict", "noise_ratio", "bundle"]


def rows(records: list[Record]) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: the workers that render family pages never need it
    found = []
    for r in records:
        diff, bound = r.max_abs_diff, r.bound
        finite = diff is not None and np.isfinite(diff)
        found.append({"family": r.family, "mutant": r.mutant and r.mutant.name, "model_type": r.model_type,
                      "seed": r.fixture.seed, "graph": r.graph, "verdict": r.verdict, "max_abs_diff": diff,
                      "bound": bound, "margin": bound - diff if finite else None,
                      "bound_used": diff / bound if finite else None, "token_agreement": agreement(r) or "–",
                      "first_divergence": r.decode and r.decode.first_divergence,
                      "structural": r.structural and r.structural.status,
                      "localisation": r.localisation and (r.localisation.summary or r.localisation.error),
                      "time_s": round(sum(r.timings.values()), 3), "message": r.message, "page": page_name(r),
                      "xla_verdict": r.xla and (f"ERROR: {r.xla.error}" if r.xla.error else r.xla.verdict),
                      "noise_ratio": r.noise and r.noise.noise_ratio, "bundle": r.bundle})
    frame = pd.DataFrame(found, columns=COLUMNS)
    frame["first_divergence"] = frame["first_divergence"].astype("Int64")
    keys = {"verdict": lambda s: s.map(VERDICTS.index), "graph": lambda s: s.map(order),
            "mutant": lambda s: s.fillna("")}
    return frame.sort_values(["verdict", "family", "mutant", "graph"],
                             key=lambda s: keys.get(s.name, lambda x: x)(s), kind="stable").reset_index(drop=True)


def render(records: list[Record], run: RunInfo, pages: set[str], problems: list[str]) -> tuple[str, str]:
    """(index.html linking the pages written, summary.csv)."""
    table = rows(records)
    table["page"] = [f"{p}.html" if p in pages else None for p in table["page"]]
    html = ENV.get_template("index.html.j2").render(
        rows=table.astype(object).where(table.notna(), None).to_dict("records"), problems=problems,
        matrix=matrix(records), not_applicable=NOT_APPLICABLE, pages=pages,
        counts=counts(records), verdict_order=VERDICTS,
        versions={**run.versions, "emitter": run.emitter})
    return html, csv_safe(table).to_csv(index=False)


# A spreadsheet reads a cell beginning with one of these as a formula (=HYPERLINK(...), +cmd|...).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """summary.csv's cells, formula injection neutralised: a text cell that begins like a formula gets a
    leading ' (which spreadsheets show as text). Numbers stay numbers: a negative margin is a number, and
    only text cells (an emitter's words in `message`, a family name) are touched."""
    from pandas.api.types import is_numeric_dtype
    frame = frame.copy()
    for column in frame.columns:
        if not is_numeric_dtype(frame[column]):
            frame[column] = frame[column].map(
                lambda v: f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return frame
