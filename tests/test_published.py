"""--config: a published config.json, shrunk, through the whole differential check; bad input refused."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from archval.harness.checks import mutants, published, shrink
from archval.harness.checks.structural import REAL_DIR
from archval.harness.cli import main
from archval.harness.core.case import run_case
from archval.harness.present.console import line as format_line

REAL = sorted(d.name for d in REAL_DIR.iterdir() if (d / "config.json").is_file())
SUBSET = ["gemma-3-1b-it", "Qwen3-30B-A3B"]  # a 5:1 window schedule, and 16 experts top-8 with q/k norm


def real(name: str) -> dict:
    return json.loads((REAL_DIR / name / "config.json").read_text())


def run_gate(tmp_path, capsys, *argv):
    code = main([*argv, "--reports", str(tmp_path / "reports")])
    captured = capsys.readouterr()
    summary = tmp_path / "reports" / "summary.json"
    return code, captured.out, captured.err, json.loads(summary.read_text())["records"] if summary.exists() else None


def test_published_configs_pass_after_shrinking_and_the_report_says_what_was_shrunk(tmp_path, capsys):
    model = tmp_path / "user" / "gemma-3-1b-it"
    model.mkdir(parents=True)
    shutil.copy(REAL_DIR / "gemma-3-1b-it" / "config.json", model / "config.json")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    code, out, _, records = run_gate(tmp_path, capsys, "--config", str(model / "config.json"),
                                     "--config", str(REAL_DIR / SUBSET[1] / "config.json"))
    assert code == 0 and "RESULT: PASS" in out, out
    assert {(r["family"], r["graph"]) for r in records} == {
        ("gemma-3-1b-it", "prefill"), ("gemma-3-1b-it", "decode"),
        ("Qwen3-30B-A3B", "prefill"), ("Qwen3-30B-A3B", "decode"), ("Qwen3-30B-A3B", "moe_block")}
    assert all(r["verdict"] == "PASS" for r in records)
    gemma = next(r for r in records if r["family"] == "gemma-3-1b-it" and r["graph"] == "decode")
    assert gemma["replay"] == f"./validate_arch.sh --config {model / 'config.json'} --graph decode"
    assert gemma["published"]["shrunk"]["num_hidden_layers"] == [26, 6]
    assert gemma["published"]["shrunk"]["sliding_window"] == [512, shrink.WINDOW]
    assert "MQA attention" in gemma["published"]["kept"]
    assert "num_hidden_layers 26 -> 6" in out and f"sliding_window 512 -> {shrink.WINDOW}" in out
    assert "layer pattern (sliding, sliding, sliding, sliding, sliding, full) repeated" in out
    qwen = next(r for r in records if r["family"] == "Qwen3-30B-A3B")
    assert qwen["published"]["router_margin"] > published.ROUTER_MARGIN
    # nothing the user wrote was changed, nothing was written beside it
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


@pytest.mark.skipif(not os.environ.get("ARCHVAL_ALL_PUBLISHED"),
                    reason=f"all {len(REAL)} published configs, shrunk and run, are opt-in: set ARCHVAL_ALL_PUBLISHED=1")
def test_every_published_config_passes_after_shrinking(tmp_path, capsys):
    argv = [a for name in REAL for a in ("--config", str(REAL_DIR / name / "config.json"))]
    code, out, _, records = run_gate(tmp_path, capsys, *argv, "--jobs", "2")
    assert code == 0, out
    assert {r["family"] for r in records} == set(REAL) and all(r["verdict"] == "PASS" for r in records)


SHRUNK_MUTANTS = [
    ("Mistral-7B-v0.1", "decode_ignores_window"),    # window 4096 -> 4: it bites in decode
    ("MiMo-7B-Base", "honour_inert_window"),         # the inert window, shrunk too, would bite if honoured
    ("gemma-2-2b", "no_attn_softcap"),               # soft-caps 50 / 30 -> 20 / 5: both still bite
    ("gemma-2-2b", "no_final_softcap"),
    ("Olmo-3-1025-7B", "no_yarn_attention_factor"),  # YaRN and llama3 over an original context of 32
    ("Llama-3.2-1B", "no_rope_scaling"),
    ("Qwen3-30B-A3B", "no_topk_renorm"),             # top-8 of 16 experts, renormalised
    ("phi-2", "rotary_full_width"),                  # partial rotary 0.4: 6 of 16 dimensions after shrinking
    ("pythia-1b", "qkv_fused_blockwise"),            # query_key_value fused per head
    ("pythia-1b", "parallel_block_one_norm"),        # use_parallel_residual, two LayerNorms
    ("Minitron-4B-Base", "relu_for_relu2"),
    ("EXAONE-4.0-32B", "nope_layer_rotated"),        # 3 sliding : 1 global NoPE layer from layer_types
    ("GLM-4-9B-0414", "sandwich_norms_swapped"),
    ("GLM-4-9B-0414", "gate_up_swapped"),            # the fused gate_up_proj
    ("granite-3.0-2b-instruct", "no_embedding_multiplier"),  # Granite's multipliers are kept as published
    ("granite-3.0-2b-instruct", "no_attention_multiplier"),
    ("starcoder2-3b", "layernorm_bias_ignored"),
    ("stablelm-2-1_6b", "rotary_full_width"),              # 0.25 of head_dim 16: four rotary dimensions
    ("c4ai-command-r-v01", "parallel_block_sequential"),
    ("c4ai-command-r7b-12-2024", "nope_layer_rotated"),  # 3 sliding : 1 global NoPE, window 4096 -> 7
    ("Phi-3-mini-4k-instruct", "qkv_fused_kv_swapped"),
    ("gpt-oss-20b", "no_attention_sinks"),               # written from memory (fixtures/real/gpt-oss-20b)
    ("gpt-oss-20b", "gate_up_halves"),                   # gate and up in alternate columns of [E, H, 2I]
    ("gpt-oss-20b", "no_swiglu_clamp"),                  # the published limit 7, not shrunk: it still clamps
    ("gpt-oss-20b", "yarn_truncated"),                   # truncate false
    ("DeepSeek-V3", "no_mla_mscale"),                # YaRN factor 40 kept: mscale^2 = 1.87 on the scores
    ("DeepSeek-V3", "group_limit_ignored"),          # 4 of 8 groups of 2 experts, top-8
    ("DeepSeek-V3", "no_correction_bias"),
]


@pytest.mark.parametrize("name,mutant", SHRUNK_MUTANTS, ids=[f"{n}-{m}" for n, m in SHRUNK_MUTANTS])
def test_what_shrinking_keeps_still_bites(tmp_path, name, mutant):
    """A choice kept but shrunk into irrelevance would test nothing: its mutant must fail the shrunk model."""
    fixture = published.prepare(str(REAL_DIR / name / "config.json"), tmp_path, name).fixture
    bug = mutants.MUTANTS[mutant]
    record = run_case(fixture, bug.graph, texts=bug.texts(fixture.config_path))
    assert record.verdict == "FAIL", format_line(record)


def test_an_moe_config_that_routes_near_tied_takes_the_next_seed(tmp_path, monkeypatch):
    margins = {1: 1e-6, 2: 5e-7, 3: 0.2}
    monkeypatch.setattr(published, "router_margin", lambda fixture: margins[fixture.seed])
    p = published.prepare(str(REAL_DIR / "Mixtral-8x7B-v0.1" / "config.json"), tmp_path, "mixtral")
    assert p.fixture.seed == 3 and p.error is None and p.router_margin == 0.2


def test_an_moe_config_that_never_routes_decisively_is_an_error_not_a_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(published, "router_margin", lambda fixture: 1e-6)
    code, out, _, records = run_gate(tmp_path, capsys, "--config", str(REAL_DIR / "Mixtral-8x7B-v0.1" / "config.json"))
    assert code == 1 and "RESULT: FAIL" in out
    assert {r["verdict"] for r in records} == {"ERROR"}
    assert "no seed in 1..8 routes the shrunk model decisively" in records[0]["message"]


def test_an_oracle_that_fails_in_the_router_check_is_that_configs_error_not_a_crash(tmp_path, monkeypatch):
    """The router check builds the oracle in the gate's own process, before any worker: a failure there is
    the config's ERROR, like a failure in a worker."""
    def broken(fixture):
        raise RuntimeError("injected")
    monkeypatch.setattr(published, "router_margin", broken)
    p = published.prepare(str(REAL_DIR / "Mixtral-8x7B-v0.1" / "config.json"), tmp_path, "mixtral")
    assert p.error == "the router check could not run the oracle: RuntimeError: injected"


