"""HTML reports from validation records: a self-contained page per family, an index, summary.csv.

A record is what validate.run_case returns (plus the gate's `structural`, and `mutant` for a
deliberately broken graph). Records are grouped into pages by family (and mutant); each page
shows every graph kind validated, where it fails, and what reproduces it. Pages embed their
CSS and their charts (SVG), so they open from disk with no network.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import numpy as np
from markupsafe import Markup

from harness import ROOT
from harness.present import charts
from harness.core import fixtures
from harness.checks import triangulate
from harness.core.compare import ERROR, FAIL, NOT_A_TIE, PASS
from harness.checks.signature import load_golden

if TYPE_CHECKING:
    import pandas as pd


VERDICT_ORDER = {FAIL: 0, ERROR: 1, PASS: 2}  # failing rows first
GRAPH_ORDER = {"prefill": 0, "decode": 1, "moe_block": 2}
STAGES = ("emit", "compile", "load", "run", "oracle")
INDEX_COLUMNS = ["family", "mutant", "graph", "verdict", "max_abs_diff", "bound", "margin", "bound_used",
                 "token_agreement", "first_divergence", "structural", "time_s", "message", "page",
                 "xla_verdict", "noise_ratio"]
# The three-way verdict (triangulate.odd_one_out) as a user reads it: which side is wrong.
THREE_WAY_SENTENCES = {
    triangulate.AGREE: "The oracle, IREE and XLA all agree within the bound.",
    triangulate.EMITTER: "IREE and XLA agree against the oracle: the emitter's graph is wrong (two compilers "
                         "compute the same wrong thing from its text).",
    triangulate.IREE: "XLA agrees with the oracle against IREE: the graph is right and IREE computes it wrong "
                      "(a compiler problem).",
    triangulate.XLA: "The oracle and IREE agree against XLA: XLA is the odd one out (the verdict, judged on IREE, "
                     "is unaffected).",
    triangulate.NONE: "No two of the oracle, IREE and XLA agree within the bound: no one side can be blamed.",
}

_env = jinja2.Environment(loader=jinja2.PackageLoader("harness.present", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters["sci"] = lambda v, digits=3: "–" if v is None else f"{v:.{digits}e}"


def page_name(record: dict) -> str:
    mutant = record.get("mutant")
    return f"{record['family']}--{mutant}" if mutant else record["family"]


def write(records: list[dict], directory: Path, emitter: str = "built-in (python -m emitter)") -> list[str]:
    """Writes <page>.html per family, index.html and summary.csv under directory, each atomically.
    Returns the problems met (a page that could not be rendered); the others are still written."""
    written, problems = write_pages(records, directory, emitter)
    write_index(records, directory, emitter, written, problems)
    return problems


def write_pages(records: list[dict], directory: Path, emitter: str) -> tuple[set[str], list[str]]:
    """One page per family (and mutant): (the pages written, the problems met)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    context = {"versions": versions(emitter)}
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[page_name(record)].append(record)
    problems, written = [], set()
    for name, group in groups.items():
        try:
            html = render_family(name, group, context)
        except Exception as e:  # noqa: BLE001 - one page's problem must not cost the others theirs
            problems.append(f"{name}.html not written: {type(e).__name__}: {e}")
            continue
        write_text_atomic(directory / f"{name}.html", html)
        written.add(name)
    return written, problems


def write_index(records: list[dict], directory: Path, emitter: str, written: set[str], problems: list[str]) -> None:
    """index.html (linking the pages written) and summary.csv."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = index_rows(records)
    rows["page"] = [f"{p}.html" if p in written else None for p in rows["page"]]
    write_text_atomic(directory / "summary.csv", rows.to_csv(index=False))
    write_text_atomic(directory / "index.html", _env.get_template("index.html.j2").render(
        rows=rows.astype(object).where(rows.notna(), None).to_dict("records"), problems=problems,
        versions=versions(emitter)))


def write_text_atomic(path: Path, text: str) -> None:
    """Readers never see half a page: write beside it, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=4)
def versions(emitter: str) -> dict[str, str]:
    """Once per process: a page each would cost a `git describe` each."""
    found = {"python": platform.python_version()}
    for label, dist in (("torch", "torch"), ("transformers", "transformers"), ("IREE compiler", "iree-base-compiler"),
                        ("IREE runtime", "iree-base-runtime"), ("jax", "jax"), ("numpy", "numpy")):
        try:
            found[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[label] = "not installed"
    found["emitter"] = emitter
    found["archval"] = _project_version()
    return found


def _project_version() -> str:
    """git describe of this checkout when it is one; else the installed package's version."""
    try:
        described = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--tags"],
                                   capture_output=True, text=True, timeout=10)
        if described.returncode == 0 and described.stdout.strip():
            return f"git {described.stdout.strip()}"
    except OSError:
        pass
    try:
        return importlib.metadata.version("archval")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---- the index and summary.csv: one row per family (and mutant) and graph kind

