"""The report's charts: the same inputs give the same bytes, ids carry the salt, NaN/Inf are left
out rather than breaking a chart, and what is drawn sits where the axes' own tick labels say."""
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from archval.harness.present import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def group(root: ET.Element, role: str) -> ET.Element:
    [found] = [e for e in root.iter() if e.get("class") == role]
    return found


def axis(root: ET.Element, which: str):
    """data value -> pixel on the x or y axis, fitted through the chart's own tick labels (a label
    1e-k reads as k: those axes are log10)."""
    anchor = "end" if which == "y" else "middle"  # y labels sit left of their tick, x labels under it
    ticks = []
    for label in root.iter(f"{SVG}text"):
        if label.get("text-anchor") != anchor or label.get("transform"):  # a legend entry, the y axis's label
            continue
        try:
            value = float(label.text)
        except ValueError:  # the x axis's label
            continue
        ticks.append((math.log10(value) if "e" in label.text else value, float(label.get(which))))
    (v0, p0), (v1, p1) = ticks[0], ticks[-1]
    assert len(ticks) >= 2 and v1 > v0, ticks
    assert p1 < p0 if which == "y" else p1 > p0, "values grow rightwards and upwards"
    return lambda v: p0 + (v - v0) * (p1 - p0) / (v1 - v0)


def logits(vocab=96, seed=0):
    rng = np.random.default_rng(seed)
    oracle = rng.normal(0, 5, vocab)
    return oracle, oracle + rng.normal(0, 1e-3, vocab)


def timeline(errors, gaps):
    return [{"step": i, "max_abs_diff": e, "oracle_top2_gap": g} for i, (e, g) in enumerate(zip(errors, gaps))]


def all_charts(salt="qwen2-prefill"):
    oracle, graph = logits()
    steps = timeline(10 ** np.linspace(-6, -3, 17), 10 ** np.linspace(-1, 1, 17))
    return [charts.steps_chart(steps, 1e-2, f"{salt}-steps", 4),
            charts.vocab_chart(oracle.tolist(), graph.tolist(), 1e-2, f"{salt}-vocab"),
            charts.scatter_chart(oracle.tolist(), graph.tolist(), f"{salt}-scatter")]


def test_same_inputs_same_bytes():
    assert all_charts() == all_charts()


def test_ids_carry_the_salt_so_charts_on_one_page_stay_apart():
    drawn = all_charts("llama-decode")
    for svg, kind in zip(drawn, ("steps", "vocab", "scatter")):
        ids = [e.get("id") for e in parse(svg).iter() if e.get("id")]
        assert ids and all(i.startswith(f"llama-decode-{kind}") for i in ids), ids
    elsewhere = {e.get("id") for svg in all_charts("qwen2-decode") for e in parse(svg).iter() if e.get("id")}
    assert elsewhere.isdisjoint(e.get("id") for svg in drawn for e in parse(svg).iter())


def test_text_is_escaped():
    oracle, graph = logits()
    root = parse(charts.vocab_chart(oracle.tolist(), graph.tolist(), 1e-2, 'a<b>&"c'))
    assert root.get("id") == 'a<b>&"c'


