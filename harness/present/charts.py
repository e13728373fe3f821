"""The report's charts as small hand-written inline SVG (strings and numpy; no JS, no network).

A gate run draws about eighty charts in its worker processes; a plotting library cost more than
the rest of the report (matplotlib: ~0.9 s to import per worker, ~0.09 s a chart). Errors span
decades, so they are drawn as log10 on a linear axis labelled 1e-k. Coordinates are written with
fixed precision, so the same inputs give the same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

FLOOR = 1e-9  # where an exact 0 sits on a log axis
ORACLE_COLOUR, GRAPH_COLOUR, BOUND_COLOUR, MARK_COLOUR = "#1f77b4", "#ff7f0e", "#d62728", "#9467bd"
AXIS_COLOUR, GRID_COLOUR, DIAGONAL_COLOUR = "#333333", "#e6e6e6", "#999999"
STRICT_COLOUR = "#2ca02c"  # the strict (noise-derived) bound, beside the fixed one
DASHED, DOTTED = "5,3", "1.5,2.5"
FONT_SIZE = 11
WIDE, SQUARE = (640, 260), (330, 310)  # viewBox sizes (px): the per-step and per-index charts, the scatter
LEGEND_ROW = 16


@dataclass(frozen=True)
class Scale:
    """Data values in [lo, hi] mapped linearly onto pixels start..end (on a y axis end < start:
    SVG's y grows downward)."""
    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value):
        return self.start + (value - self.lo) * (self.end - self.start) / (self.hi - self.lo)


@dataclass(frozen=True)
class Series:
    """How one drawn series looks, and its legend entry."""
    label: str
    colour: str
    dash: str | None = None
    marker: float = 0.0  # radius of its point markers; 0: a line only
    line: bool = True  # False: points only


def padded(lo: float, hi: float, fraction: float = 0.05) -> tuple[float, float]:
    """An axis range with room around the data, so that the points at its ends stay off the frame."""
    if not hi > lo:
        return lo - 0.5, hi + 0.5
    room = (hi - lo) * fraction
    return lo - room, hi + room


def nice_ticks(lo: float, hi: float, most: int = 6, integer: bool = False) -> np.ndarray:
    """Round values inside [lo, hi], 1, 2 or 5 × 10^k apart, at most about `most` of them."""
    wanted = max((hi - lo) / most, 1e-12)
    magnitude = 10.0 ** math.floor(math.log10(wanted))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= wanted)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return first + step * np.arange(max(count, 0))