def token_agreement(r: dict) -> str:
    if r["graph"] == "moe_block":
        return f"layer {r['layer']}, {r['expert_sets']} expert sets" if "layer" in r else "–"
    if r.get("argmax_match") is None:
        return "–"
    if r["graph"] == "decode":
        agreeing = sum(t["oracle_token"] == t["graph_token"] for t in r.get("timeline", []))
        first = r.get("first_divergence")
        return (f"{agreeing}/{r['steps'] + 1} tokens" if first is None
                else f"{agreeing}/{r['steps'] + 1} tokens, {r['divergence']} at step {first}")
    if r.get("near_tie_flip"):
        return "near-tie flip"
    return "argmax match" if r["argmax_match"] else "argmax differs"


def index_rows(records: list[dict]) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: the workers that render family pages never need it
    rows = []
    for r in records:
        diff, bound = r.get("max_abs_diff"), r["bound"]
        finite = diff is not None and np.isfinite(diff)
        rows.append({"family": r["family"], "mutant": r.get("mutant"), "graph": r["graph"], "verdict": r["verdict"],
                     "max_abs_diff": diff, "bound": bound, "margin": bound - diff if finite else None,
                     "bound_used": diff / bound if finite else None, "token_agreement": token_agreement(r),
                     "first_divergence": r.get("first_divergence"),
                     "structural": (r.get("structural") or {}).get("status"),
                     "time_s": round(sum(r.get("timings", {}).values()), 3), "message": r.get("message", ""),
                     "page": page_name(r), "xla_verdict": _xla_verdict(r.get("xla")),
                     "noise_ratio": r.get("noise_ratio")})
    frame = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    frame["first_divergence"] = frame["first_divergence"].astype("Int64")
    keys = {"verdict": lambda s: s.map(VERDICT_ORDER), "graph": lambda s: s.map(GRAPH_ORDER),
            "mutant": lambda s: s.fillna("")}
    return frame.sort_values(["verdict", "family", "mutant", "graph"],
                             key=lambda s: keys.get(s.name, lambda x: x)(s), kind="stable").reset_index(drop=True)


def _xla_verdict(x: dict | None) -> str | None:
    """The index's three-way column: the odd one out, XLA's error, or None where it did not run."""
    if not x:
        return None
    return f"ERROR: {x['error']}" if "error" in x else x["verdict"]


# ---- a family's page

def render_family(name: str, records: list[dict], context: dict) -> str:
    family = records[0]["family"]
    try:
        fixture, fixture_error = fixtures.load(family), None
    except fixtures.FixtureError as e:
        fixture, fixture_error = None, str(e)
    sections = [_section(name, r) for r in sorted(records, key=lambda r: GRAPH_ORDER.get(r["graph"], 9))]
    return _env.get_template("family.html.j2").render(
        name=name, family=family, mutant=records[0].get("mutant"),
        mutant_description=records[0].get("mutant_description"), fixture=fixture and _fixture(fixture),
        fixture_error=fixture_error, flags=_flags(fixture.config_path) if fixture else [], sections=sections,
        verdict=min((r["verdict"] for r in records), key=lambda v: VERDICT_ORDER.get(v, 0)), **context)


def _fixture(f: fixtures.Fixture) -> dict:
    path = f.config_path.relative_to(ROOT) if f.config_path.is_relative_to(ROOT) else f.config_path
    return {"name": f.name, "model_type": f.model_type, "seed": f.seed, "prompt_len": f.prompt_len,
            "prompt": f.prompt().tolist(), "decode_steps": f.decode_steps, "bound": f.bound,
            "bound_reason": f.bound_reason, "purpose": f.purpose, "dims": _dims(f.config), "config_path": str(path)}


def _dims(config: dict) -> str:
    names = (("vocab", "vocab_size"), ("hidden", "hidden_size"), ("intermediate", "intermediate_size"),
             ("layers", "num_hidden_layers"), ("heads", "num_attention_heads"), ("kv heads", "num_key_value_heads"),
             ("head_dim", "head_dim"))
    return ", ".join(f"{label} {config[key]}" for label, key in names if key in config)


