"""What the console says of records: a line per case (and, for a failure, why, where and how to replay it),
the counts, and the mutation self-test's kill rates. The index and the pages use the same wording."""
from __future__ import annotations

from collections.abc import Iterable

from ..core import triangulate
from ..core.kinds import KINDS
from ..core.record import ERROR, FAIL, PASS, UNSUPPORTED, Record, ThreeWay


def agreement(r: Record) -> str | None:
    """Token agreement (or, for a block, what the check covered), in the words every view uses."""
    if r.block:
        return f"layer {r.block.layer}, {r.block.expert_sets} expert sets, router margin {r.block.router_margin:.1e}"
    if r.tokens:
        steps, first = r.tokens.steps, r.tokens.first_divergence
        agreeing = sum(t.graph_token == t.oracle_token for t in steps)
        kind = "greedy" if len(steps) > 1 else "token"
        return (f"{kind} {agreeing}/{len(steps)} tokens (no logits)" if first is None
                else f"{kind} {agreeing}/{len(steps)} tokens (no logits), differs at step {first}")
    if r.decode:
        tokens = len(r.decode.timeline)
        agreeing = sum(t.oracle_token == t.graph_token for t in r.decode.timeline)
        return (f"greedy {tokens}/{tokens} tokens" if r.decode.first_divergence is None
                else f"greedy {agreeing}/{tokens} tokens, {r.decode.divergence} at step {r.decode.first_divergence}")
    if r.logits:
        if r.logits.near_tie_flip:
            return "argmax near-tie flip"
        return "argmax match" if r.logits.argmax_match else "argmax differs"
    return None


def three_way_note(x: ThreeWay) -> str:
    """The gate line's compact note."""
    if x.error:
        return "xla ERROR"
    short = {triangulate.AGREE: "all agree", triangulate.EMITTER: "emitter bug", triangulate.IREE: "IREE bug",
             triangulate.XLA: "XLA odd", triangulate.NONE: "none agree", triangulate.BOTH_NONFINITE: "both NaN/Inf"}
    return f"xla {x.oracle_xla:.1e}: {short[x.verdict]}"


def three_way_detail(x: ThreeWay) -> str:
    """The failure line's full three-way comparison."""
    if x.error:
        return f"xla: {x.error}"
    return (f"xla: {x.verdict} (oracle-IREE {x.oracle_iree:.3e}, oracle-XLA {x.oracle_xla:.3e}, "
            f"IREE-XLA {x.iree_xla:.3e}, each against {x.bound:.1e})")


def line(r: Record) -> str:
    diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.3e}"
    metric = (KINDS[r.graph].metric if r.graph in KINDS else "max |Δ|").replace(" ", "")
    text = (f"{r.family:<20} {r.graph:<9} {metric:<11} {diff:>9}  bound {r.bound:.0e}  "
            f"{agreement(r) or '-':<30} {r.verdict}")
    if r.xla:
        text += f"  [{three_way_note(r.xla)}]"
    if r.skipped:
        text += f"  [skipped: {', '.join(k.replace('_', ' ') for k in r.skipped)}]"
    if r.verdict != PASS or r.message:
        text += f"\n    {r.message}"
        if r.xla and r.xla.verdict != triangulate.AGREE:
            text += f"\n    {three_way_detail(r.xla)}"
        if r.localisation:
            text += f"\n    localised: {r.localisation.summary or r.localisation.error}"
        text += f"\n    replay: {r.replay}"
    return text


def counts(records: Iterable[Record]) -> str:
    verdicts = [r.verdict for r in records]
    return (f"{verdicts.count(PASS)} passed, {verdicts.count(FAIL)} failed, {verdicts.count(ERROR)} errors, "
            f"{verdicts.count(UNSUPPORTED)} unsupported")


def mutant_line(r: Record) -> str:
    """A mutation self-test record: killed, or how it survived."""
    m = r.mutant
    diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.3e}"
    ratio = f"{r.noise.noise_ratio:>9.1f}x noise" if r.noise else " " * 15
    state = "killed" if m.killed else f"SURVIVED ({r.verdict if m.changes_graph else 'UNCHANGED'})"
    if m.equivalent:
        state = (f"equivalent at fp32: its exact effect {m.exact_effect:.1e} (fp64 oracle with the slip) is "
                 f"within the strict bound {r.noise.strict_bound:.1e}")
    if m.refused:
        state = f"refused: {r.message}"
    elif m.killed:
        state += f" {m.margin:.3g}x over the {m.judged_by}" if m.margin is not None else f" by {m.judged_by}"
    note = "  (the fixed 1e-2 bound alone would miss it)" if m.killed and not m.fixed_killed else ""
    return f"{r.family:<20} {m.name:<24} {r.graph:<8} max|Δlogit| {diff:>9} {ratio}  {state}{note}"


SMALLEST_MARGINS = 5


def weak(r: Record, threshold: float) -> bool:
    """Killed, but by a check less than threshold times over its bound."""
    return bool(r.mutant.killed) and r.mutant.margin is not None and r.mutant.margin < threshold


