"""Per-layer localisation names the layer and sub-block a deliberately broken layer breaks,
for several kinds of bug; the debug taps leave the normal graph byte-identical."""
from dataclasses import replace

import pytest

from archval.emitter import Config, Decoder, emit
from archval.harness.checks import mutants
from archval.harness.checks.localise import of_builtin
from archval.harness.core import fixtures

FAMILY = "gemma2"  # four layers, sandwich norms: every tap point has something to break


class ScaleOffInLayer2(Decoder):
    """attention scores 1% too large, in layer 2 only"""
    def attention(self, x, i, rope, mask):
        cfg = self.cfg
        self.cfg = replace(cfg, score_scale=cfg.score_scale * 1.01) if i == 2 else cfg
        try:
            return super().attention(x, i, rope, mask)
        finally:
            self.cfg = cfg


class RopeInterleavedInLayer1(mutants.RopeInterleaved):
    def attention(self, x, i, rope, mask):
        self.layer_index = i
        return super().attention(x, i, rope, mask)

    def rotate(self, x, cos, sin):
        return (super() if self.layer_index == 1 else super(mutants.RopeInterleaved, self)).rotate(x, cos, sin)


class GateUpSwappedInLayer3(mutants.GateUpSwapped):
    def weight(self, name, shape):
        return super().weight(name, shape) if ".layers.3.mlp." in name else Decoder.weight(self, name, shape)


class PostFeedforwardNormPlainInLayer1(Decoder):
    """layer 1's post-feedforward norm scales by w instead of (1 + w): after the MLP, before the residual"""
    def rms_norm(self, x, name):
        cfg = self.cfg
        self.cfg = replace(cfg, norm_plus_one=False) if name == "model.layers.1.post_feedforward_layernorm" else cfg
        try:
            return super().rms_norm(x, name)
        finally:
            self.cfg = cfg


class NanScoreScaleInLayer2(Decoder):
    """layer 2's attention scores scaled by NaN: every output from there on is NaN"""
    def attention(self, x, i, rope, mask):
        cfg = self.cfg
        self.cfg = replace(cfg, score_scale=float("nan")) if i == 2 else cfg
        try:
            return super().attention(x, i, rope, mask)
        finally:
            self.cfg = cfg


@pytest.mark.parametrize("core,layer,point", [
    (ScaleOffInLayer2, 2, "attention"),
    (RopeInterleavedInLayer1, 1, "attention"),
    (GateUpSwappedInLayer3, 3, "mlp"),
    (PostFeedforwardNormPlainInLayer1, 1, "layer"),
], ids=["scale-off-layer2", "rope-interleaved-layer1", "gate-up-swapped-layer3", "post-norm-layer1"])
def test_broken_layer_is_named(core, layer, point):
    fixture = fixtures.load(FAMILY)
    config = Config.from_json(fixture.config_path)
    assert emit(config, "prefill", core=core) != emit(config, "prefill"), "the bug does not change the graph"
    result = of_builtin(fixture, core=core)
    first = result.first
    assert first is not None and (first.layer, first.point) == (layer, point), result.summary


def test_correct_graph_localises_nothing():
    result = of_builtin(fixtures.load(FAMILY))
    assert result.first is None, result.summary
    assert len(result.taps) == 4 * 3


def test_taps_only_on_request():
    fixture = fixtures.load(FAMILY)
    config = Config.from_json(fixture.config_path)
    plain, tapped = emit(config, "prefill"), emit(config, "prefill", taps=True)
    assert plain == (fixture.config_path.parent / "golden" / "prefill.mlir").read_text()
    assert "tensor<4x16x64xf32>" in tapped and "tensor<4x16x64xf32>" not in plain
    with pytest.raises(ValueError):
        emit(config, "decode", taps=True)


def test_gate_localises_a_failing_prefill(monkeypatch):
    """The built-in emitter itself broken (gate/up swapped in layer 3): the gate's failing prefill
    record says where."""
    from archval.harness.pool.workers import Task, validate
    from archval.harness.present.console import line as format_line
    weight = Decoder.weight

    def swapped_in_layer3(self, name, shape):
        stem, _, leaf = name.rpartition(".mlp.")
        if stem.endswith(".layers.3"):
            name = f"{stem}.mlp.{mutants.GateUpSwapped.SWAP.get(leaf, leaf)}"
        return weight(self, name, shape)

    monkeypatch.setattr(Decoder, "weight", swapped_in_layer3)
    prefill, _decode = validate(Task(FAMILY)).records
    assert prefill.verdict == "FAIL", format_line(prefill)
    first = prefill.localisation.first
    assert (first.layer, first.point) == (3, "mlp"), prefill.localisation
    assert "localised: first divergence: layer 3 mlp" in format_line(prefill)


@pytest.fixture(scope="module")
def llama_decode():
    from archval.harness.core.case import run_case
    record = run_case(fixtures.load("llama"), "decode")
    assert record.verdict == "PASS"
    return record


def with_errors(record, errors: dict[int, float]):
    """The record with these steps' max |Δlogit| replaced."""
    import copy
    changed = copy.deepcopy(record)
    for step in changed.decode.timeline:
        step.max_abs_diff = errors.get(step.step, step.max_abs_diff)
    return changed


def test_a_decode_failing_after_its_own_prefill_step_is_decode_only(llama_decode):
    from archval.harness.checks.localise import of_decode
    found = of_decode(with_errors(llama_decode, {3: 0.5, 5: float("nan")}))
    position = llama_decode.decode.timeline[3].position
    assert found.summary.startswith("decode only: step 0 (the prefill graph, on the whole prompt) agrees")
    assert f"step 3 (position {position}) is the first over the bound (5.0e-01)" in found.summary
    assert of_decode(with_errors(llama_decode, {0: 0.5, 3: 0.5})) is None  # the prefill graph's own failure
    assert of_decode(llama_decode) is None  # nothing over the fixed bound (a strict-bound failure, or none)
    assert "step 1 " in of_decode(with_errors(llama_decode, {1: float("nan")})).summary  # NaN is over


def test_a_nan_layer_is_named_in_words_not_as_a_multiple_of_its_floor():
    localisation = of_builtin(fixtures.load(FAMILY), core=NanScoreScaleInLayer2)
    assert localisation.summary == "first divergence: layer 2 attention (its output holds NaN/Inf)", localisation


def test_gpt_neox_is_localised_through_its_own_module_names():
    """GPT-NeoX's layers are gpt_neox.layers (base_model, not model) and its attention module `attention`: a
    failing prefill is localised, not an ERROR. Its parallel MLP reading the attention's norm breaks layer 0's
    MLP first."""
    fixture = fixtures.load("gpt_neox")
    assert of_builtin(fixture).first is None
    first = of_builtin(fixture, core=mutants.ParallelBlockOneNorm).first
    assert first is not None and (first.layer, first.point) == (0, "mlp")