def _flags(config_path: Path) -> list[tuple[str, str]]:
    """The family's Config as the emitter parses it, field by field."""
    from emitter import Config
    from emitter.config import ConfigError
    try:
        config = Config.from_json(config_path)
    except ConfigError as e:
        return [("refused", str(e))]

    def show(value) -> str:
        if dataclasses.is_dataclass(value):
            return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(value).items())
        if isinstance(value, tuple):
            return ", ".join(map(str, value))
        return str(value)
    return [(f.name, show(getattr(config, f.name))) for f in dataclasses.fields(config)]


def _section(page: str, r: dict) -> dict:
    """Everything one graph kind's part of the page shows, computed here so the template only lays out."""
    judged = r.get("max_abs_diff") is not None
    decode = r["graph"] == "decode"
    section = {"graph": r["graph"], "verdict": r["verdict"], "message": r.get("message", ""), "replay": r["replay"],
               "where": _where_it_fails(r) if r["verdict"] != PASS else [],
               "metrics": (_block_metrics(r) if r["graph"] == "moe_block" else _metrics(r)) if judged else [], "timings": _timings(r.get("timings", {})),
               "oracle_class": r.get("oracle_class"), "cache_hit": r.get("cache_hit"),
               "unused_tensors": r.get("unused_tensors", []), "structural": _structural(r),
               "top_k": [], "timeline": [], "charts": [], "strict_note": None, "strict_used": False,
               "three_way": None, "localisation": None}
    if not judged or r["graph"] == "moe_block":
        return section
    section["strict_note"], section["strict_used"] = _strict_note(r), "strict_bound" in r
    section["three_way"] = _three_way(r)
    section["localisation"] = _localisation(page, r)
    where = (f"the worst step {r['worst_step']} (position {r['timeline'][r['worst_step']]['position']})" if decode
             else f"position {r['prompt_len'] - 1} (the prompt's last token)")
    section["top_k"] = [{"title": f"at {where}", "rows": _top_k_rows(r["oracle_top_k"], r["graph_top_k"])}]
    if decode:
        section["timeline"] = [_timeline_row(t, r) for t in r["timeline"]]
        section["charts"].append((Markup(charts.steps_chart(r["timeline"], r["bound"], f"{page}-{r['graph']}-steps",
                                                            r.get("first_divergence"))),
                                  "max |Δlogit| per decode step against the bound"))
    logits = r.get("logits")
    if logits:
        at = f"at the worst step {r['worst_step']}" if decode else f"at position {r['prompt_len'] - 1}"
        if not decode:  # decode's per-step chart says where; its scatter shows the worst step
            section["charts"].append((Markup(charts.vocab_chart(logits["oracle"], logits["graph"], r["bound"],
                                                                f"{page}-{r['graph']}-vocab")),
                                      f"|Δlogit| per vocabulary index {at}"))
        section["charts"].append((Markup(charts.scatter_chart(logits["oracle"], logits["graph"],
                                                              f"{page}-{r['graph']}-scatter")),
                                  f"oracle against graph logits {at}; circled: the largest |Δ|"))
    return section


def _where_it_fails(r: dict) -> list[str]:
    """Which metric fails, at which step or position, and by how much: one sentence each."""
    if r.get("max_abs_diff") is None:
        return [f"ERROR: {r.get('message') or 'no result'}"]
    if r["graph"] == "moe_block":  # its message names the layer, the token and the overshoot
        return [r.get("message", "")]
    found, bound = [], r["bound"]
    if r.get("nonfinite"):
        found.append(f"NaN/Inf: the graph's logits hold {r['nonfinite']} non-finite values (bound 0)")
    if r["graph"] == "decode":
        over = [t for t in r["timeline"] if not t["max_abs_diff"] <= bound]
        worst = r["timeline"][r["worst_step"]]
        if over:
            found.append(f"max |Δlogit| = {worst['max_abs_diff']:.3e} at step {worst['step']} (position "
                         f"{worst['position']}), vocab index {r['worst_index']}, exceeds the bound {bound:.1e} by "
                         f"{worst['max_abs_diff'] - bound:.3e}")
            found.append(f"max |Δlogit| is over the bound at {len(over)} of {len(r['timeline'])} steps: first at step "
                         f"{over[0]['step']} (position {over[0]['position']}, {over[0]['max_abs_diff']:.3e})")
        if r.get("divergence") == NOT_A_TIE:
            t = r["timeline"][r["first_divergence"]]
            found.append(f"greedy token: diverges at step {t['step']} (position {t['position']}): oracle {t['oracle_token']}, "
                         f"graph {t['graph_token']}, with the oracle's top-1/top-2 gap {t['oracle_top2_gap']:.3e}; "
                         f"a near tie needs it within 2 × {t['max_abs_diff']:.3e} and that error within the bound")
    elif not r["max_abs_diff"] <= bound:
        found.append(f"max |Δlogit| = {r['max_abs_diff']:.3e} at position {r['prompt_len'] - 1} (the prompt's last "
                     f"token), vocab index {r['worst_index']}, exceeds the bound {bound:.1e} by "
                     f"{r['max_abs_diff'] - bound:.3e}")
    return found or [r.get("message", "")]


