"""Shrinking a published config keeps every architectural choice: the shrunk config parses to the same flags."""
import json
import random
import time

import pytest

from archval.emitter import Config
from archval.harness.core import fixtures
from archval.harness.checks import kept, shrink
from archval.harness.checks.published import PROMPT_LEN
from archval.harness.checks.structural import REAL_DIR

REAL = sorted(d.name for d in REAL_DIR.iterdir() if (d / "config.json").is_file())
CONFIGS = [REAL_DIR / n / "config.json" for n in REAL] + [fixtures.load(n).config_path for n in fixtures.names()]
IDS = [f"real/{n}" for n in REAL] + fixtures.names()


def transformers5_dialect(raw):
    """The config as transformers 5 saves it (rope_parameters, layer_types), model_type as published."""
    from transformers import AutoConfig
    from archval.oracles.hf import binding
    return {**AutoConfig.for_model(**binding(raw["model_type"]).config(raw)).to_dict(), "model_type": raw["model_type"]}


def check_kept(raw, source):
    tiny = shrink.shrink(raw, source)
    before, after = Config.from_dict(raw), Config.from_dict(tiny.config)
    assert kept.architecture(after) == kept.architecture(before)
    assert kept.schedule_kept(kept.layer_schedule(before), kept.layer_schedule(after))
    # tiny, and a window that bites within the prompt
    assert after.vocab_size == shrink.VOCAB and after.hidden_size <= 128 and after.num_layers <= 6
    assert after.moe is None or after.moe.experts <= 16
    assert after.sliding_window is None or after.sliding_window < PROMPT_LEN
    # every field not reported as changed is kept as written
    changed = {field.split(".")[0] for field, _, _ in tiny.changes}
    assert {k: v for k, v in raw.items() if k not in changed} == \
        {k: v for k, v in tiny.config.items() if k not in changed}
    return tiny


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_shrunk_config_keeps_every_architectural_choice(path):
    check_kept(json.loads(path.read_text()), str(path))


@pytest.mark.parametrize("path", CONFIGS[:len(REAL)], ids=IDS[:len(REAL)])
def test_shrinking_the_transformers5_dialect_keeps_every_choice(path):
    check_kept(transformers5_dialect(json.loads(path.read_text())), str(path))


def test_architecture_sees_a_changed_choice():
    """The check has teeth: a flag, a schedule or a RoPE scaling that changed is seen."""
    raw = json.loads((REAL_DIR / "gemma-3-1b-it" / "config.json").read_text())
    base = kept.architecture(Config.from_dict(raw))
    for edit in ({"tie_word_embeddings": False}, {"final_logit_softcapping": 30.0}, {"num_key_value_heads": 4},
                 {"rope_scaling": {"rope_type": "linear", "factor": 8.0}}, {"head_dim": 288}):
        assert kept.architecture(Config.from_dict({**raw, **edit})) != base, edit
    schedule = kept.layer_schedule(Config.from_dict(raw))
    assert not kept.schedule_kept(schedule, schedule[1:6] + schedule[:1])  # the global layer moved


def test_layer_schedule_is_rederived_from_explicit_lists():
    raw = json.loads((REAL_DIR / "Olmo-3-1025-7B" / "config.json").read_text())
    tiny = shrink.shrink(raw).config
    assert tiny["num_hidden_layers"] == 4
    assert tiny["layer_types"] == ["sliding_attention"] * 3 + ["full_attention"]
    smol = shrink.shrink(json.loads((REAL_DIR / "SmolLM3-3B" / "config.json").read_text())).config
    assert smol["no_rope_layers"] == [1, 1, 1, 0]


def test_a_schedule_of_runs_keeps_one_layer_per_run():
    """Qwen2 with use_sliding_window: full layers below max_window_layers, sliding from there."""
    raw = {**json.loads((REAL_DIR / "Qwen2.5-7B-Instruct" / "config.json").read_text()),
           "num_hidden_layers": 28, "use_sliding_window": True, "max_window_layers": 20}
    tiny = check_kept(raw, "qwen2.json")
    assert tiny.layers == (0, 20)
    assert Config.from_dict(tiny.config).layer_types == ("full_attention", "sliding_attention")


def test_yarn_scaling_bites_within_the_fixture_positions():
    raw = json.loads((REAL_DIR / "Olmo-3-1025-7B" / "config.json").read_text())
    tiny = Config.from_dict(shrink.shrink(raw).config)
    assert tiny.rope_full.kind == "yarn" and tiny.rope_full.original_max_position == shrink.ROPE_CONTEXT
    assert tiny.rope_full.attention_factor == pytest.approx(1.2079441541679836)


def test_the_schedule_period_is_the_shortest_shift_and_linear_in_the_layers():
    """_period was quadratic: a 200k-layer schedule took ~35 min (issue 17)."""
    def by_definition(seq):
        return next(p for p in range(1, len(seq) + 1) if all(seq[i] == seq[i + p] for i in range(len(seq) - p)))
    rng = random.Random(17)
    for _ in range(2000):
        unit = [rng.choice("fs") for _ in range(rng.randint(1, 6))]
        seq = (unit * 8)[:rng.randint(1, 40)]
        if rng.random() < 0.3:
            seq[rng.randrange(len(seq))] = "x"
        assert kept.period(seq) == by_definition(seq), seq
    start = time.perf_counter()
    assert kept.period(["full"] * 100_000 + ["sliding"] * 100_000) == 200_000
    assert time.perf_counter() - start < 2


def test_a_score_scale_that_cannot_stay_an_integer_is_refused():
    """transformers declares query_pre_attn_scalar int: 100 at head_dim 256 would be 9.375 at head_dim 24."""
    raw = {**json.loads((REAL_DIR / "gemma-2-2b" / "config.json").read_text()), "query_pre_attn_scalar": 100}
    with pytest.raises(shrink.ShrinkError, match="query_pre_attn_scalar = 9.375, not an integer"):
        shrink.shrink(raw, "gemma2.json")
