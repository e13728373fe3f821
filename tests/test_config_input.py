"""A config.json is untrusted input: every bad one is refused through the real command lines, exit 2 and one
sentence naming the file (and the field), never a traceback, a hang or a run; and the field types the refusal
goes by are transformers' own."""
import dataclasses
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from archval.emitter.config_input import (MAX_FILE_BYTES, PRETRAINED_FIELDS, PRETRAINED_LEGACY_FIELDS, RESERVED_NAMES,
                                  accepts)
from archval.emitter.families import FAMILIES
from archval.harness.checks.structural import REAL_DIR

ROOT = Path(__file__).resolve().parent.parent  # `python -m` from here runs this checkout's packages
CLI_TIMEOUT_S = 60  # a refusal takes well under a second; a config taken by mistake would run for minutes


def real(name: str) -> dict:
    return json.loads((REAL_DIR / name / "config.json").read_text())


def edited(name: str, **changes) -> dict:
    return {**real(name), **changes}


LLAMA, QWEN2, SMOL, GEMMA2, GEMMA3 = "Llama-3.2-1B", "Qwen2.5-0.5B", "SmolLM3-3B", "gemma-2-2b", "gemma-3-1b-it"
MIXTRAL, OLMOE, QWEN3_MOE = "Mixtral-8x7B-v0.1", "OLMoE-1B-7B-0924", "Qwen3-30B-A3B"

# (id, content: a dict written as JSON, or bytes as they are, the field the sentence names, or a phrase of it)
BAD_CONTENT = [
    ("model_type-list", edited(LLAMA, model_type=["llama"]), "field 'model_type'"),
    ("hidden_act-object", edited(LLAMA, hidden_act={}), "field 'hidden_act'"),
    ("sliding_window_pattern-0", edited(GEMMA3, sliding_window_pattern=0), "field 'sliding_window_pattern'"),
    ("no_rope_layer_interval-0", edited(SMOL, no_rope_layer_interval=0), "field 'no_rope_layer_interval'"),
    ("max_window_layers-str", edited(QWEN2, max_window_layers="abc"), "field 'max_window_layers'"),
    ("no_rope_layers-int", edited(SMOL, no_rope_layers=5), "field 'no_rope_layers'"),
    ("pad_token_id-negative", edited(LLAMA, pad_token_id=-500), "field 'pad_token_id'"),
    ("eos_token_id-negative-in-list", edited(GEMMA3, eos_token_id=[1, -2]), "field 'eos_token_id'"),
    ("key-cls", edited(LLAMA, cls="LlamaConfig"), "field 'cls'"),
    ("key-dunder", edited(LLAMA, __class__="x"), "field '__class__'"),
    ("key-method", edited(LLAMA, to_dict=1), "field 'to_dict'"),
    ("num_hidden_layers-1e9-float", edited(LLAMA, num_hidden_layers=1e9), "field 'num_hidden_layers'"),
    ("num_hidden_layers-1e9-int", edited(LLAMA, num_hidden_layers=10**9), "field 'num_hidden_layers'"),
    ("qwen2-200k-layer-schedule", edited(QWEN2, num_hidden_layers=200_000, use_sliding_window=True,
                                         max_window_layers=100_000), "field 'num_hidden_layers'"),
    ("head_dim-huge", edited(LLAMA, head_dim=1 << 20), "field 'head_dim'"),
    ("vocab_size-past-i32", edited(LLAMA, vocab_size=2**40), "field 'vocab_size'"),
    ("rms_norm_eps-Infinity", edited(LLAMA, rms_norm_eps=float("inf")), "field 'rms_norm_eps' = Infinity"),
    ("rms_norm_eps-int", edited(LLAMA, rms_norm_eps=1), "field 'rms_norm_eps' = 1"),
    ("rope_theta-Infinity", edited(LLAMA, rope_theta=float("inf")), "field 'rope_theta' = Infinity"),
    ("softcap-NaN", edited(GEMMA2, final_logit_softcapping=float("nan")), "field 'final_logit_softcapping' = NaN"),
    ("rope-factor-NaN", edited(LLAMA, rope_scaling={**real(LLAMA)["rope_scaling"], "factor": float("nan")}),
     "field 'rope_scaling.factor' = NaN"),
    ("overflow-to-Infinity", json.dumps(real(LLAMA))[:-1].encode() + b', "initializer_range": 1e400}',
     "field 'initializer_range' = Infinity"),
    ("query_pre_attn_scalar-float", edited(GEMMA2, query_pre_attn_scalar=256.5), "field 'query_pre_attn_scalar'"),
    ("tie_word_embeddings-int", edited(LLAMA, tie_word_embeddings=1), "field 'tie_word_embeddings'"),
    ("rope_local_base_freq-str", edited(GEMMA3, rope_local_base_freq="abc"), "field 'rope_local_base_freq'"),
    ("rope-per-layer-type-not-object", edited(GEMMA3, rope_parameters={"full_attention": [1]}),
     "field 'rope_parameters.full_attention'"),
    ("torch_dtype-unknown", edited(LLAMA, torch_dtype="abc"), "field 'torch_dtype'"),
    ("attention_dropout-above-1", edited(LLAMA, attention_dropout=2.0), "field 'attention_dropout'"),
    ("id2label-non-integer-key", edited(LLAMA, id2label={"x": "y"}), "field 'id2label'"),
    ("num_labels-huge", edited(LLAMA, num_labels=10**9), "field 'num_labels'"),
    ("architectures-not-list", edited(LLAMA, architectures="LlamaForCausalLM"), "field 'architectures'"),
    ("nesting-200k", b'{"model_type": "llama", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested"),
    ("not-utf8", b'{"model_type": "llama\xff"}', "not UTF-8"),
    ("integer-5000-digits", b'{"model_type": "llama", "vocab_size": 1' + b"0" * 5000 + b"}", "too many digits"),
    ("too-large", b'{"model_type": "llama"}' + b" " * MAX_FILE_BYTES, "more than"),
    ("mixtral-no-experts", edited(MIXTRAL, num_local_experts=0),
     "field 'num_local_experts' = 0: must be at least num_experts_per_tok (2)"),
    ("olmoe-no-experts", edited(OLMOE, num_experts=0), "field 'num_experts' = 0: must be at least num_experts_per_tok"),
    ("top-k-0", edited(QWEN3_MOE, num_experts_per_tok=0), "field 'num_experts_per_tok' = 0: must be at least 1"),
    ("top-k-above-experts", edited(MIXTRAL, num_experts_per_tok=9),
     "field 'num_experts_per_tok' = 9: exceeds the number of experts (num_local_experts = 8)"),
]


def special_file(kind: str, directory):
    """A path that is no regular file: the file a config reader must not open, block on or read to the end."""
    path = directory / "config.json"
    if kind == "fifo":
        os.mkfifo(path)  # nobody ever writes: a reader that opens it for reading blocks forever
    elif kind == "dev-zero-symlink":
        path.symlink_to("/dev/zero")  # endless: a reader that reads to the end runs out of memory
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink-loop":
        path.symlink_to(path)
    return path


SPECIAL = [("fifo", "a FIFO"), ("dev-zero-symlink", "resolves to /dev/zero"), ("directory", "a directory"),
           ("symlink-loop", "cannot read the file")]


def write_content(content, directory):
    path = directory / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=ROOT)


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, and stderr one line: `error: ` and a sentence holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