def _metrics(r: dict) -> list[dict]:
    """Each metric against its bound, with the margin (bound − value; negative when over)."""
    bound, diff, last = r["bound"], r["max_abs_diff"], r["prompt_len"] - 1
    decode = r["graph"] == "decode"
    where = (f"step {r['worst_step']}, position {r['timeline'][r['worst_step']]['position']}" if decode
             else f"position {last}")
    rows = [{"metric": "max |Δlogit|", "value": f"{diff:.3e}", "bound": f"≤ {bound:.1e}",
             "margin": f"{bound - diff:+.3e} ({diff / bound:.1%} of the bound)" if np.isfinite(diff) else "–",
             "ok": diff <= bound, "where": f"{where}, vocab index {r['worst_index']}"},
            {"metric": "NaN/Inf in the graph's logits", "value": str(r["nonfinite"]), "bound": "0",
             "margin": str(-r["nonfinite"]), "ok": r["nonfinite"] == 0, "where": "all steps" if decode else where}]
    if "strict_bound" in r:  # absent when judged by the fixed bound alone
        rows.insert(1, _strict_row(r, f"{where}, vocab index {r['worst_index']}"))
    if decode:
        first = r.get("first_divergence")
        rows.append({"metric": "greedy token agreement", "value": token_agreement(r), "bound": "a flip must be a near tie",
                     "margin": "–", "ok": r.get("divergence") != NOT_A_TIE,
                     "where": "every step" if first is None else f"step {first}"})
        step = r["timeline"][r["worst_step"] if first is None else first]
        gap, err = step["oracle_top2_gap"], step["max_abs_diff"]
        where = f"step {step['step']} ({'worst step' if first is None else 'first divergence'})"
    else:
        rows.append({"metric": "argmax", "value": f"oracle {r['oracle_argmax']}, graph {r['graph_argmax']}",
                     "bound": "equal, or a near tie", "margin": "–", "ok": r["argmax_match"] or r["near_tie_flip"],
                     "where": where})
        gap, err = r["oracle_top2_gap"], diff
    rows.append({"metric": "oracle top-1/top-2 gap", "value": f"{gap:.3e}",
                 "bound": f"> 2 × |Δ| = {2 * err:.3e} (no flip possible)", "margin": f"{gap - 2 * err:+.3e}",
                 "ok": True, "where": where})
    return rows


def _strict_row(r: dict, where: str) -> dict:
    """The error against the strict bound: STRICT_FACTOR × the fp32-vs-fp64 noise floor (over every compared step)."""
    diff, strict = r["max_abs_diff"], r["strict_bound"]
    return {"metric": "max |Δlogit| vs the strict bound", "value": f"{diff:.3e} ({r['noise_ratio']:.1f}× the noise floor)",
            "bound": f"≤ {r['strict_factor']:g}× noise floor {r['noise_floor']:.2e} = {strict:.2e}",
            "margin": f"{strict - diff:+.3e} ({diff / strict:.1%} of the bound)" if np.isfinite(diff) else "–",
            "ok": diff <= strict, "where": where}


def _strict_note(r: dict) -> str | None:
    """Said plainly when the strict bound changed the verdict; absent when it was not used."""
    if "strict_bound" not in r or r.get("fixed_verdict") in (None, r["verdict"]):
        return None
    return (f"The fixed bound alone would have passed it: max |Δlogit| {r['max_abs_diff']:.3e} is within the fixed bound "
            f"{r['bound']:.1e}, but it is {r['noise_ratio']:.1f}× the fp32 noise floor {r['noise_floor']:.2e} "
            f"(fp32 against fp64 oracle), above the strict bound {r['strict_factor']:g}× = {r['strict_bound']:.2e}.")


