"""Per-layer localisation, for any emitter: the first layer and sub-block whose error jumps above the noise floor.

The emitter is asked for the prefill graph again with --debug-taps (the tap protocol,
docs/emitter-protocol.md#taps): after its normal results it returns three more, each
f32[L, Lp, hidden], in TAP_POINTS order: every layer's attention output, MLP output (both
before any post-norm and the residual add) and the layer's output. The graph runs on IREE with
the fp32 oracle's weights, and each tap is compared over the prompt's real tokens with the same
tensor hooked out of the fp32 oracle (its taps: oracles/interface.py, forward hooks in oracles/hf.py).
Each tap's noise floor is fp32 oracle vs fp64 oracle at that tap; the first tap (in forward
order) whose error exceeds noise.STRICT_FACTOR x its floor is named. "attention" covers the
attention's input norm, projections, RoPE, mask and softmax; "mlp" its input norm and the MLP;
"layer" the post-norms and residual adds. Nothing flagged although the logits fail means the
final norm or the head. An emitter that refuses --debug-taps (exit 2) or returns no results
after its caches gave no taps: the localisation says it is not available, and why.

Runs only on request or for a failing prefill: it emits and compiles one more graph and runs the oracle twice.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np

from ..core import case as cases
from ..core import noise, oracle_cache
from ..core.abi import PROTOCOL, prefill_results
from ..core.binding import IDENTITY, Binding
from ..core.emitter_protocol import PRE_EMITTED, CaseError, EmitterRefused, emit
from ..core.fixtures import Fixture
from ..core.graph import parse_signature
from ..core.inputs import prefill_inputs
from ..core.record import FAIL, Localisation, Record, Tap
from ...oracles.interface import TAP_POINTS

def oracle_taps(fixture: Fixture, dtype: str) -> tuple[dict[str, np.ndarray], Mapping[str, np.ndarray]]:
    """({point: [L, T, hidden]} of the fixture's oracle on the prompt at its positions, the weights its graphs are
    bound to): the seeded model's, or a checkpoint's own (oracle_cache.of)."""
    return oracle_cache.of(fixture).taps(dtype), oracle_cache.run(fixture).weights


class NoTaps(Exception):
    """The emitter gave no taps: the localisation is not available, for the reason given."""


def graph_taps(text: str, fixture: Fixture, weights: dict[str, np.ndarray],
               binding: Binding = IDENTITY) -> dict[str, np.ndarray]:
    """{point: [L, T, hidden]} of the tapped prefill graph on the prompt's real tokens (at the prompt's
    positions); NoTaps when it returns nothing after its caches, CaseError when what it returns there is
    not the protocol's taps."""
    signature = binding.protocol_names(parse_signature(text), "prefill")
    main = signature.functions["main"]
    plain = prefill_results(main, fixture, tapped=True).count
    bucket = main.arg("tokens").shape[0]
    wanted = (fixture.attribute("num_hidden_layers"), bucket, fixture.attribute("hidden_size"))
    extra = main.results[plain:]
    if not extra:
        raise NoTaps("its prefill graph asked with --debug-taps returns nothing after its caches")
    if len(extra) != len(TAP_POINTS) or any(r.shape != wanted or r.dtype != "f32" for r in extra):
        shown = ", ".join(f"{r.dtype}{list(r.shape)}" for r in extra)
        raise CaseError(f"the tapped prefill graph returns {shown} after its caches; the tap protocol wants "
                        f"{len(TAP_POINTS)} results f32{list(wanted)}: {', '.join(TAP_POINTS)} ({PROTOCOL}#taps)")
    module = cases.SUBJECT.load(text, signature, lambda stage: contextlib.nullcontext())
    results = module.call(binding.graph_weights(main, weights, fixture.attribute)[0], prefill_inputs(fixture, bucket))
    return dict(zip(TAP_POINTS, (np.asarray(r)[:, : fixture.prompt_len] for r in results[plain:])))


def localise(fixture: Fixture, text: str, binding: Binding = IDENTITY) -> Localisation:
    """The tap table of a tapped prefill text and the first tap above STRICT_FACTOR x its floor; NoTaps
    when the text carries none."""
    fp32, weights = oracle_taps(fixture, "float32")
    graph = graph_taps(text, fixture, weights, binding)
    fp64, _ = oracle_taps(fixture, "float64")
    table, first = [], None
    for layer in range(fixture.attribute("num_hidden_layers")):
        for point in TAP_POINTS:
            error = float(np.abs(graph[point][layer] - fp32[point][layer]).max())
            floor = float(max(np.abs(fp32[point][layer] - fp64[point][layer]).max(),
                              noise.F32_EPS * np.abs(fp64[point][layer]).max()))
            tap = Tap(layer, point, error, floor, error / floor)
            table.append(tap)
            if first is None and not error <= noise.STRICT_FACTOR * floor:
                first = tap
    return Localisation(None, first, table, noise.STRICT_FACTOR, describe(first))