def gate(config, tmp_path) -> subprocess.CompletedProcess:
    return run_cli(["-m", "archval", "--config", str(config), "--reports", str(tmp_path / "reports")])


def emitter(config, tmp_path) -> subprocess.CompletedProcess:
    out = tmp_path / "graph.mlir"
    proc = run_cli(["-m", "archval.emitter", "--config", str(config), "--graph", "prefill", "--out", str(out)])
    assert not out.exists(), "a refused config must leave no graph"
    return proc


CLIS = {"gate": gate, "emitter": emitter}


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("case,content,fragment", BAD_CONTENT, ids=[c[0] for c in BAD_CONTENT])
def test_bad_content_is_refused_with_one_sentence(tmp_path, cli, case, content, fragment):
    path = write_content(content, tmp_path)
    assert_refused(CLIS[cli](path, tmp_path), f"error: {path}: ", fragment)


def test_zero_experts_is_taken_where_transformers_builds_a_dense_model_then():
    """Qwen2/3-MoE build an MoE block only where the expert count is above 0; Mixtral and OLMoE always do."""
    from archval.emitter.config_input import check_input
    for name in ("Qwen1.5-MoE-A2.7B", QWEN3_MOE):
        check_input(edited(name, num_experts=0), name)


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("kind,fragment", SPECIAL, ids=[s[0] for s in SPECIAL])
def test_a_path_that_is_no_regular_file_is_refused_without_reading_it(tmp_path, cli, kind, fragment):
    path = special_file(kind, tmp_path)
    assert_refused(CLIS[cli](path, tmp_path), f"error: {path}: ", fragment)


@pytest.mark.parametrize("file_name,fragment", [("..json", "no case name can be made of \".\""),
                                                ("index.json", "over the reports' index"),
                                                ("index/config.json", "over the reports' index"),
                                                ("INDEX.json", "over the reports' index")])
def test_a_config_whose_case_name_is_unusable_or_the_index_is_refused(tmp_path, file_name, fragment):
    path = tmp_path / file_name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(real(LLAMA)))
    assert_refused(gate(path, tmp_path), f"error: {path}: ", fragment)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("command,fragment", [("", "names no command"), ("   ", "names no command"),
                                              ('"unterminated', "not a command line (No closing quotation)")])