def test_the_worst_point_of_the_scatter_is_circled_where_it_belongs():
    oracle, graph = logits()
    worst = int(np.argsort(oracle)[len(oracle) // 2])  # off in the middle: neither the largest nor the smallest logit
    graph[worst] += 3.0
    root = parse(charts.scatter_chart(oracle.tolist(), graph.tolist(), "s"))
    to_x, to_y = axis(root, "x"), axis(root, "y")
    [ring] = group(root, "largest")
    assert float(ring.get("cx")) == pytest.approx(to_x(oracle[worst]), abs=0.2)
    assert float(ring.get("cy")) == pytest.approx(to_y(graph[worst]), abs=0.2)
    assert len(group(root, "points")) == len(oracle)


def test_stems_stand_at_their_index_up_to_their_value_and_the_largest_is_marked():
    oracle = np.zeros(96)
    graph = np.full(96, 1e-5)
    graph[10], graph[20] = 3e-2, 0.0  # an exact 0 sits at FLOOR
    root = parse(charts.vocab_chart(oracle.tolist(), graph.tolist(), 1e-2, "v"))
    to_x, to_y = axis(root, "x"), axis(root, "y")
    stems = list(group(root, "stems"))
    assert len(stems) == 96
    assert float(stems[10].get("x1")) == pytest.approx(to_x(10), abs=0.2)
    assert float(stems[10].get("y2")) == pytest.approx(to_y(math.log10(3e-2)), abs=0.2)
    assert float(stems[20].get("y2")) == pytest.approx(to_y(math.log10(charts.FLOOR)), abs=0.2)
    [mark] = group(root, "largest")
    assert (float(mark.get("cx")), float(mark.get("cy"))) == pytest.approx((to_x(10), to_y(math.log10(3e-2))), abs=0.2)
    assert "largest: index 10" in "".join(root.itertext())


def test_nan_and_inf_are_left_out_not_an_error():
    oracle, graph = logits()
    graph[7], graph[9], oracle[11] = np.nan, np.inf, -np.inf
    root = parse(charts.vocab_chart(oracle.tolist(), graph.tolist(), 1e-2, "v"))
    assert len(group(root, "stems")) == len(oracle) - 3
    root = parse(charts.scatter_chart(oracle.tolist(), graph.tolist(), "s"))
    assert len(group(root, "points")) == len(oracle) - 3
    assert len(group(root, "largest")) == 1

    errors = [1e-4, 2e-4, float("nan"), 3e-4, float("inf"), 0.0, 1e-4]
    root = parse(charts.steps_chart(timeline(errors, [1.0] * 7), 1e-2, "t", None))
    assert group(root, "error").get("d").count("M") == 3  # the line breaks at each hole
    points = group(root, "error-points")
    assert len(points) == 5
    to_x, to_y = axis(root, "x"), axis(root, "y")
    zero = points[3]  # step 5's exact 0, at FLOOR
    assert (float(zero.get("cx")), float(zero.get("cy"))) == pytest.approx((to_x(5), to_y(-9)), abs=0.2)


def test_nothing_finite_still_draws_empty_axes():
    nan = [float("nan")] * 8
    for svg in (charts.vocab_chart(nan, nan, 1e-2, "v"), charts.scatter_chart(nan, nan, "s"),
                charts.steps_chart(timeline(nan, nan), 1e-2, "t", None)):
        parse(svg)


def taps(errors, floors):
    points = ("attention", "mlp", "layer")
    return [{"layer": i // 3, "point": points[i % 3], "max_abs_diff": e, "noise_floor": f}
            for i, (e, f) in enumerate(zip(errors, floors))]


def test_the_first_tap_over_its_threshold_is_circled_where_it_belongs():
    floors = [1e-6, 2e-6, 3e-6, 1e-6, 2e-6, 3e-6]
    errors = [2e-6, 5e-6, 2e-5, 4e-4, 1e-3, 2e-3]  # tap 3 (layer 1 attention) is the first over 10 x its floor
    drawn = charts.taps_chart(taps(errors, floors), 10.0, "t")
    assert drawn == charts.taps_chart(taps(errors, floors), 10.0, "t")
    root = parse(drawn)
    to_x, to_y = axis(root, "x"), axis(root, "y")  # x ticks: each layer's first tap, labelled by layer
    [ring] = group(root, "first-over")
    assert (float(ring.get("cx")), float(ring.get("cy"))) == pytest.approx((to_x(1), to_y(math.log10(4e-4))), abs=0.2)
    assert len(group(root, "error-points")) == 6
    assert "first over: layer 1 attention" in "".join(root.itertext())
    x, y = map(float, group(root, "threshold").get("d")[1:].split("L")[0].split(","))
    assert (x, y) == pytest.approx((to_x(0), to_y(math.log10(1e-5))), abs=0.2)  # 10 x the first tap's floor


def test_taps_all_within_their_threshold_circle_nothing():
    root = parse(charts.taps_chart(taps([1e-6] * 6, [1e-6] * 6), 10.0, "t"))
    assert not [e for e in root.iter() if e.get("class") == "first-over"]


def _path_points(path: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in path.get("d").replace("M", " ").replace("L", " ").split()]


def test_the_strict_bound_that_judged_a_prefill_is_drawn_beside_the_fixed_one():
    """A case failed by the strict bound has every bar below 1e-2: the chart must draw the line it crossed."""
    oracle, graph = logits()
    root = parse(charts.vocab_chart(oracle.tolist(), graph.tolist(), 1e-2, "v", strict=2e-4))
    to_y = axis(root, "y")
    for role, bound in (("bound", 1e-2), ("strict-bound", 2e-4)):
        ys = [y for _, y in _path_points(group(root, role))]
        assert ys == pytest.approx([to_y(math.log10(bound))] * len(ys), abs=0.2)
    assert "strict bound 2.0e-04" in "".join(root.itertext())


def test_each_decode_step_is_drawn_against_its_own_strict_bound():
    floors = 10 ** np.linspace(-5, -4, 17)
    root = parse(charts.steps_chart(timeline(floors * 3, np.ones(17)), 1e-2, "s", None, strict=(10 * floors).tolist()))
    to_x, to_y = axis(root, "x"), axis(root, "y")
    points = np.array(_path_points(group(root, "strict-bound")))
    expected = np.array([(to_x(s), to_y(math.log10(10 * f))) for s, f in enumerate(floors)])
    assert points.shape == expected.shape and np.abs(points - expected).max() < 0.2