BAD = [
    ("not json", "{\"model_type\": \"llama\",", "not valid JSON"),
    ("missing field", {k: v for k, v in real("Llama-3.2-1B").items() if k != "hidden_size"},
     "required field 'hidden_size' is missing"),
    ("unknown model_type", {**real("Llama-3.2-1B"), "model_type": "llama9"},
     "field 'model_type' = \"llama9\": not a supported family"),
    ("trust_remote_code", {**real("Llama-3.2-1B"), "model_type": "deepseek_v9",
                           "auto_map": {"AutoModelForCausalLM": "modeling_deepseek.DeepseekV9ForCausalLM"}},
     "field 'model_type' = \"deepseek_v9\": a trust_remote_code architecture"),
    ("zero heads", {**real("Mistral-7B-v0.1"), "num_attention_heads": 0},
     "field 'num_attention_heads' = 0: must be an integer >= 1"),
    ("heads not dividing hidden", {**real("Mistral-7B-v0.1"), "num_attention_heads": 30, "num_key_value_heads": 6},
     "field 'num_attention_heads' = 30: must divide hidden_size (4096) when head_dim is not given"),
    ("top-k above experts", {**real("Mixtral-8x7B-v0.1"), "num_experts_per_tok": 9},
     "field 'num_experts_per_tok' = 9: exceeds the number of experts (num_local_experts = 8)"),
]


@pytest.mark.parametrize("case,content,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_refused_with_one_sentence(tmp_path, capsys, case, content, message):
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    written = path.read_bytes()
    code, out, err, records = run_gate(tmp_path, capsys, "--config", str(path))
    assert code == 2 and records is None
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and message in err, err
    assert path.read_bytes() == written and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_bad_config_from_the_command_line_exits_2_without_a_traceback(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**real("Mixtral-8x7B-v0.1"), "num_experts_per_tok": 9}))
    proc = subprocess.run([sys.executable, "-m", "archval", "--config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.fullmatch(r"error: .*config\.json: field 'num_experts_per_tok' = 9: .*\.\n", proc.stderr), proc.stderr


def test_config_with_family_is_a_usage_error(capsys):
    assert main(["--config", str(REAL_DIR / "Llama-3.2-1B" / "config.json"), "--family", "llama"]) == 2
    assert "--config cannot be combined with --family" in capsys.readouterr().err


def test_the_router_margin_finds_granitemoes_router():
    """GraniteMoE's router is block_sparse_moe.router, not mlp.gate: the published check's margin reads it."""
    from archval.harness.core import fixtures
    margin = published.router_margin(fixtures.load("granitemoe"))
    assert margin is not None and margin > 0