def tick_labels(ticks: np.ndarray) -> list[str]:
    """Labels with as many decimals as the spacing of the ticks needs, and never a '-0'."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step)))
    return [f"{round(t, decimals) + 0.0:.{decimals}f}" for t in ticks]


def log10_or_floor(values) -> np.ndarray:
    """log10 of |Δ|-like values: exact zeros at FLOOR, NaN/Inf (and None) left out as NaN (the
    tables say so)."""
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    v[~np.isfinite(v)] = np.nan
    return np.log10(np.maximum(v, FLOOR))


def decades(*series: np.ndarray) -> tuple[tuple[float, float], list[int]]:
    """A log10-valued axis over the finite values of the series: its range and its powers of ten."""
    finite = np.concatenate([s[np.isfinite(s)] for s in series])
    lo, hi = math.floor(finite.min()), math.ceil(finite.max())
    hi = max(hi, lo + 1)
    every = max(1, math.ceil((hi - lo) / 8))  # a label every decade, unless they would crowd
    return (lo - 0.1, hi + 0.1), list(range(lo, hi + 1, every))


def _xy(x: float, y: float) -> str:
    return f"{x:.1f},{y:.1f}"


def _stroke(colour: str, width: float = 1.5, dash: str | None = None) -> str:
    dashing = f' stroke-dasharray="{dash}"' if dash else ""
    return f'fill="none" stroke="{colour}" stroke-width="{width}"{dashing}'


class Chart:
    """One SVG chart being drawn: a plot area inside the margins, the scales onto it, the elements
    so far. Drawing methods take data coordinates."""

    def __init__(self, size: tuple[int, int], x_range: tuple[float, float], y_range: tuple[float, float],
                 left: int, right: int, top: int, bottom: int):
        self.width, self.height = size
        self.x = Scale(*x_range, left, self.width - right)
        self.y = Scale(*y_range, self.height - bottom, top)
        self.parts: list[str] = []

    def svg(self, salt: str) -> str:
        """The chart as an <svg> element; its id is the salt, so that charts inline in one page keep
        their ids apart and stable."""
        return (f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(salt)}" viewBox="0 0 {self.width} {self.height}" '
                f'width="{self.width}" height="{self.height}" font-family="sans-serif" font-size="{FONT_SIZE}">\n'
                + "\n".join(self.parts) + "\n</svg>")

    def text(self, x: float, y: float, text: str, anchor: str = "middle", rotate: bool = False,
             centred: bool = False) -> None:
        """Text at (x, y): y is its baseline, or its middle when centred."""
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        middle = ' dominant-baseline="central"' if centred else ""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{middle}{turn}>{escape(text)}</text>')

    def frame(self) -> None:
        self.parts.append(f'<rect x="{self.x.start:.1f}" y="{self.y.end:.1f}" width="{self.x.end - self.x.start:.1f}" '
                          f'height="{self.y.start - self.y.end:.1f}" {_stroke(AXIS_COLOUR, 1)}/>')

    def x_ticks(self, ticks, labels: list[str], grid: bool = False) -> None:
        for tick, label in zip(ticks, labels):
            x = self.x(tick)
            if grid:
                self.parts.append(f'<path d="M{_xy(x, self.y.start)}V{self.y.end:.1f}" {_stroke(GRID_COLOUR, 1)}/>')
            self.parts.append(f'<path d="M{_xy(x, self.y.start)}v4" {_stroke(AXIS_COLOUR, 1)}/>')
            self.text(x, self.y.start + 4 + FONT_SIZE, label)

    def y_ticks(self, ticks, labels: list[str], grid: bool = False) -> None:
        for tick, label in zip(ticks, labels):
            y = self.y(tick)
            if grid:
                self.parts.append(f'<path d="M{_xy(self.x.start, y)}H{self.x.end:.1f}" {_stroke(GRID_COLOUR, 1)}/>')
            self.parts.append(f'<path d="M{_xy(self.x.start, y)}h-4" {_stroke(AXIS_COLOUR, 1)}/>')
            self.text(self.x.start - 6, y, label, anchor="end", centred=True)

    def x_label(self, text: str) -> None:
        self.text((self.x.start + self.x.end) / 2, self.height - 6, text)

    def y_label(self, text: str) -> None:
        self.text(12, (self.y.start + self.y.end) / 2, text, rotate=True)

    def line(self, xs, ys, look: Series, role: str, width: float = 1.5) -> None:
        """A polyline through the points, broken where a value is NaN/Inf (as the data has a hole
        there), with the series' markers on the finite points."""
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        commands, pen_down = [], False
        for x, y, finite in zip(self.x(xs), self.y(ys), np.isfinite(xs) & np.isfinite(ys)):
            if finite:
                commands.append(("L" if pen_down else "M") + _xy(x, y))
            pen_down = bool(finite)
        self.parts.append(f'<path class="{role}" d="{"".join(commands)}" {_stroke(look.colour, width, look.dash)}/>')
        if look.marker:
            self.markers(xs, ys, look.colour, look.marker, role=f"{role}-points")

    def markers(self, xs, ys, colour: str, radius: float, role: str, hollow: bool = False) -> None:
        """A circle at each finite point; hollow ones ring a point instead of covering it."""
        paint = _stroke(colour, 1.5) if hollow else f'fill="{colour}"'
        circles = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}"/>' for x, y in self._finite_pixels(xs, ys))
        self.parts.append(f'<g class="{role}" {paint}>{circles}</g>')

    def stems(self, xs, ys, base: float, colour: str) -> None:
        """A vertical line from base up to each finite value."""
        bottom = self.y(base)
        lines = "".join(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{y:.1f}"/>'
                        for x, y in self._finite_pixels(xs, ys))
        self.parts.append(f'<g class="stems" {_stroke(colour, 1)}>{lines}</g>')

    def _finite_pixels(self, xs, ys):
        """The points with both coordinates finite, in pixels."""
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        finite = np.isfinite(xs) & np.isfinite(ys)
        return zip(self.x(xs[finite]), self.y(ys[finite]))

    def legend(self, entries: list[Series], columns: int = 2) -> None:
        """The entries in rows above the plot area, where they can never hide a point."""
        column_width = (self.x.end - self.x.start) / columns
        for i, entry in enumerate(entries):
            x = self.x.start + (i % columns) * column_width
            y = self.y.end - 8 - (math.ceil(len(entries) / columns) - 1 - i // columns) * LEGEND_ROW
            sample = f'<path d="M{_xy(x, y)}h22" {_stroke(entry.colour, 1.5, entry.dash)}/>' if entry.line else ""
            if entry.marker:
                sample += f'<circle cx="{x + 11:.1f}" cy="{y:.1f}" r="{entry.marker}" fill="{entry.colour}"/>'
            self.parts.append(f'<g class="legend">{sample}</g>')
            self.text(x + 28, y, entry.label, anchor="start", centred=True)


def _legend_height(entries: int, columns: int = 2) -> int:
    return math.ceil(entries / columns) * LEGEND_ROW + 8


def steps_chart(timeline: list[dict], bound: float, salt: str, first_divergence: int | None,
                strict: list[float] | None = None) -> str:
    """Decode: max |Δlogit| per step against the fixed bound and, where judged, each step's strict bound,
    beside twice the oracle's top-1/top-2 gap (the greedy token can flip only where the error reaches it)."""
    steps = np.array([t["step"] for t in timeline], np.float64)
    err = log10_or_floor(t["max_abs_diff"] for t in timeline)
    gap = log10_or_floor(2 * t["oracle_top2_gap"] for t in timeline)
    log_bound = math.log10(bound)
    log_strict = log10_or_floor(strict) if strict else np.array([])
    error_look = Series("max |Δlogit|", GRAPH_COLOUR, marker=3)
    gap_look = Series("2 × oracle top-1/top-2 gap", ORACLE_COLOUR, dash=DOTTED, marker=2)
    bound_look = Series(f"bound {bound:.0e}", BOUND_COLOUR, dash=DASHED)
    strict_look = Series("strict bound (per step)", STRICT_COLOUR, dash=DASHED)
    divergence_look = Series(f"first divergence: step {first_divergence}", MARK_COLOUR)
    entries = ([error_look, gap_look, bound_look] + ([strict_look] if strict else [])
               + ([divergence_look] if first_divergence is not None else []))

    y_range, powers = decades(err, gap, np.array([log_bound]), log_strict)
    x_range = padded(steps.min(), steps.max()) if len(steps) else (0.0, 1.0)
    chart = Chart(WIDE, x_range, y_range, left=52, right=12, top=_legend_height(len(entries)), bottom=40)
    x_ticks = nice_ticks(*x_range, most=10, integer=True)
    chart.x_ticks(x_ticks, tick_labels(x_ticks), grid=True)
    chart.y_ticks(powers, [f"1e{k}" for k in powers], grid=True)
    chart.frame()
    chart.line(x_range, [log_bound, log_bound], bound_look, role="bound", width=1)
    if strict:
        chart.line(steps, log_strict, strict_look, role="strict-bound", width=1)
    if first_divergence is not None:
        chart.line([first_divergence] * 2, y_range, divergence_look, role="first-divergence", width=1)
    chart.line(steps, gap, gap_look, role="gap")
    chart.line(steps, err, error_look, role="error")
    chart.x_label("decode step (0 = the prompt's last token)")
    chart.legend(entries)
    return chart.svg(salt)


def vocab_chart(oracle: list[float], graph: list[float], bound: float, salt: str, strict: float | None = None) -> str:
    """|Δlogit| per vocabulary index at one compared position, against the fixed bound and, where judged,
    the strict one."""
    diff = np.abs(np.asarray(graph, np.float64) - np.asarray(oracle, np.float64))
    logged = log10_or_floor(diff)
    log_bound = math.log10(bound)
    bound_look = Series(f"bound {bound:.0e}", BOUND_COLOUR, dash=DASHED)
    strict_look = Series(f"strict bound {strict:.1e}" if strict else "", STRICT_COLOUR, dash=DASHED)
    worst = int(np.nanargmax(logged)) if np.isfinite(logged).any() else None
    largest_look = Series(f"largest: index {worst}", MARK_COLOUR, marker=4, line=False)
    entries = [bound_look] + ([strict_look] if strict else []) + ([largest_look] if worst is not None else [])
    log_strict = np.array([math.log10(strict)] if strict else [])

    y_range, powers = decades(logged, np.array([log_bound]), log_strict)
    x_range = padded(0, max(len(diff) - 1, 0))
    chart = Chart(WIDE, x_range, y_range, left=58, right=12, top=_legend_height(len(entries)), bottom=40)
    x_ticks = nice_ticks(*x_range, most=10, integer=True)
    chart.x_ticks(x_ticks, tick_labels(x_ticks))
    chart.y_ticks(powers, [f"1e{k}" for k in powers])
    chart.frame()
    chart.stems(np.arange(len(diff)), logged, base=powers[0], colour=GRAPH_COLOUR)
    chart.line(x_range, [log_bound, log_bound], bound_look, role="bound", width=1)
    if strict:
        chart.line(x_range, [log_strict[0]] * 2, strict_look, role="strict-bound", width=1)
    if worst is not None:
        chart.markers([worst], [logged[worst]], MARK_COLOUR, largest_look.marker, role="largest")
    chart.x_label("vocabulary index")
    chart.y_label("|Δlogit|")
    chart.legend(entries)
    return chart.svg(salt)


def scatter_chart(oracle: list[float], graph: list[float], salt: str) -> str:
    """Oracle against graph logits at one position: a correct graph lies on the grey diagonal; the
    entry with the largest |Δ| is circled (no legend: the page's caption says so)."""
    o, g = np.asarray(oracle, np.float64), np.asarray(graph, np.float64)
    shown = np.isfinite(o) & np.isfinite(g)
    both = np.r_[o[shown], g[shown]]
    lo, hi = (both.min(), both.max()) if len(both) else (0.0, 1.0)
    axis_range = padded(lo, hi)
    chart = Chart(SQUARE, axis_range, axis_range, left=50, right=10, top=10, bottom=40)
    ticks = nice_ticks(*axis_range, most=8)
    chart.x_ticks(ticks, tick_labels(ticks))
    chart.y_ticks(ticks, tick_labels(ticks))
    chart.frame()
    chart.line([lo, hi], [lo, hi], Series("diagonal", DIAGONAL_COLOUR), role="diagonal", width=1)
    chart.markers(o[shown], g[shown], GRAPH_COLOUR, 2, role="points")
    if shown.any():
        worst = np.flatnonzero(shown)[np.abs(g[shown] - o[shown]).argmax()]
        chart.markers([o[worst]], [g[worst]], MARK_COLOUR, 5, role="largest", hollow=True)
    chart.x_label("oracle logit")
    chart.y_label("graph logit")
    return chart.svg(salt)


def taps_chart(taps: list[dict], factor: float, salt: str) -> str:
    """Localisation: max |Δ| at each debug tap in forward order (layer by layer: attention, mlp,
    layer output) against its threshold, factor × that tap's noise floor; the first tap over it
    is circled."""
    x = np.arange(len(taps), dtype=np.float64)
    err = log10_or_floor(t["max_abs_diff"] for t in taps)
    threshold = log10_or_floor(factor * t["noise_floor"] for t in taps)
    over = [i for i, t in enumerate(taps) if not t["max_abs_diff"] <= factor * t["noise_floor"]]
    error_look = Series("max |Δ| at the tap", GRAPH_COLOUR, marker=3)
    threshold_look = Series(f"{factor:g} × the tap's noise floor", BOUND_COLOUR, dash=DASHED)
    first_look = Series(f"first over: layer {taps[over[0]]['layer']} {taps[over[0]]['point']}" if over else "",
                        MARK_COLOUR, marker=5, line=False)
    entries = [error_look, threshold_look] + ([first_look] if over else [])

    y_range, powers = decades(err, threshold)
    x_range = padded(0, max(len(taps) - 1, 1))
    chart = Chart(WIDE, x_range, y_range, left=58, right=12, top=_legend_height(len(entries)), bottom=40)
    layers = sorted({t["layer"] for t in taps})
    first_tap = [next(i for i, t in enumerate(taps) if t["layer"] == layer) for layer in layers]
    chart.x_ticks(first_tap, [str(layer) for layer in layers], grid=True)
    chart.y_ticks(powers, [f"1e{k}" for k in powers], grid=True)
    chart.frame()
    chart.line(x, threshold, threshold_look, role="threshold", width=1)
    chart.line(x, err, error_look, role="error")
    if over:
        chart.markers([over[0]], [err[over[0]]], MARK_COLOUR, first_look.marker, role="first-over", hollow=True)
    chart.x_label("layer (its taps in order: attention, mlp, layer output)")
    chart.y_label("max |Δ|")
    chart.legend(entries)
    return chart.svg(salt)