@pytest.mark.parametrize("selection", [["--family", "llama"], ["--config", str(REAL_DIR / LLAMA / "config.json")]])
def test_an_emitter_option_that_names_no_command_is_refused(tmp_path, command, fragment, selection):
    proc = run_cli(["-m", "archval", *selection, "--emitter", command, "--reports", str(tmp_path / "reports")])
    assert_refused(proc, "error: --emitter ", fragment)


# -- the mirror of transformers' config classes ----------------------------------------------------------------

def hf_config_class(model_type: str):
    """The transformers config class the oracle builds a family's config with (a stand-in's for MiMo)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from archval.oracles.hf import binding
    return CONFIG_MAPPING[binding(model_type).config({"model_type": model_type})["model_type"]]


def hf_annotations(cls) -> dict:
    import torch
    return typing.get_type_hints(cls, localns={"torch": torch})  # PreTrainedConfig annotates torch.dtype


@pytest.mark.parametrize("model_type", FAMILIES)
def test_the_mirrored_fields_are_the_config_class_fields(model_type):
    cls = hf_config_class(model_type)
    assert {f.name for f in dataclasses.fields(cls)} == set(PRETRAINED_FIELDS) | set(FAMILIES[model_type].fields)


PROBES = [None, True, False, 0, 7, -3, 1.5, 2.0, "x", "regression", [], [1, 2], ["a"], [1, "a"], [True], {},
          {"0": "a"}, {"a": 1}, {"a": "b"}, {"a": [1]}]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_mirrored_type_takes_what_transformers_type_validator_takes(model_type):
    """Every field, every kind of JSON value: the same answer as huggingface_hub's strict type check."""
    from huggingface_hub.dataclasses import type_validator
    cls = hf_config_class(model_type)
    hints = hf_annotations(cls)
    declared = {**PRETRAINED_FIELDS, **FAMILIES[model_type].fields}
    for name in (f.name for f in dataclasses.fields(cls)):
        hint = hints[name]
        for probe in PROBES:
            try:
                type_validator(name, probe, hint)
                theirs = True
            except TypeError:
                theirs = False
            assert accepts(declared[name], probe) == theirs, (name, declared[name], hint, probe)


def test_reserved_names_are_the_config_class_attributes_that_are_no_keys():
    """Every method, property and class attribute of each family's config class, except those transformers
    reads as config.json keys."""
    keys = {"model_type", "name_or_path", "output_attentions", "per_layer_config", *PRETRAINED_LEGACY_FIELDS}
    for model_type in FAMILIES:
        cls = hf_config_class(model_type)
        fields = {f.name for f in dataclasses.fields(cls)}
        attributes = {n for n in dir(cls) if not (n.startswith("__") and n.endswith("__"))} - fields
        assert attributes - keys == RESERVED_NAMES - {"cls", "self"}, model_type


def test_a_fixture_whose_config_transformers_would_refuse_is_refused_when_loaded(tmp_path):
    from archval.harness.core import fixtures
    (tmp_path / "fixture.json").write_text(json.dumps({"seed": 1, "prompt_len": 13}))
    (tmp_path / "config.json").write_text(json.dumps({**fixtures.load("llama").config, "rms_norm_eps": float("nan")}))
    refusal = r"config\.json: field 'rms_norm_eps' = NaN: not a finite number\.$"
    with pytest.raises(fixtures.FixtureError, match=refusal):
        fixtures.load_dir(tmp_path)


def test_pytest_refuses_an_emitter_option_that_names_no_command():
    proc = run_cli(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--emitter", "", "tests/test_config_input.py"])
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--emitter '': names no command" in proc.stderr


@pytest.mark.parametrize("layers,refused", [(2, True), (3, False)])
def test_a_fixture_whose_windows_leave_prompt_tokens_unreachable_is_refused(tmp_path, layers, refused):
    """Mistral's window 5 slides on every layer: through 2 layers the last of 13 prompt tokens reaches 8 back,
    so tokens 0..3 reach no compared logit (the fixture's old shape); through 3 it reaches all 12."""
    from archval.harness.core import fixtures
    (tmp_path / "fixture.json").write_text(json.dumps({"seed": 1, "prompt_len": 13}))
    mistral = fixtures.load("mistral").config
    (tmp_path / "config.json").write_text(json.dumps({**mistral, "num_hidden_layers": layers}))
    if refused:
        with pytest.raises(fixtures.FixtureError, match=r"reaches 8 tokens back, so prompt tokens 0\.\.3 reach no"):
            fixtures.load_dir(tmp_path)
    else:
        assert fixtures.load_dir(tmp_path).config["num_hidden_layers"] == 3
    # a window the family's flag switches off (Qwen2's use_sliding_window false) limits nothing
    qwen2 = fixtures.load("qwen2").config
    assert not qwen2["use_sliding_window"] and fixtures.load("qwen2").prompt_len > 2 * (qwen2["sliding_window"] - 1)
