"""A family's page: per graph kind, where it fails, each metric against its bound, the diagnoses,
charts, the structural signature, timings and the replay command; then the fixture, the emitter's
flags (the built-in one's) and the versions. Everything shown travels in the records and the run.

The page is self-contained (CSS and SVG charts inline, from jinja2 templates; no network).
"""
from __future__ import annotations

from dataclasses import asdict

import jinja2
import numpy as np
from markupsafe import Markup

from ..core import triangulate
from ..core.compare import NOT_A_TIE
from ..core.kinds import order
from ..core.record import ERROR, FAIL, VERDICTS, Record
from ..core.summary import RunInfo
from . import charts
from .console import agreement, decode_slot, of_the_bound, share, slot_and_position, step_place

STAGES = ("emit", "compile", "load", "run", "oracle")
# The three-way verdict (core/triangulate.py) as a user reads it: which side is wrong.
THREE_WAY_SENTENCES = {
    triangulate.AGREE: "The oracle, IREE and XLA all agree within the bound.",
    triangulate.EMITTER: "IREE and XLA agree against the oracle: the emitter's graph is wrong (two compilers "
                         "compute the same wrong thing from its text).",
    triangulate.IREE: "XLA agrees with the oracle against IREE: the graph is right and IREE computes it wrong "
                      "(a compiler problem).",
    triangulate.XLA: "The oracle and IREE agree against XLA: XLA is the odd one out (the verdict, judged on IREE, "
                     "is unaffected).",
    triangulate.NONE: "No two of the oracle, IREE and XLA agree within the bound: no one side can be blamed.",
    triangulate.BOTH_NONFINITE: "IREE and XLA both compute NaN or Inf from the emitter's text: the graph is wrong.",
}
ENV = jinja2.Environment(loader=jinja2.PackageLoader("archval.harness.present", "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters["sci"] = lambda v, digits=3: "–" if v is None else f"{v:.{digits}e}"
ENV.filters["share"] = share


def page_name(record: Record) -> str:
    return f"{record.family}--{record.mutant.name}" if record.mutant else record.family


def worst_verdict(records: list[Record]) -> str:
    return min((r.verdict for r in records), key=VERDICTS.index)


def render(name: str, records: list[Record], run: RunInfo) -> str:
    first = records[0]
    f = first.fixture
    fixture = {"name": first.family, "model_type": first.model_type, "config_path": f.config_path,
               "purpose": f.purpose, "dims": f.dims, "seed": f.seed, "prompt": f.prompt, "prompt_len": len(f.prompt),
               "decode_steps": f.decode_steps, "bound": f.bound, "bound_reason": f.bound_reason,
               "not_exercised": f.not_exercised}
    return ENV.get_template("family.html.j2").render(
        name=name, family=first.family, mutant=first.mutant and first.mutant.name,
        mutant_description=first.mutant and first.mutant.description, fixture=fixture,
        checkpoint=first.checkpoint, flags=first.emitter_flags, emitter=first.emitter or run.emitter,
        versions={**run.versions, "emitter": run.emitter},
        sections=[_section(name, r) for r in sorted(records, key=lambda r: order(r.graph))],
        verdict=worst_verdict(records))


def _section(page: str, r: Record) -> dict:
    """Everything one graph kind's part of the page shows, computed here so the template only lays out."""
    judged = r.max_abs_diff is not None
    section = {"graph": r.graph, "verdict": r.verdict, "message": r.message, "replay": r.replay, "bundle": r.bundle,
               "where": _where_it_fails(r) if r.verdict in (FAIL, ERROR) else [],
               "metrics": (_block_metrics(r) if r.block else _metrics(r) if r.logits else _check_metrics(r))
               if judged else _token_metrics(r) if r.tokens else [],
               "timings": _timings(r.timings), "oracle_class": r.oracle and r.oracle.class_name,
               "cache_hit": r.cache_hit.get("compile"), "unused_tensors": r.oracle.unused_tensors if r.oracle else [],
               "structural": _structural(r), "logit_kind": r.logits is not None, "top_k": [], "timeline": [],
               "charts": [], "strict_note": None, "strict_used": r.noise is not None, "three_way": None,
               "localisation": None, "abi": _abi(r), "batch": r.batch}
    if not judged or not r.logits:
        return section
    section["strict_note"], section["three_way"] = _strict_note(r), _three_way(r)
    section["localisation"] = _localisation(page, r)
    decode = r.decode
    where = (f"the worst step {decode.worst_step} ({slot_and_position(r, r.logits.position, decode.worst_step)})"
             if decode else f"{slot_and_position(r, r.logits.position)} ({_compared(r)})")
    section["top_k"] = [{"title": f"at {where}", "rows": _top_k_rows(r.logits.oracle_top_k, r.logits.graph_top_k)}]
    if decode:
        section["timeline"] = [_timeline_row(t, r) for t in decode.timeline]
        strict = [r.noise.strict_factor * f for f in r.noise.floors] if r.noise else None
        section["charts"].append((Markup(charts.steps_chart([asdict(t) for t in decode.timeline], r.bound,
                                                            f"{page}-{r.graph}-steps", decode.first_divergence,
                                                            strict)),
                                  "max |Δlogit| per decode step against the bounds that judged it"))
    at = f"at the worst step {decode.worst_step}" if decode else f"at {slot_and_position(r, r.logits.position)}"
    if r.logits.oracle_logits:
        if not decode:  # decode's per-step chart says where; its scatter shows the worst step
            section["charts"].append((Markup(charts.vocab_chart(r.logits.oracle_logits, r.logits.graph_logits, r.bound,
                                                                f"{page}-{r.graph}-vocab",
                                                                r.noise and r.noise.strict_bound)),
                                      f"|Δlogit| per vocabulary index {at}"))
        section["charts"].append((Markup(charts.scatter_chart(r.logits.oracle_logits, r.logits.graph_logits,
                                                              f"{page}-{r.graph}-scatter")),
                                  f"oracle against graph logits {at}; circled: the largest |Δ|"))
    return section


def _compared(r: Record) -> str:
    """Which prefill position the record's logits are: the graph returned the last one, or every one."""
    return "the worst of every prompt position" if r.abi and r.abi.logits == "every position" else \
        "the prompt's last token"


def _abi(r: Record) -> str | None:
    """The ABI variant the graphs used, in words (docs/emitter-protocol.md#abi-variants)."""
    if not r.abi:
        return None
    caches = {"stacked": "k_cache, v_cache [L, S, n_kv, D]", "per layer": "k_cache.i, v_cache.i [S, n_kv, D]",
              "latent stacked": "kv_latent, k_rope [L, S, r]", "latent per layer": "kv_latent.i, k_rope.i [S, r]"}[r.abi.caches]
    logits = {"last position": "logits of the last real token (f32[V])",
              "every position": "logits of every position (f32[Lp, V])", "token": "the greedy token (i32[])"}
    text = f"caches {r.abi.caches} ({caches}); prefill returns {logits[r.abi.logits]}" + "; matmuls in bf16" * (r.compute == "bf16")
    if r.abi.decode:
        text += f"; decode returns {'the greedy token (i32[])' if r.abi.decode == 'token' else 'logits (f32[V])'}"
    if r.tokens:
        text += ("; logits were not available, so the tokens were judged one by one against the oracle's logits "
                 "(tie-aware), and neither the bound, the strict bound nor XLA applies")
    return text


def _where_it_fails(r: Record) -> list[str]:
    """Which metric fails, at which step or position, and by how much: one sentence each."""
    if r.tokens and r.verdict == FAIL:
        return [r.message]
    if r.max_abs_diff is None:
        return [f"ERROR: {r.message or 'no result'}"]
    if not r.logits:  # a block's message names the layer, the token and the overshoot
        return [r.message]
    found, bound, x = [], r.bound, r.logits
    if x.nonfinite:
        found.append(f"NaN/Inf: the graph's logits hold {x.nonfinite} non-finite values (bound 0)")
    if r.decode:
        timeline = r.decode.timeline
        over = [t for t in timeline if not t.max_abs_diff <= bound]
        worst = timeline[r.decode.worst_step]
        if over:
            found.append(f"max |Δlogit| = {worst.max_abs_diff:.3e} at step {worst.step} ({step_place(r, worst)}), "
                         f"vocab index {x.worst_index}, exceeds the bound {bound:.1e} by "
                         f"{worst.max_abs_diff - bound:.3e}")
            found.append(f"max |Δlogit| is over the bound at {len(over)} of {len(timeline)} steps: first at step "
                         f"{over[0].step} ({step_place(r, over[0])}, {over[0].max_abs_diff:.3e})")
        if r.decode.divergence == NOT_A_TIE:
            t = timeline[r.decode.first_divergence]
            found.append(f"greedy token: diverges at step {t.step} ({step_place(r, t)}): oracle {t.oracle_token}, "
                         f"graph {t.graph_token}, with the oracle's top-1/top-2 gap {t.oracle_top2_gap:.3e}; "
                         f"a near tie needs it within 2 × {t.max_abs_diff:.3e} and that error within the bound")
    elif not r.max_abs_diff <= bound:
        found.append(f"max |Δlogit| = {r.max_abs_diff:.3e} at {slot_and_position(r, x.position)} ({_compared(r)}), "
                     f"vocab index {x.worst_index}, exceeds the bound {bound:.1e} by {r.max_abs_diff - bound:.3e}")
    return found or [r.message]


def _metric(name: str, value: float, bound: float, where: str) -> dict:
    return {"metric": name, "value": f"{value:.3e}", "bound": f"≤ {bound:.1e}",
            "margin": f"{bound - value:+.3e} ({of_the_bound(value, bound)})" if np.isfinite(value) else "–",
            "ok": value <= bound, "where": where}


def _metrics(r: Record) -> list[dict]:
    """Each metric against its bound, with the margin (bound − value; negative when over)."""
    x, diff = r.logits, r.max_abs_diff
    where = (f"step {r.decode.worst_step}, {slot_and_position(r, x.position, r.decode.worst_step)}" if r.decode
             else slot_and_position(r, x.position))
    rows = [_metric("max |Δlogit|", diff, r.bound, f"{where}, vocab index {x.worst_index}"),
            {"metric": "NaN/Inf in the graph's logits", "value": str(x.nonfinite), "bound": "0",
             "margin": str(-x.nonfinite), "ok": x.nonfinite == 0, "where": "all steps" if r.decode else where}]
    if r.noise:  # absent when judged by the fixed bound alone
        n = r.noise  # judged step by step: the step with the largest ratio to its own floor
        judged = r.decode.timeline[n.step] if r.decode else None
        bf16, error = r.compute == "bf16", judged.max_abs_diff if judged else diff  # bf16: core/precision.py
        floor = "the run's bf16 floor" if bf16 else "its step's noise floor" if judged else "the noise floor"
        rows.insert(1, {**_metric(f"max |Δlogit| vs the {'derived bf16' if bf16 else 'strict'} bound", error,
                                  n.strict_bound, f"step {n.step}, {step_place(r, judged)}" if judged else where),
                        "value": f"{error:.3e} ({n.noise_ratio:.1f}× {floor})",
                        "bound": f"≤ {n.strict_factor:g}× noise floor {n.noise_floor:.2e} = {n.strict_bound:.2e}",
                        "margin": (f"{n.strict_bound - error:+.3e} ({of_the_bound(error, n.strict_bound)})"
                                   if np.isfinite(error) else "–")})
    if r.decode:
        first = r.decode.first_divergence
        rows.append({"metric": "greedy token agreement", "value": agreement(r), "bound": "a flip must be a near tie",
                     "margin": "–", "ok": r.decode.divergence != NOT_A_TIE,
                     "where": "every step" if first is None else f"step {first}"})
        step = r.decode.timeline[r.decode.worst_step if first is None else first]
        gap, err = step.oracle_top2_gap, step.max_abs_diff
        where = f"step {step.step} ({'worst step' if first is None else 'first divergence'})"
    else:
        rows.append({"metric": "argmax", "value": f"oracle {x.oracle_argmax}, graph {x.graph_argmax}",
                     "bound": "equal, or a near tie", "margin": "–", "ok": x.argmax_match or x.near_tie_flip,
                     "where": where})
        gap, err = x.oracle_top2_gap, diff
    # informative, not a check: where the gap is within 2|Δ| the tokens may flip, which the rows above judge
    no_flip = gap > 2 * err
    rows.append({"metric": "oracle top-1/top-2 gap", "value": f"{gap:.3e}", "bound": f"> 2 × |Δ| = {2 * err:.3e}",
                 "margin": f"{gap - 2 * err:+.3e}", "ok": no_flip,
                 "status": "no flip possible" if no_flip else "flip possible", "where": where})
    return rows


def _token_metrics(r: Record) -> list[dict]:
    """Graphs that return tokens: agreement with the oracle's tokens, each different one within the tie bound."""
    t, out = r.tokens, any(s.shortfall is None for s in r.tokens.steps)
    worst = max((s.shortfall for s in t.steps if s.shortfall is not None), default=0.0)
    return [{"metric": "graph tokens below the oracle's top logit by", "value": "a token outside the vocabulary" if out
             else f"{worst:.3e} at most ({agreement(r)})", "bound": f"≤ {t.tie_bound:.1e} (2 × the bound: a near tie)",
             "margin": "–" if out else f"{t.tie_bound - worst:+.3e}", "ok": not out and worst <= t.tie_bound,
             "where": "every step" if t.first_divergence is None else f"first differs at step {t.first_divergence}"}]


def _check_metrics(r: Record) -> list[dict]:
    """A kind with neither logits nor a block part: each check that compared a value with a bound."""
    return [_metric(c.name, c.value, c.bound, c.stage) for c in r.checks if c.value is not None and c.bound is not None]


def _block_metrics(r: Record) -> list[dict]:
    """The block check: the block's max |Δ| against the block bound, and how decisively it routed."""
    b = r.block
    where = f"layer {b.layer}, {b.tokens} seeded hidden states"
    return [_metric("max |Δ| of the MoE block", r.max_abs_diff, r.bound, where),
            {"metric": "router margin (k-th − (k+1)-th probability, smallest)", "value": f"{b.router_margin:.3e}",
             "bound": "> 0 (routing decided, not tied)", "margin": "–", "ok": b.router_margin > 0, "where": where},
            {"metric": "distinct expert sets", "value": str(b.expert_sets), "bound": "> 1 (routing varies)",
             "margin": "–", "ok": b.expert_sets > 1, "where": where}]


def _strict_note(r: Record) -> str | None:
    """Said plainly when the strict bound changed the verdict; absent when it was not used."""
    if not r.noise or r.fixed_verdict == r.verdict:
        return None
    n = r.noise
    return (f"The fixed bound alone would have passed it: max |Δlogit| {r.max_abs_diff:.3e} is within the fixed bound "
            f"{r.bound:.1e}, but it is {n.noise_ratio:.1f}× the fp32 noise floor {n.noise_floor:.2e} "
            f"(fp32 against fp64 oracle), above the strict bound {n.strict_factor:g}× = {n.strict_bound:.2e}.")


def _three_way(r: Record) -> dict | None:
    """Oracle, IREE and XLA pairwise, and which side is the odd one out; None where XLA did not run."""
    x = r.xla
    if not x:
        return None
    if x.error:
        return {"error": x.error}
    pairs = (("oracle – IREE", x.oracle_iree), ("oracle – XLA", x.oracle_xla), ("IREE – XLA", x.iree_xla))
    return {"rows": [{"pair": label, "value": value, "ok": value <= x.bound} for label, value in pairs],
            "bound": x.bound, "verdict": x.verdict, "sentence": THREE_WAY_SENTENCES[x.verdict],
            "argmax_match": x.argmax_match, "cache_hit": x.cache_hit}


def _localisation(page: str, r: Record) -> dict | None:
    """The per-layer localisation of a failing prefill graph: its sentence, chart and tap table."""
    found = r.localisation
    if not found:
        return None
    if found.error:
        return {"error": found.error}
    taps = [asdict(t) for t in found.taps]
    chart = Markup(charts.taps_chart(taps, found.strict_factor, f"{page}-{r.graph}-taps")) if taps else None
    first = found.first
    return {"summary": found.summary, "chart": chart, "factor": found.strict_factor,
            "taps": [{**t, "first": first is not None and (t["layer"], t["point"]) == (first.layer, first.point),
                      "over": not t["max_abs_diff"] <= found.strict_factor * t["noise_floor"]} for t in taps]}


def _timeline_row(t, r: Record) -> dict:
    bound, err = r.bound, t.max_abs_diff
    over, flip = not err <= bound, t.oracle_token != t.graph_token
    status = ["over the bound"] if over else []
    if flip:  # the rule of core/compare.py's DecodeComparison.divergence, step by step
        status.append("near-tie flip" if t.oracle_top2_gap <= 2 * err and not over else "token flip: failure")
    return {**asdict(t), "slot": decode_slot(r, t.step), "margin": bound - err, "twice": 2 * err,
            "flip": flip, "over": over, "status": ", ".join(status) or "ok", "worst": t.step == r.decode.worst_step,
            "top_k": _top_k_rows(t.oracle_top_k, t.graph_top_k)}


def _top_k_rows(oracle, graph) -> list[dict]:
    return [{"rank": i + 1, "oracle": o, "graph": g} for i, (o, g) in enumerate(zip(oracle, graph))]


def _timings(timings: dict) -> list[tuple[str, float]]:
    ordered = [(s, timings[s]) for s in STAGES if s in timings] + [(s, v) for s, v in timings.items() if s not in STAGES]
    return ordered + [("total", round(sum(timings.values()), 4))] if ordered else []


def _structural(r: Record) -> dict | None:
    """The record's structural check, with the golden's op histogram beside today's."""
    s = r.structural
    if not s:
        return None
    ops, golden = s.ops or {}, s.golden_ops or {}
    results = ", ".join(f"{dtype}{shape}" for shape, dtype in s.results or [])
    return {**asdict(s), "results": results,
            "ops_table": [{"op": op, "golden": golden.get(op, 0), "now": ops.get(op, 0)}
                          for op in sorted(set(ops) | set(golden))]}
