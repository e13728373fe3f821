"""The report's charts: matplotlib figures rendered as inline SVG (no pyplot state, no JS, no network).

Errors span decades, so they are drawn as log10 on a linear axis labelled 1e-k: matplotlib's
log scale costs several times more to render (tick text layout), and a gate run draws dozens.
"""
from __future__ import annotations

import io
import math
import re

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FLOOR = 1e-9  # where an exact 0 sits on a log axis
ORACLE_COLOUR, GRAPH_COLOUR, BOUND_COLOUR, MARK_COLOUR = "#1f77b4", "#ff7f0e", "#d62728", "#9467bd"
MARGINS = {"left": 0.1, "right": 0.98, "bottom": 0.17, "top": 0.97}


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an <svg> element; salt keeps the ids of charts on one page apart and stable."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    # matplotlib numbers its groups per figure (figure_1, axes_1, ...): prefix every id, and every
    # reference to one, so that several charts inline in one page keep their ids unique
    svg = re.sub(r'(\bid="|href="#|url\(#)', rf"\g<1>{salt}-", svg)
    return svg[svg.index("<svg"):]


def _log10(values) -> np.ndarray:
    """log10 of |Δ|-like values: exact zeros at FLOOR, NaN/Inf left out (the tables say so)."""
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    v[~np.isfinite(v)] = np.nan
    return np.log10(np.maximum(v, FLOOR))


def _decades(ax, *series: np.ndarray) -> None:
    """Label a log10-valued y axis in powers of ten."""
    finite = np.concatenate([s[np.isfinite(s)] for s in series])
    lo, hi = math.floor(finite.min()), math.ceil(finite.max())
    ticks = range(lo, max(hi, lo + 1) + 1)
    ax.set_yticks(list(ticks), [f"1e{k}" for k in ticks])
    ax.set_ylim(lo - 0.1, max(hi, lo + 1) + 0.1)


def steps_chart(timeline: list[dict], bound: float, salt: str, first_divergence: int | None) -> str:
    """Decode: max |Δlogit| per step against the bound, beside twice the oracle's top-1/top-2 gap
    (the greedy token can flip only where the error reaches it)."""
    steps = np.array([t["step"] for t in timeline])
    err = _log10(t["max_abs_diff"] for t in timeline)
    gap = _log10(2 * t["oracle_top2_gap"] for t in timeline)
    fig = Figure(figsize=(7.0, 2.8))
    fig.subplots_adjust(**MARGINS)
    ax = fig.add_subplot()
    ax.plot(steps, err, "o-", color=GRAPH_COLOUR, markersize=4, label="max |Δlogit|")
    ax.plot(steps, gap, ".:", color=ORACLE_COLOUR, label="2 × oracle top-1/top-2 gap")
    ax.axhline(math.log10(bound), color=BOUND_COLOUR, linestyle="--", linewidth=1, label=f"bound {bound:.0e}")
    if first_divergence is not None:
        ax.axvline(first_divergence, color=MARK_COLOUR, linewidth=1, label=f"first divergence: step {first_divergence}")
    _decades(ax, err, gap, np.array([math.log10(bound)]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("decode step (0 = the prompt's last token)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", loc="best", ncols=2)
    return _svg(fig, salt)


def vocab_chart(oracle: list[float], graph: list[float], bound: float, salt: str) -> str:
    """|Δlogit| per vocabulary index at one compared position, against the bound."""
    diff = np.abs(np.asarray(graph, np.float64) - np.asarray(oracle, np.float64))
    logged = _log10(diff)
    fig = Figure(figsize=(7.0, 2.8))
    fig.subplots_adjust(**MARGINS)
    ax = fig.add_subplot()
    base = math.floor(np.nanmin(np.r_[logged, math.log10(bound)]))
    ax.vlines(np.arange(len(diff)), base, logged, color=GRAPH_COLOUR, linewidth=1)
    ax.axhline(math.log10(bound), color=BOUND_COLOUR, linestyle="--", linewidth=1, label=f"bound {bound:.0e}")
    if np.isfinite(logged).any():
        worst = int(np.nanargmax(logged))
        ax.plot([worst], [logged[worst]], "o", color=MARK_COLOUR, label=f"largest: index {worst}")
    _decades(ax, logged, np.array([math.log10(bound)]))
    ax.set_xlabel("vocabulary index")
    ax.set_ylabel("|Δlogit|")
    ax.legend(fontsize="x-small", loc="lower right")
    return _svg(fig, salt)


def scatter_chart(oracle: list[float], graph: list[float], salt: str) -> str:
    """Oracle against graph logits at one position: a correct graph lies on the grey diagonal; the
    entry with the largest |Δ| is circled (no legend: the page's caption says so, and text is what
    costs matplotlib most)."""
    o, g = np.asarray(oracle, np.float64), np.asarray(graph, np.float64)
    shown = np.isfinite(g)
    fig = Figure(figsize=(3.6, 3.4))
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.14, top=0.97)
    ax = fig.add_subplot()
    both = np.r_[o, g[shown]]
    ax.plot([both.min(), both.max()], [both.min(), both.max()], color="#999999", linewidth=1)
    ax.plot(o[shown], g[shown], "o", markersize=3, color=GRAPH_COLOUR)
    worst = int(np.where(shown, np.abs(g - o), -1.0).argmax())
    if shown[worst]:
        ax.plot([o[worst]], [g[worst]], "o", markersize=8, markerfacecolor="none", color=MARK_COLOUR)
    ax.set_xlabel("oracle logit")
    ax.set_ylabel("graph logit")
    return _svg(fig, salt)
