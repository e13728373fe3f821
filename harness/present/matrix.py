"""The family × graph-kind matrix: a cell per case, its verdict, its share of the bound and its reason; the index
opens on it (index.html) and support.md writes it in Markdown, an emitter's support table. From the records alone:
a kind is a column when a record has it, and a cell of such a column that no record fills is not applicable (the
family has no such graph: moe_block where no layer routes to experts); UNSUPPORTED is the emitter's refusal."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.kinds import order
from ..core.record import PASS, Record
from ..core.summary import RunInfo
from .console import agreement, counts, share
from .pages import page_name

NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Cell:
    verdict: str  # a record's verdict, or NOT_APPLICABLE
    margin: str  # the error's share of the bound ("0.1%", "732×"), or "" where none was measured
    title: str  # what a hover tells: the verdict, the error against the bound, the agreement, the reason
    page: str | None  # the family page's name (the case's anchor on it is its graph kind)


@dataclass(frozen=True)
class Matrix:
    kinds: list[str]
    rows: list[tuple[str, list[Cell]]]  # a family (with its mutant, in a --mutants run) and its cells, by kind


def cell(r: Record) -> Cell:
    measured = r.max_abs_diff is not None and math.isfinite(r.max_abs_diff) and r.bound
    margin = share(r.max_abs_diff / r.bound) if measured else ""
    said = [f"{r.verdict}: {r.family} {r.graph}"]
    if measured:
        said.append(f"max |Δ| {r.max_abs_diff:.3e} against the bound {r.bound:.0e} ({margin} of it)")
    said += [agreement(r) or "", "" if r.verdict == PASS else r.message]
    return Cell(r.verdict, margin, "; ".join(s for s in said if s), page_name(r))


def matrix(records: list[Record]) -> Matrix:
    kinds = sorted({r.graph for r in records}, key=lambda k: (order(k), k))
    by_row: dict[str, dict[str, Record]] = {}
    for r in records:
        by_row.setdefault(r.family + (f" (mutant {r.mutant.name})" if r.mutant else ""), {})[r.graph] = r
    absent = lambda family, kind: Cell(NOT_APPLICABLE, "", f"not applicable: no {kind} case for {family} (the family "
                                       "has no such graph)", None)
    return Matrix(kinds, [(row, [cell(cases[k]) if k in cases else absent(row, k) for k in kinds])
                          for row, cases in sorted(by_row.items())])


def markdown(records: list[Record], run: RunInfo) -> str:
    """support.md: the matrix as a Markdown table, each cell its verdict and share of the bound, then the legend."""
    m = matrix(records)
    escape = lambda text: text.replace("|", "\\|")
    lines = [f"# Support: {escape(run.emitter)}", "",
             f"{counts(records)}; archval {run.versions.get('archval', '?')}, run of {run.started}.", "",
             "| family | " + " | ".join(m.kinds) + " |", "|---|" + "---|" * len(m.kinds)]
    for row, cells in m.rows:
        lines.append(f"| {escape(row)} | " + " | ".join(
            c.verdict + (f" ({c.margin})" if c.margin else "") for c in cells) + " |")
    lines += ["", "PASS: every check ran and passed; FAIL: a check failed; ERROR: the case could not be judged; "
              "UNSUPPORTED: the emitter refused the family (its exit 2); n/a: the family has no such graph. In "
              "brackets: the error's share of its bound. Each case's reason is in summary.json and index.html.", ""]
    return "\n".join(lines)
