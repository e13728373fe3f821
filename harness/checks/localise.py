"""Per-layer localisation: the first layer and sub-block whose error jumps above the noise floor.

The prefill graph is emitted with debug taps (emit(..., taps=True): every layer's attention
output, MLP output, both before any post-norm and the residual add, and the layer's output),
run on IREE with the fp32 oracle's weights, and each tap is compared over the prompt's real
tokens with the same tensor hooked out of the fp32 oracle (forward hooks on self_attn, mlp
and the decoder layer). Each tap's noise floor is fp32 oracle vs fp64 oracle at that tap;
the first tap (in forward order) whose error exceeds noise.STRICT_FACTOR x its floor is named.
"attention" covers the attention's input norm, projections, RoPE, mask and softmax; "mlp" its
input norm and the MLP; "layer" the post-norms and residual adds. Nothing flagged although the
logits fail means the final norm or the head.

Runs only on request or for a failing case: it compiles one more graph and runs the oracle twice.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict

import numpy as np

from emitter import Config, Decoder, emit
from emitter.decoder import TAP_POINTS
from harness.backends import SUBJECT
from harness.core import noise, oracle_cache
from harness.core.fixtures import Fixture
from harness.core.graph import parse_signature
from harness.core.kinds import prefill_inputs
from harness.core.record import Localisation, Tap

HF_MODULES = {"attention": "self_attn", "mlp": "mlp", "layer": None}


def oracle_taps(fixture: Fixture, dtype: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({point: [L, T, hidden]} of the oracle on the prompt at its positions, its fp32 state dict)."""
    import torch

    oracle = oracle_cache.model(fixture, dtype)
    layers = oracle.model.model.layers
    taps = {p: [None] * len(layers) for p in TAP_POINTS}
    handles = []
    for i, layer in enumerate(layers):
        for point, attr in HF_MODULES.items():
            def hook(_module, _args, out, point=point, i=i):
                out = out[0] if isinstance(out, tuple) else out
                taps[point][i] = out[0].detach().to(torch.float64).numpy()
            handles.append((getattr(layer, attr) if attr else layer).register_forward_hook(hook))
    try:
        with torch.no_grad():
            oracle.forward(fixture.prompt(), fixture.prompt_positions())
    finally:
        for h in handles:
            h.remove()
    return {p: np.stack(v) for p, v in taps.items()}, oracle.state_dict()


def graph_taps(text: str, weights: dict[str, np.ndarray], fixture: Fixture) -> dict[str, np.ndarray]:
    """{point: [L, T, hidden]} of the tapped prefill graph on the prompt's real tokens."""
    graph = parse_signature(text)
    module = SUBJECT.load(text, graph, lambda stage: contextlib.nullcontext())
    results = module.call(weights, prefill_inputs(fixture, module.main.arg("tokens").shape[0]))
    return dict(zip(TAP_POINTS, (np.asarray(r)[:, : fixture.prompt_len] for r in results[3:])))


def localise(fixture: Fixture, config: Config | None = None, core: type[Decoder] = Decoder) -> Localisation:
    """The tap table and the first tap above STRICT_FACTOR x its floor. config/core: what to emit
    (a mutant's); by default the fixture's config through the built-in core."""
    config = config or Config.from_json(fixture.config_path)
    text = emit(config, "prefill", core=core, taps=True)
    fp32, weights = oracle_taps(fixture, "float32")
    fp64, _ = oracle_taps(fixture, "float64")
    graph = graph_taps(text, weights, fixture)
    table, first = [], None
    for layer in range(config.num_layers):
        for point in TAP_POINTS:
            error = float(np.abs(graph[point][layer] - fp32[point][layer]).max())
            floor = float(max(np.abs(fp32[point][layer] - fp64[point][layer]).max(),
                              noise.F32_EPS * np.abs(fp64[point][layer]).max()))
            tap = Tap(layer, point, error, floor, error / floor)
            table.append(tap)
            if first is None and not error <= noise.STRICT_FACTOR * floor:
                first = tap
    return Localisation(None, first, table, noise.STRICT_FACTOR, describe(first))


def describe(first: Tap | None) -> str:
    if first is None:
        return ("no layer's output leaves the noise floor: the divergence is after the last layer "
                "(final norm or head)")
    return (f"first divergence: layer {first.layer} {first.point} (max |Δ| {first.max_abs_diff:.2e} = "
            f"{first.noise_ratio:.0f}x its noise floor {first.noise_floor:.1e})")


def failed(error: Exception) -> Localisation:
    """A localisation that could not be made: its error, no taps."""
    return Localisation(f"{type(error).__name__}: {error}", None, [], None, "")


def main(argv=None) -> int:
    """python -m harness.checks.localise FAMILY: the tap table of the built-in emitter's prefill graph."""
    import argparse

    from harness.core import fixtures
    ap = argparse.ArgumentParser(prog="python -m harness.checks.localise", description=main.__doc__)
    ap.add_argument("family")
    ap.add_argument("--mutant", help="localise this mutant (harness/checks/mutants.py) instead")
    args = ap.parse_args(argv)
    fixture = fixtures.load(args.family)
    config, core = Config.from_json(fixture.config_path), Decoder
    if args.mutant:
        from harness.checks.mutants import MUTANTS
        config, core = MUTANTS[args.mutant].config(config), MUTANTS[args.mutant].core
    result = localise(fixture, config, core)
    for tap in result.taps:
        print(f"layer {tap.layer:>2} {tap.point:<9} max|Δ| {tap.max_abs_diff:.2e}  "
              f"floor {tap.noise_floor:.1e}  {tap.noise_ratio:>10.1f}x")
    print(result.summary)
    print(json.dumps(result.first and asdict(result.first)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
