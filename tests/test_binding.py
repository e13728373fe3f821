"""A declared binding (docs/binding.md): graphs in a serving emitter's conventions (parameter-path names,
pos/kcache/vcache, stacked experts, a fused qkv, argmax results, pre-emitted folders) PASS through a binding
file and no adapter code, and a planted binding mistake FAILs."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archval.harness import ROOT
from archval.harness.checks import published
from archval.harness.core import fixtures
from archval.harness.core.binding import IDENTITY, BindingError
from archval.harness.core.binding_file import load
from archval.harness.core.case import run_case
from archval.harness.core.graph import GraphError, parse_signature
from archval.harness.present.console import line

EMITTER = ROOT / "tests" / "emitters" / "conventions.py"
PARAMS = ROOT / "tests" / "emitters" / "params.toml"
GATE_UP = ROOT / "tests" / "emitters" / "params-gate-up.toml"  # for checkpoints with a fused gate_up_proj
CONVENTIONS = [  # (family, the emitter's conventions, its binding): each PASSes prefill and decode
    ("llama", ("--tokens",), PARAMS),  # parameter paths, pos/kcache/vcache, argmax results
    ("qwen3", (), PARAMS),  # parameter paths with per-head q/k norms, logits
    ("olmoe", ("--stack-experts", "--tokens"), PARAMS),  # [E, out, in] experts, argmax results
    ("llama", ("--fuse-qkv",), PARAMS),  # one fused [q + k + v, hidden] argument per layer
    ("glm4", ("--split-gate-up",), GATE_UP),  # row slices of the checkpoint's fused gate_up_proj
]


def emitter(*flags):
    return (sys.executable, str(EMITTER), *flags)


@pytest.mark.parametrize("family,flags,path", CONVENTIONS, ids=[f"{f}{''.join(flags)}" for f, flags, _ in CONVENTIONS])
def test_a_serving_emitters_conventions_pass_through_a_binding_file(family, flags, path):
    texts, binding = {}, load(path)
    for graph in ("prefill", "decode"):
        record = run_case(fixtures.load(family), graph, texts, emitter=emitter(*flags), binding=binding)
        assert record.verdict == "PASS", line(record)
        assert f"--binding {path}" in record.replay
        if "--tokens" in flags:  # no logits: judged token by token, and the page says what did not apply
            assert record.tokens and record.tokens.first_divergence is None and record.max_abs_diff is None
            assert set(record.skipped) == {"strict_bound", "xla"}
            assert "token" in (record.abi.logits, record.abi.decode)
        else:
            assert record.noise and record.xla and record.xla.verdict == "all agree", line(record)


def test_without_the_binding_the_same_graphs_cannot_be_bound():
    record = run_case(fixtures.load("llama"), "prefill", emitter=emitter(), binding=IDENTITY)
    assert record.verdict == "ERROR", record.message
    assert "no argument named 'tokens' (its integer arguments: ids, pos, n)" in record.message, record.message


def planted(tmp_path: Path, old: str, new: str, binding: Path = PARAMS) -> Path:
    text = binding.read_text()
    assert old in text
    path = tmp_path / "planted.toml"
    path.write_text(text.replace(old, new))
    return path


def test_two_layers_swapped_in_the_map_fail(tmp_path):
    """Layer 0's and layer 1's query projections swapped: the graph computes another model, and FAILs by far."""
    swapped = planted(tmp_path, """"params['layers'][{i}]['wq']" = "model.layers.{i}.self_attn.q_proj.weight"\n""",
                      """"params['layers'][0]['wq']" = "model.layers.1.self_attn.q_proj.weight"\n"""
                      """"params['layers'][1]['wq']" = "model.layers.0.self_attn.q_proj.weight"\n""")
    record = run_case(fixtures.load("llama"), "prefill", emitter=emitter(), binding=load(swapped))
    assert record.verdict == "FAIL", line(record)
    assert record.max_abs_diff > 30 * record.bound, line(record)  # measured 2.1e+00: 210x the bound


def test_a_fused_tensor_joined_in_the_wrong_order_fails(tmp_path):
    """k and v joined in the wrong order (the same shape under GQA): caught by the logits, not by a shape."""
    wrong = planted(tmp_path, '"model.layers.{i}.self_attn.k_proj.weight", "model.layers.{i}.self_attn.v_proj.weight"',
                    '"model.layers.{i}.self_attn.v_proj.weight", "model.layers.{i}.self_attn.k_proj.weight"')
    record = run_case(fixtures.load("llama"), "prefill", emitter=emitter("--fuse-qkv"), binding=load(wrong))
    assert record.verdict == "FAIL", line(record)
    assert record.max_abs_diff > 30 * record.bound, line(record)


def test_a_slice_off_by_one_head_fails(tmp_path):
    """w_up's rows of the fused gate_up_proj taken 16 rows (a head's width) early: the same shape, the wrong rows."""
    wrong = planted(tmp_path, 'rows = ["intermediate", "2 * intermediate"]',
                    'rows = ["intermediate - 16", "2 * intermediate - 16"]', GATE_UP)
    record = run_case(fixtures.load("glm4"), "prefill", emitter=emitter("--split-gate-up"), binding=load(wrong))
    assert record.verdict == "FAIL", line(record)
    assert record.max_abs_diff > 30 * record.bound, line(record)


def test_an_expert_stack_off_by_one_fails_tokens_or_binding(tmp_path):
    """The experts stacked from 1 instead of 0 leave one expert out: a shape the binding refuses by name."""
    wrong = planted(tmp_path, "mlp.experts.{e}.gate_proj", "mlp.experts.{n}.gate_proj")
    with pytest.raises(BindingError, match="has no {e} to count over"):
        load(wrong)


SIGNATURE = """module {
  func.func @main(%a: tensor<6x4xf32> loc("w.fused"), %b: tensor<2x4xf32> loc("w.k"), %t: tensor<3xi32> loc("ids"))
      -> tensor<3xi32> { return %t : tensor<3xi32> }
}"""


def binding_of(tmp_path, text: str):
    path = tmp_path / "b.toml"
    path.write_text("version = 1\n" + text)
    return load(path)


def weights_for(binding, checkpoint):
    main = binding.protocol_names(parse_signature(SIGNATURE), "prefill").functions["main"]
    sizes = {"num_attention_heads": 2, "hidden_size": 4, "head_dim": 2, "num_key_value_heads": 1}
    return main, binding.graph_weights(main, checkpoint, lambda name: sizes[name])


def test_slices_concatenations_and_aliases(tmp_path):
    checkpoint = {"qkv": np.arange(32, dtype=np.float32).reshape(8, 4), "k": np.ones((2, 4), np.float32)}
    b = binding_of(tmp_path, '[inputs]\nids = "tokens"\n[weights]\n'
                             '"w.fused" = { tensor = "qkv", rows = ["heads * head_dim - 2", "8"] }\n'
                             '"w.k" = { concat = ["k", "k"], axis = 1, cols = [2, 6] }\n')
    main, (values, read) = weights_for(b, checkpoint)
    assert [a.name for a in main.args] == ["w.fused", "w.k", "tokens"]
    np.testing.assert_array_equal(values["w.fused"], checkpoint["qkv"][2:8])
    assert values["w.k"].shape == (2, 4) and read == {"w.fused": ["qkv"], "w.k": ["k", "k"]}


@pytest.mark.parametrize("entry,message", [
    ('"w.fused" = "nope"', "the checkpoint has no tensor 'nope'"),
    ('"w.fused" = { tensor = "qkv", rows = [0, 9] }', r"rows \[0, 9\) lie outside qkv \[8, 4\]"),
    ('"w.fused" = { tensor = "qkv", rows = ["0", "heads * experts"] }', r"'experts' in 'heads \* experts' is no size"),
    ('"w.fused" = { tensor = "qkv", transpose = true, rows = [0, 2], cols = [0, 2] }', None),
    ('"w.fu{i}" = "qkv"\n"w.fused" = "qkv"', None),
])
def test_binding_mistakes_name_the_entry_the_argument_and_the_tensor(tmp_path, entry, message):
    b = binding_of(tmp_path, "[weights]\n" + entry + "\n")
    if message is None:  # valid, and w.k is left to its own name, which the checkpoint lacks: bind() says so
        main, (values, read) = weights_for(b, {"qkv": np.zeros((8, 4), np.float32)})
        assert "w.k" not in values and read["w.fused"] == ["qkv"]
        return
    with pytest.raises(GraphError, match=message):
        weights_for(b, {"qkv": np.zeros((8, 4), np.float32)})


def test_an_argument_two_patterns_match_is_refused(tmp_path):
    b = binding_of(tmp_path, '[weights]\n"w.{i}" = "qkv"\n"w.0" = "qkv"\n')
    main = parse_signature(SIGNATURE.replace("w.fused", "w.0")).functions["main"]
    with pytest.raises(GraphError, match="matches 2 \\[weights\\] patterns"):
        b.graph_weights(main, {"qkv": np.zeros((8, 4), np.float32)}, lambda name: 2)


@pytest.mark.parametrize("text,message", [
    ("version = 2\n", "field 'version' = 2"),
    ("version = 1\n[weights]\n'a' = 3\n", "must be a tensor name or a table"),
    ("version = 1\n[weights]\n'a' = { tensor = 'x', stack = 'y{e}' }\n", "exactly one of tensor, stack, concat"),
    ("version = 1\n[weights]\n'a' = { tensor = 'x', rows = [0] }\n", "must be \\[start, stop\\]"),
    ("version = 1\n[weights]\n'a' = { tensor = 'x', rows = [0, '__import__(1)'] }\n", "not integer arithmetic"),
    ("version = 1\n[outputs]\n", "unknown table 'outputs'"),
    ("version = 1\n[inputs]\npos = 3\n", "must be a string"),
    ("not toml [", "not TOML"),
])
def test_a_bad_binding_file_is_refused_in_one_sentence(tmp_path, text, message):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(BindingError, match=message):
        load(path)


def test_graph_folders_validate_through_the_gate_and_replay(tmp_path):
    """--graphs: a folder per family of pre-emitted files, no emitter run, the replay line reproduces."""
    folder = tmp_path / "graphs" / "tiny-llama"
    folder.mkdir(parents=True)
    (folder / "config.json").write_bytes((fixtures.FIXTURES_DIR / "llama" / "config.json").read_bytes())
    for graph in ("prefill", "decode"):
        subprocess.run([*emitter("--tokens"), "--config", str(folder / "config.json"), "--graph", graph,
                        "--out", str(folder / f"{graph}.mlir")], check=True)
    command = [str(ROOT / "validate_arch.sh"), "--graphs", str(tmp_path / "graphs"), "--binding", str(PARAMS),
               "--reports", str(tmp_path / "reports")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "2 passed, 0 failed, 0 errors, 0 unsupported" in run.stdout, run.stdout + run.stderr
    page = (tmp_path / "reports" / "tiny-llama.html").read_text()
    assert "logits were not available" in page and "none: pre-emitted graph files (--graphs)" in page
    replay = subprocess.run([*command, "--graph", "decode"], capture_output=True, text=True, timeout=600)
    assert "1 passed, 0 failed" in replay.stdout and "emitter" not in replay.stdout.split("==")[0], replay.stdout


def test_graph_folders_validate_under_pytest_and_the_replay_selects_the_case(tmp_path):
    folder = tmp_path / "graphs" / "tiny-llama"
    folder.mkdir(parents=True)
    (folder / "config.json").write_bytes((fixtures.FIXTURES_DIR / "llama" / "config.json").read_bytes())
    subprocess.run([*emitter("--tokens"), "--config", str(folder / "config.json"), "--graph", "prefill",
                    "--out", str(folder / "prefill.mlir")], check=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--archval-graphs",
               str(tmp_path / "graphs"), "--archval-binding", str(PARAMS), str(ROOT / "harness" / "pytest_graphs.py"),
               "--archval-reports", str(tmp_path / "reports")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    # skipped: decode and moe_block (no file), decode_batched and decode_paged (on request)
    assert run.returncode == 0 and "1 passed, 7 skipped" in run.stdout, run.stdout[-3000:]
    assert "holds no decode.mlir" in run.stdout  # a kind without its file: skipped as UNSUPPORTED, in words
    record = __import__("json").loads((tmp_path / "reports" / "summary.json").read_text())["records"][0]
    assert record["replay"].endswith(f"--archval-binding {PARAMS} -k tiny-llama-prefill"), record["replay"]


def test_a_config_as_given_reaches_the_emitter_byte_for_byte(tmp_path):
    source = tmp_path / "config.json"
    source.write_bytes(b'{"model_type": "llama",  "vocab_size": 96, "hidden_size": 64, "intermediate_size": 128,\n'
                       b' "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}\n')
    prepared = published.prepare(str(source), tmp_path / "work", "given", as_is=True)
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()
    assert digest(prepared.fixture.config_path) == digest(source)


def as_given(tmp_path, family: str, **changes):
    """A fixture's config with changes (None: the field dropped), prepared as --as-is takes it."""
    config = __import__("json").loads((fixtures.FIXTURES_DIR / family / "config.json").read_text())
    config.update({k: v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        del config[k]
    path = tmp_path / family / "config.json"
    path.parent.mkdir()
    path.write_text(__import__("json").dumps(config, indent=1))
    return published.prepare(str(path), tmp_path / "work", family, as_is=True)


@pytest.mark.parametrize("family,changes,note", [
    ("internlm3", {"max_position_embeddings": None}, None),  # its class's default, 32768, as transformers takes it
    ("mimo", {"sliding_window": 32768}, "sliding_window 32768: the prompt (13 tokens) and 16 decode steps never"),
])
def test_configs_as_given_validate_and_say_what_they_do_not_exercise(tmp_path, family, changes, note):
    prepared = as_given(tmp_path, family, **changes)
    assert prepared.error is None
    assert [n[: len(note)] for n in prepared.fixture.not_exercised] == ([note] if note else [])
    texts = {}
    for graph in ("prefill", "decode"):
        record = run_case(prepared.fixture, graph, texts)
        assert record.verdict == "PASS", line(record)
        assert record.fixture.not_exercised == list(prepared.fixture.not_exercised)


def test_a_config_with_fields_the_oracle_never_reads_is_never_a_pass_nor_an_emitter_bug(tmp_path):
    """MiniCPM's fields on a llama config: the graph implements scale_emb, Llama's oracle reads none of them."""
    prepared = as_given(tmp_path, "llama", scale_emb=12, scale_depth=1.4, dim_model_base=256)
    assert "the oracle never reads: dim_model_base, scale_depth, scale_emb" in published.format_summary(prepared)
    for flags in (("--scale-emb",), ()):  # a graph that implements them, and one that does not
        record = run_case(prepared.fixture, "prefill", emitter=emitter(*flags), binding=load(PARAMS))
        assert record.verdict == "ERROR" and record.xla is None, line(record)
        assert record.message.startswith("the oracle (LlamaForCausalLM) never reads the config's dim_model_base, "
                                         "scale_depth, scale_emb"), record.message
        assert "emitter bug" not in line(record)


def test_the_binding_files_shipped_agree_with_the_published_schema():
    import json
    import tomllib

    import jsonschema
    schema = json.loads((ROOT / "docs" / "binding.schema.json").read_text())
    shipped = sorted(ROOT.glob("tests/emitters/*.toml")) + sorted(ROOT.glob("examples/**/*.toml"))
    assert len(shipped) >= 2
    for path in shipped:
        jsonschema.validate(tomllib.loads(path.read_text()), schema)
        load(path)
    with pytest.raises(jsonschema.ValidationError):  # what the loader refuses, the schema refuses too
        jsonschema.validate({"version": 1, "weights": {"a": {"tensor": "x", "stack": "y{e}"}}}, schema)


@pytest.mark.parametrize("name,changes,named", [
    ("starcoder2-3b", {"mlp_type": "gated", "norm_type": "rms_norm"}, ["mlp_type", "norm_type"]),
    ("c4ai-command-r7b-12-2024", {"order_of_interleaved_layers": "global_attn_first", "position_embedding_type": "rope",
                                  "rotary_pct": 0.5, "tie_word_embeddings": False},
     ["order_of_interleaved_layers", "position_embedding_type", "rotary_pct", "use_embedding_sharing"]),
    ("gpt-oss-20b", {"experts_per_token": 2, "initial_context_length": 8192}, ["experts_per_token",
                                                                              "initial_context_length"]),
    ("DeepSeek-V3", {"scoring_func": "softmax", "topk_method": "greedy", "moe_layer_freq": 2, "aux_loss_alpha": 0.1},
     ["moe_layer_freq", "scoring_func", "topk_method"]),
])
def test_training_switches_are_inert_only_at_the_value_the_class_implements(name, changes, named):
    """oracles/fields.py's INERT_FOR: the published values are what the class always does (nothing named); any
    other value is a model the class cannot compute, and is named."""
    import json
    from archval.oracles.fields import unread
    from archval.oracles.hf import binding
    raw = json.loads((ROOT / "fixtures" / "real" / name / "config.json").read_text())
    b = binding(raw["model_type"])
    assert unread(raw, b.class_name, b.config(raw)) == []
    changed = {**raw, **changes}
    assert unread(changed, b.class_name, b.config(changed)) == named