def of_emitter(fixture: Fixture, emitter, binding: Binding = IDENTITY) -> Localisation:
    """The localisation of the emitter's prefill graph, asked for with --debug-taps; never raises (a diagnosis
    that fails says so and never hides the verdict)."""
    if tuple(emitter) == PRE_EMITTED:
        return not_available("pre-emitted graphs (--graphs): no emitter to ask for them")
    try:
        return localise(fixture, emit(emitter, fixture.config_path, "prefill", taps=True), binding)
    except EmitterRefused as e:
        return not_available(f"asked with --debug-taps it exited 2: {e}")
    except NoTaps as e:
        return not_available(str(e))
    except Exception as e:  # noqa: BLE001 - a diagnosis that fails must not hide the verdict
        return unlocalised(e)


def of_builtin(fixture: Fixture, config=None, core=None) -> Localisation:
    """The built-in emitter's localisation, of a mutant's config or core where given (tests, --mutant)."""
    from ...emitter import Config, Decoder
    from ...emitter import emit as emit_builtin
    config = config or Config.from_json(fixture.config_path)
    return localise(fixture, emit_builtin(config, "prefill", core=core or Decoder, taps=True))


def describe(first: Tap | None) -> str:
    if first is None:
        return ("no layer's output leaves the noise floor: the divergence is after the last layer "
                "(final norm or head)")
    if not np.isfinite(first.max_abs_diff):  # a NaN in the tap makes max |Δ| NaN: no multiple of a floor
        return f"first divergence: layer {first.layer} {first.point} (its output holds NaN/Inf)"
    return (f"first divergence: layer {first.layer} {first.point} (max |Δ| {first.max_abs_diff:.2e} = "
            f"{first.noise_ratio:.0f}x its noise floor {first.noise_floor:.1e})")


def unlocalised(error: Exception) -> Localisation:
    """A localisation that could not be made: its error, no taps."""
    return Localisation(f"{type(error).__name__}: {error}", None, [], None, "")


def of_record(record: Record, fixture: Fixture, emitter, binding: Binding = IDENTITY) -> Localisation | None:
    """A failing case's: a prefill localised through the emitter's taps, a decode said to be decode only when its
    own prefill step agrees (checks/finish.py makes one that raised the case's ERROR); None for any other case."""
    if record.verdict != FAIL or record.graph not in ("prefill", "decode"):
        return None
    return of_emitter(fixture, emitter, binding) if record.graph == "prefill" else of_decode(record)


def of_decode(record: Record) -> Localisation | None:
    """A failing decode case whose own step 0 (the prefill graph's logits, on the whole prompt) is within the
    bound and a later step is not: the fault is in what only the decode graph does. Read from the record
    alone (no taps: they are prefill's). None when step 0 itself fails (the prefill case localises that) or
    no step is over the fixed bound (a strict-bound failure spread over every step)."""
    steps = record.decode.timeline if record.decode else []
    over = [s for s in steps if not s.max_abs_diff <= record.bound]  # NaN counts as over
    if not steps or not over or over[0].step == 0:
        return None
    first = over[0]
    return Localisation(None, None, [], None, (
        f"decode only: step 0 (the prefill graph, on the whole prompt) agrees (max |Δlogit| "
        f"{steps[0].max_abs_diff:.1e}); step {first.step} (position {first.position}) is the first over the bound "
        f"({first.max_abs_diff:.1e}): what only the decode graph does (the key and value written at slot "
        f"cache_len, the caches read back, the mask over slots, the position it rotates by)"))


def not_available(why: str) -> Localisation:
    """An emitter that gave no taps: nothing to localise with, and why."""
    return Localisation(None, None, [], None, f"not available: the emitter gave no taps ({why})")


def main(argv=None) -> int:
    """python -m archval.harness.checks.localise FAMILY: the tap table of an emitter's prefill graph (the built-in one's
    by default)."""
    import argparse

    from ..core import fixtures
    from ..core.emitter_protocol import emitter_command
    ap = argparse.ArgumentParser(prog="python -m archval.harness.checks.localise", description=main.__doc__)
    ap.add_argument("family")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--mutant", help="localise this mutant of the built-in emitter (harness/checks/mutants.py)")
    group.add_argument("--emitter", help="localise this emitter command's graph (docs/emitter-protocol.md)")
    args = ap.parse_args(argv)
    fixture = fixtures.load(args.family)
    if args.mutant:
        from ...emitter import Config
        from .mutants import MUTANTS
        mutant = MUTANTS[args.mutant]
        result = of_builtin(fixture, mutant.config(Config.from_json(fixture.config_path)), mutant.core)
    else:
        result = of_emitter(fixture, emitter_command(args.emitter))
    for tap in result.taps:
        print(f"layer {tap.layer:>2} {tap.point:<9} max|Δ| {tap.max_abs_diff:.2e}  "
              f"floor {tap.noise_floor:.1e}  {tap.noise_ratio:>10.1f}x")
    print(result.summary or result.error)
    print(json.dumps(result.first and asdict(result.first)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