def kill_summary(records: list[Record], weak_margin: float) -> tuple[list[str], bool]:
    """Per-family kill rates, FAIL kills and refusals counted apart (a refusal is an ERROR at binding: no number,
    so no margin), the survivors, what the fixed bound alone misses, the smallest detection margins and the weak
    spots (killed by less than weak_margin); ok if all killed, none weakly."""
    lines = []
    equivalent = [f"{r.family}:{r.mutant.name}" for r in records if r.mutant.equivalent]
    counted = [r for r in records if not r.mutant.equivalent]
    for family in dict.fromkeys(r.family for r in counted):
        rs = [r for r in counted if r.family == family]
        killed, fixed = sum(r.mutant.killed for r in rs), sum(r.mutant.fixed_killed for r in rs)
        lines.append(f"{family:<20} killed {killed}/{len(rs)} ({100 * killed / len(rs):.0f}%): "
                     f"{len(failed_kills(rs))} FAIL, {len(refusals(rs))} refused   fixed bound alone {fixed}/{len(rs)}")
    survivors = [f"{r.family}:{r.mutant.name}" for r in counted if not r.mutant.killed]
    missed = [f"{r.family}:{r.mutant.name}" for r in counted if r.mutant.killed and not r.mutant.fixed_killed]
    total, failed, refused = len(counted), failed_kills(counted), refusals(counted)
    killed = len(failed) + len(refused)
    lines.append(f"kill rate {killed}/{total} ({100 * killed / max(total, 1):.1f}%): {len(failed)} FAIL, each with "
                 f"its margin; {len(refused)} refused (ERROR at binding, as the mutant expects: no margin)")
    lines.append("refused: " + (", ".join(f"{r.family}:{r.mutant.name}" for r in refused) or "none"))
    lines.append("FAIL with no margin (no failed check has a ratio): "
                 + (", ".join(f"{r.family}:{r.mutant.name} ({r.mutant.judged_by})" for r in failed
                              if r.mutant.margin is None) or "none"))
    lines.append("survivors: " + (", ".join(survivors) or "none"))
    lines.append("killed only by the strict bound (the fixed bound alone misses): " + (", ".join(missed) or "none"))
    lines.append("equivalent at fp32, not counted (exact effect within the strict bound): "
                 + (", ".join(equivalent) or "none"))
    margins = sorted((r for r in failed if r.mutant.margin is not None), key=lambda r: r.mutant.margin)
    lines.append("smallest detection margins: " + (", ".join(
        f"{r.family}:{r.mutant.name} {r.mutant.margin:.3g}x ({r.mutant.judged_by})"
        for r in margins[:SMALLEST_MARGINS]) or "none"))
    weak_spots = [f"{r.family}:{r.mutant.name}" for r in margins if weak(r, weak_margin)]
    lines.append(f"weak spots (killed by less than {weak_margin:g}x): " + (", ".join(weak_spots) or "none"))
    return lines, not survivors and not weak_spots


def failed_kills(records: list[Record]) -> list[Record]:
    """The mutants killed by a FAIL: a number over a bound, measured."""
    return [r for r in records if r.mutant.killed and not r.mutant.refused]


def refusals(records: list[Record]) -> list[Record]:
    """The mutants killed by an ERROR the mutant expects (Mutant.refused_as): refused, never measured."""
    return [r for r in records if r.mutant.killed and r.mutant.refused]


def share(ratio: float) -> str:
    """A value's share of its bound: a percentage within it, a multiple over it (732×, not 73217.5%)."""
    return f"{ratio:.1%}" if ratio <= 1 else f"{ratio:,.{0 if ratio >= 10 else 1}f}×"


def of_the_bound(value: float, bound: float) -> str:
    return f"{share(value / bound)} {'of ' if value <= bound else ''}the bound"


def slot_and_position(r: Record, position: int, step: int | None = None) -> str:
    """Where a compared token sits: its cache slot and its position (RoPE's), which the fixtures keep apart
    (core/fixtures.py: POSITION_GAP), so that position 14 of a 13-token prompt reads as what it is. Decode's
    step s is at slot prompt_len - 1 + s; prefill's last token at prompt_len - 1. The worst of every prompt
    position, or a record without its prompt (an older run's, merged), is said by its position alone."""
    every = step is None and r.abi is not None and r.abi.logits == "every position"
    if not r.fixture.prompt or every:
        return f"position {position}"
    return f"slot {decode_slot(r, step or 0)}, position {position}"


def decode_slot(r: Record, step: int) -> int:
    """The cache slot of a record's step: decode's step s at prompt_len - 1 + s; a serving graph's worst row's step s
    (0: its first decode step) at that row's prompt_len + s."""
    if r.batch:
        return r.batch.rows[r.batch.worst_row].prompt_len + step
    return len(r.fixture.prompt) - 1 + step


def step_place(r: Record, step) -> str:
    """A decode step's (core/record.py: Step) slot and position."""
    return slot_and_position(r, step.position, step.step)