def _three_way(r: dict) -> dict | None:
    """Oracle, IREE and XLA pairwise, and which side is the odd one out; None where XLA did not run."""
    x = r.get("xla")
    if not x:
        return None
    if "error" in x:
        return {"error": x["error"]}
    pairs = (("oracle – IREE", "oracle_iree"), ("oracle – XLA", "oracle_xla"), ("IREE – XLA", "iree_xla"))
    return {"rows": [{"pair": label, "value": x[key], "ok": x[key] <= x["bound"]} for label, key in pairs],
            "bound": x["bound"], "verdict": x["verdict"], "sentence": THREE_WAY_SENTENCES[x["verdict"]],
            "argmax_match": x["argmax_match"], "cache_hit": x.get("cache_hit")}


def _localisation(page: str, r: dict) -> dict | None:
    """The per-layer localisation of a failing prefill graph: its sentence, chart and tap table."""
    found = r.get("localisation")
    if not found:
        return None
    if "error" in found:
        return {"error": found["error"]}
    taps = found["taps"]
    chart = Markup(charts.taps_chart(taps, found["strict_factor"], f"{page}-{r['graph']}-taps")) if taps else None
    first = found["first"]
    return {"summary": found["summary"], "chart": chart, "factor": found["strict_factor"],
            "taps": [{**t, "first": first is not None and (t["layer"], t["point"]) == (first["layer"], first["point"]),
                      "over": not t["max_abs_diff"] <= found["strict_factor"] * t["noise_floor"]} for t in taps]}


def _block_metrics(r: dict) -> list[dict]:
    """The MoE block check: the block's max |Δ| against the block bound, and how decisively it routed."""
    bound, diff = r["bound"], r["max_abs_diff"]
    where = f"layer {r.get('layer')}, {r.get('tokens')} seeded hidden states"
    return [{"metric": "max |Δ| of the MoE block", "value": f"{diff:.3e}", "bound": f"≤ {bound:.1e}",
             "margin": f"{bound - diff:+.3e} ({diff / bound:.1%} of the bound)" if np.isfinite(diff) else "–",
             "ok": diff <= bound, "where": where},
            {"metric": "router margin (k-th − (k+1)-th probability, smallest)", "value": f"{r['router_margin']:.3e}",
             "bound": "> 0 (routing decided, not tied)", "margin": "–", "ok": r["router_margin"] > 0, "where": where},
            {"metric": "distinct expert sets", "value": str(r["expert_sets"]), "bound": "> 1 (routing varies)",
             "margin": "–", "ok": r["expert_sets"] > 1, "where": where}]


def _timeline_row(t: dict, r: dict) -> dict:
    bound, err = r["bound"], t["max_abs_diff"]
    over, flip = not err <= bound, t["oracle_token"] != t["graph_token"]
    status = ["over the bound"] if over else []
    if flip:  # the rule of compare.DecodeComparison.divergence, step by step
        status.append("near-tie flip" if t["oracle_top2_gap"] <= 2 * err and not over else "token flip: failure")
    return {**t, "margin": bound - err, "twice": 2 * err, "flip": flip, "over": over,
            "status": ", ".join(status) or "ok", "worst": t["step"] == r["worst_step"],
            "top_k": _top_k_rows(t.get("oracle_top_k", []), t.get("graph_top_k", []))}


def _top_k_rows(oracle, graph) -> list[dict]:
    return [{"rank": i + 1, "oracle": o, "graph": g} for i, (o, g) in enumerate(zip(oracle, graph))]


def _timings(timings: dict) -> list[tuple[str, float]]:
    ordered = [(s, timings[s]) for s in STAGES if s in timings] + [(s, v) for s, v in timings.items() if s not in STAGES]
    return ordered + [("total", round(sum(timings.values()), 4))] if ordered else []


def _structural(r: dict) -> dict | None:
    """The record's structural check, with the golden's op histogram beside today's."""
    s = r.get("structural")
    if not s:
        return None
    golden = None
    try:
        golden = load_golden(fixtures.FIXTURES_DIR / r["family"], r["graph"])
    except Exception:  # noqa: BLE001 - an unreadable golden is the structural check's finding, shown there
        pass
    golden_ops = (golden[0].get("functions", {}).get("main", {}).get("ops", {}) if golden else {})
    ops = s.get("ops") or {}
    results = ", ".join(f"{dtype}{shape}" for shape, dtype in s.get("results") or [])
    return {**s, "results": results, "ops_table": [{"op": op, "golden": golden_ops.get(op, 0), "now": ops.get(op, 0)}
                               for op in sorted(set(ops) | set(golden_ops))]}
