"""--checkpoint DIR on checkpoints built here in the format Hugging Face publishes (save_pretrained of a seeded
model: sharded, bf16/f16/f32 storage, tied and untied heads, Mixtral's per-expert tensors), the whole path:
prefill and 32 decode steps token-exact; a wrong binding FAILs; what cannot be validated is refused with one
sentence (exit 2). And --config --as-is, which validates a config at its own dimensions."""
import json
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from archval.harness import ROOT
from archval.harness.checks.structural import REAL_DIR
from archval.harness.cli import main
from archval.harness.core import checkpoint_files as ckpt
from archval.harness.core import fixtures
from archval.harness.core.checkpoint_tensors import ALIGNMENT, GraphTensors, NarrowStorageError
from archval.harness.modes.make_checkpoint import build

PROMPT = "3,1,4,1,5,9,2,6"
# family -> (storage, max shard size, tokenizer): between them every storage dtype, sharded and single files,
# tied (gemma2) and untied heads, per-expert tensors (mixtral)
BUILDS = {"llama": ("bf16", "40KB", True), "gemma2": ("f16", None, False), "qwen3": ("f32", "60KB", False),
          "mixtral": ("bf16", "100KB", False)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {family: build(dict(fixtures.load(family).config), root / family, dtype, shard, tokenizer=tok)
            for family, (dtype, shard, tok) in BUILDS.items()}


def validate(tmp_path, capsys, *argv):
    """(exit status, stdout, stderr, the records of summary.json)."""
    code = main([*map(str, argv), "--reports", str(tmp_path / "reports")])
    out, err = capsys.readouterr()
    summary = tmp_path / "reports" / "summary.json"
    records = json.loads(summary.read_text())["records"] if code != 2 and summary.is_file() else []
    return code, out, err, records


@pytest.mark.parametrize("family", list(BUILDS))
def test_a_checkpoint_passes_prefill_and_32_decode_steps_token_exact(family, checkpoints, tmp_path, capsys):
    code, out, err, (record,) = validate(tmp_path, capsys, "--checkpoint", checkpoints[family], "--prompt-ids", PROMPT)
    assert code == 0, out + err
    assert record["verdict"] == "PASS" and record["graph"] == "decode"
    assert record["decode"]["steps"] == 32 and record["decode"]["first_divergence"] is None
    assert {c["name"] for c in record["checks"]} == {"finite", "bound", "greedy tokens", "strict bound",
                                                       "every weight taken"}
    facts = record["checkpoint"]
    assert facts["storage"] == BUILDS[family][0] and facts["files"] == (1 if BUILDS[family][1] is None else
                                                                        len(list(checkpoints[family].glob("*.safetensors"))))
    assert "estimated peak" in out and "--prompt-ids 3,1,4,1,5,9,2,6 --steps 32" in record["replay"]


def test_a_text_prompt_goes_through_the_checkpoints_tokenizer_and_both_continuations_are_shown(
        checkpoints, tmp_path, capsys):
    code, _, _, (record,) = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt", "w3 w1 w4",
                                       "--steps", "8")
    assert code == 0
    facts = record["checkpoint"]
    assert record["fixture"]["prompt"] == [3, 1, 4] and facts["prompt_text"] == "w3 w1 w4"
    assert facts["oracle_text"] == facts["graph_text"] and len(facts["oracle_text"].split()) == 9
    page = (tmp_path / "reports" / "llama.html").read_text()
    assert "oracle&#39;s continuation" in page or "oracle's continuation" in page
    assert facts["oracle_text"] in page


def test_an_external_emitter_gets_the_checkpoints_config_and_the_sizes(checkpoints, tmp_path, capsys):
    wraps = f"{sys.executable} -m archval.altered_emitter"
    code, _, _, (record,) = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt-ids", PROMPT,
                                     "--emitter", wraps)
    assert code == 0 and record["verdict"] == "PASS"
    code, _, _, (record,) = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt-ids", PROMPT,
                                     "--emitter", wraps + " --alter")
    assert code == 1 and record["verdict"] == "FAIL"


def test_a_wrong_binding_fails(checkpoints, tmp_path, capsys, monkeypatch):
    """The graph's tensors read from a copy in which layer 0's gate and up projections (same shape) are
    swapped, the oracle's from the original: what an emitter or loader binding one in the other's place does."""
    swapped = tmp_path / "swapped"
    shutil.copytree(checkpoints["llama"], swapped)
    original = ckpt.read(swapped)
    gate, up = "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"
    stored = {name: original.tensors[name] for name in (gate, up)}
    raw = {}
    for name, t in stored.items():
        with open(t.file, "rb") as f:
            f.seek(t.start)
            raw[name] = f.read(t.end - t.start)
    for name, other in ((gate, up), (up, gate)):  # each tensor's bytes written where the other's were
        with open(stored[name].file, "r+b") as f:
            f.seek(stored[name].start)
            f.write(raw[other])
    before, after = ckpt.read(checkpoints["llama"]), ckpt.read(swapped)
    assert np.array_equal(after.f32(gate), before.f32(up)) and not np.array_equal(after.f32(gate), before.f32(gate))
    real_init = ckpt.GraphTensors.__init__
    monkeypatch.setattr(ckpt.GraphTensors, "__init__", lambda self, _: real_init(self, ckpt.read(swapped)))
    code, _, _, (record,) = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt-ids", PROMPT)
    assert code == 1 and record["verdict"] == "FAIL"
    assert "exceeds the bound" in record["message"]


def _safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    header, offset = {}, 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(t[2] for t in tensors.values()))


def _broken(checkpoints, tmp_path, how: str) -> Path:
    """A copy of the single-file gemma2 checkpoint, broken one way."""
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints["gemma2"], broken)
    weights = broken / "model.safetensors"
    good = ckpt.read(broken)
    if how == "missing shard":
        shutil.copytree(checkpoints["llama"], broken, dirs_exist_ok=True)
        weights.unlink()
        next(broken.glob("model-00002-*.safetensors")).unlink()
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif how in ("int8", "shape"):
        tensors = {}
        for name, t in good.tensors.items():
            raw = good.f32(name).astype(np.float16)
            if name == "model.layers.1.mlp.up_proj.weight":
                tensors[name] = ("I8", t.shape, raw.astype(np.int8).tobytes()) if how == "int8" else (
                    "F16", (t.shape[0] - 1, t.shape[1]), raw[1:].tobytes())
            else:
                tensors[name] = ("F16", t.shape, raw.tobytes())
        _safetensors(weights, tensors)
    elif how == "no config":
        (broken / "config.json").unlink()
    return broken


@pytest.mark.parametrize("how, says", [
    ("missing shard", r"model-00002-of-\d+\.safetensors: missing, but model\.safetensors\.index\.json puts '.+' there"),
    ("truncated", r"model\.safetensors: truncated: tensor '.+' ends at byte \d+ of a \d+-byte file"),
    ("int8", (r"model\.safetensors: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is stored as I8, which the "
              r"graph's f32 arguments cannot take")),
    ("shape", (r"model\.safetensors: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is \[127, 64\] but "
               r".+config\.json implies \[128, 64\]")),
    ("no config", r"config\.json: missing; a checkpoint directory holds config\.json beside its safetensors"),
])
def test_a_checkpoint_that_cannot_be_validated_is_refused_with_one_sentence(how, says, checkpoints, tmp_path,
                                                                             capsys):
    code, out, err, _ = validate(tmp_path, capsys, "--checkpoint", _broken(checkpoints, tmp_path, how),
                                 "--prompt-ids", PROMPT)
    assert code == 2 and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert re.search(says, err), err


@pytest.mark.parametrize("argv, says", [
    (["--prompt-ids", "1,2,999"], "token 999 is outside the vocabulary [0, 96)"),
    ([], "--checkpoint needs a prompt"),
    (["--prompt", "w1 w2"], "holds no tokenizer"),
    (["--prompt-ids", PROMPT, "--steps", "0"], "--steps 0: must be at least 1"),
])
def test_a_prompt_that_cannot_run_is_refused(argv, says, checkpoints, tmp_path, capsys):
    code, _, err, _ = validate(tmp_path, capsys, "--checkpoint", checkpoints["gemma2"], *argv)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_larger_than_the_memory_available_is_refused_with_the_estimate(checkpoints, tmp_path, capsys,
                                                                                    monkeypatch):
    monkeypatch.setattr(ckpt, "available_memory", lambda: 1 << 30)
    code, out, err, _ = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt-ids", PROMPT)
    assert code == 2 and "memory: estimated peak 1." in out
    assert "the run needs an estimated 1.5 GiB but 1.0 GiB is available" in err


def test_the_memory_estimate_is_the_larger_phase_never_both(checkpoints):
    checkpoint = ckpt.read(checkpoints["llama"])
    params = checkpoint.parameters()
    strict, fixed = ckpt.MemoryEstimate.of(checkpoint, True), ckpt.MemoryEstimate.of(checkpoint, False)
    size = lambda names: sum(int(np.prod(checkpoint.tensors[n].shape)) for n in names)
    layer = lambda i: [n for n in checkpoint.tensors if n.startswith(f"model.layers.{i}.")]
    outside = [n for n in checkpoint.tensors if not n.startswith("model.layers.")]
    # the f64 pass holds the f32 model, what lies outside the layers in f64, and one layer in f64
    widened = size(outside) + max(size(layer(i)) for i in range(checkpoint.config["num_hidden_layers"]))
    assert 0 < widened < params and strict.oracle == max(4 * (params + widened), 6 * params)
    assert fixed.oracle == 4 * params + 2 * params and fixed.mapped == 2 * params  # bf16 files mapped to load
    assert strict.graph == 4 * params and strict.peak == ckpt.RUNTIME_BYTES + strict.oracle
    assert strict.needed == ckpt.RUNTIME_BYTES + max(strict.oracle - 2 * params, 4 * params) and strict.held == "f32"
    # where the f32 model would not fit, the layers are held as stored: 2 bytes a parameter
    held = ckpt.MemoryEstimate.of(checkpoint, True, 2 * params, available=strict.needed - 1)
    assert held.held == "bf16" and held.oracle == max(4 * params, 2 * params + 6 * widened) and held.graph == 2 * params
    assert ckpt.MemoryEstimate.of(checkpoint, True, available=strict.needed).held == "f32"


def test_bf16_and_f16_storage_is_upcast_exactly(checkpoints):
    import torch
    from safetensors import safe_open
    for family in ("llama", "gemma2"):
        checkpoint = ckpt.read(checkpoints[family])
        name = "model.layers.0.self_attn.q_proj.weight"
        with safe_open(checkpoint.tensors[name].file, "pt") as f:
            expected = f.get_tensor(name).to(torch.float32).numpy()
        value = checkpoint.f32(name)
        assert np.array_equal(value, expected) and value.ctypes.data % ALIGNMENT == 0
        # a narrow argument of the storage's type takes the stored bits themselves, aligned as well
        dtype = {"llama": "bf16", "gemma2": "f16"}[family]
        narrow = GraphTensors(checkpoint).narrow(name, dtype)
        widened = (narrow.astype(np.uint32) << 16).view(np.float32) if dtype == "bf16" else narrow.astype(np.float32)
        assert np.array_equal(widened, expected) and narrow.ctypes.data % ALIGNMENT == 0
        with pytest.raises(NarrowStorageError, match=f"stores it as {dtype.upper()}"):
            GraphTensors(checkpoint).narrow(name, "f16" if dtype == "bf16" else "bf16")


def test_as_is_validates_a_config_at_its_own_dimensions(tmp_path, capsys):
    """The seed's own fixture dimensions (hidden 16, 4 heads of dim 4, 2 KV heads, 4 layers, vocab 64), which
    --config alone shrinks to hidden 64, head_dim 16 and 2 layers."""
    code, out, _, records = validate(tmp_path, capsys, "--config", ROOT / "tests/configs/team-fixture/config.json",
                                        "--as-is")
    assert code == 0 and [r["verdict"] for r in records] == ["PASS", "PASS"]
    assert "as given: vocab 64, hidden 16, intermediate 32, layers 4, heads 4, kv heads 2, head_dim 4" in out
    assert all(r["published"]["shrunk"] == {} and "--as-is --graph" in r["replay"] for r in records)


def test_as_is_refuses_a_config_too_large_with_its_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ckpt, "available_memory", lambda: 8 << 30)
    code, _, err, _ = validate(tmp_path, capsys, "--config", REAL_DIR / "Llama-3.2-1B" / "config.json",
                               "--as-is")
    assert code == 2 and re.search(r"as given it has 1,2\d\d,\d{3},\d{3} parameters, an estimated 2\d\.\d GiB", err)
    assert "leave out --as-is to validate it shrunk" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,says", [
    (["--config", "no-such/config.json"], "error: --config no-such/config.json: cannot be read as JSON (No such file "
                                          "or directory)"),
    (["--family", "llama", "--set", "hidden_size"], "error: --set hidden_size: not KEY=JSON"),
    (["--family", "llama", "--set", "model_type=llama"], "error: --set model_type=llama: not KEY=JSON"),
    (["--family", "llama", "--set", "hidden_size=-3"], "error: transformers cannot build this config: "),
    (["--family", "llama", "--out", "/proc/no-such/ckpt"], "error: --out /proc/no-such/ckpt: cannot be written"),
])
def test_make_checkpoint_refuses_bad_input_with_one_sentence(argv, says, tmp_path, capsys, monkeypatch):
    """archval make-checkpoint, the docs' way to a checkpoint (installed too): exit 2, one line, no traceback."""
    monkeypatch.chdir(tmp_path)
    assert main(["make-checkpoint", *(argv if "--out" in argv else [*argv, "--out", "ckpt"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1, err


def fp64_softmax(monkeypatch):
    """transformers' eager attention takes its softmax in f32 whatever the model's dtype (softmax(...,
    dtype=torch.float32)); this makes an f64 model's softmax f64, so that two ways of computing the same
    logits can be compared to f64's rounding."""
    import torch
    softmax = torch.nn.functional.softmax
    monkeypatch.setattr(torch.nn.functional, "softmax", lambda x, dim=None, _stacklevel=3, dtype=None: softmax(
        x, dim=dim, dtype=x.dtype if x.dtype == torch.float64 else dtype))


@pytest.mark.parametrize("family", list(BUILDS))
def test_the_fp64_bound_in_one_pass_is_the_step_by_step_one(family, checkpoints, monkeypatch):
    """The strict bound's fp64 logits for a checkpoint come from one forward over the prompt and the fp32
    oracle's tokens. In f64 throughout they are the step-by-step ones through the cache (sliding windows:
    gemma2; experts: mixtral) to f64's rounding: the same positions, masks and windows. As the oracle runs
    them (transformers' f32 softmax) the two differ by that softmax's rounding only (2e-6 to 2e-5 here, as
    much as the f32 softmax moves them from f64's)."""
    import torch

    from archval.oracles.hf import Oracle
    checkpoint = ckpt.read(checkpoints[family])
    oracle = Oracle.from_checkpoint(checkpoint.directory, checkpoint.config)
    prompt = np.array([int(t) for t in PROMPT.split(",")])
    positions, steps = np.arange(len(prompt)), np.arange(len(prompt), len(prompt) + 32)
    _, tokens = oracle.greedy(prompt, positions, steps)
    oracle.model.to(torch.float64)
    both = lambda: (oracle.teacher_forced(prompt, positions, steps, tokens),
                    oracle.sequence_logits(prompt, positions, steps, tokens))
    step_by_step, one_pass = both()
    assert one_pass.dtype == np.float64 and one_pass.shape == step_by_step.shape == (33, checkpoint.config["vocab_size"])
    fp64_softmax(monkeypatch)
    exact_steps, exact_pass = both()
    assert np.abs(exact_pass - exact_steps).max() <= 1e-12 * np.abs(exact_steps).max()
    # as the oracle runs: apart by no more than the f32 softmax's own rounding moves the logits (measured here)
    assert np.abs(one_pass - step_by_step).max() <= 3 * np.abs(step_by_step - exact_steps).max()
    with pytest.raises(ValueError, match="slots"):  # a fixture's decode positions past the slots: step by step only
        oracle.sequence_logits(prompt, positions, steps + 3, tokens)


@pytest.mark.parametrize("family", list(BUILDS))
def test_the_fp64_oracle_one_layer_at_a_time_is_the_whole_model_in_fp64(family, checkpoints):
    """Oracle.to_float64 holds one decoder layer in f64 at a time (the oracle's peak is then the f32 model, not
    twice it); its logits are those of the model converted whole, bit for bit (tied heads: gemma2; experts:
    mixtral), and the layers are back in f32 between forwards."""
    import torch

    from archval.oracles.hf import Oracle
    checkpoint = ckpt.read(checkpoints[family])
    prompt = np.array([int(t) for t in PROMPT.split(",")])
    positions, steps = np.arange(len(prompt)), np.arange(len(prompt), len(prompt) + 8)
    tokens = np.arange(1, 9) % checkpoint.config["vocab_size"]
    by_layer, whole = (Oracle.from_checkpoint(checkpoint.directory, checkpoint.config) for _ in range(2))
    by_layer.to_float64()
    whole.model.to(torch.float64)
    logits = [o.sequence_logits(prompt, positions, steps, tokens) for o in (by_layer, whole)]
    assert logits[0].dtype == np.float64 and np.array_equal(*logits)
    assert {p.dtype for p in by_layer.model.base_model.layers.parameters()} == {torch.float32}


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="Linux's /proc/meminfo")
def test_the_memory_available_counts_the_page_cache_the_kernel_can_reclaim(monkeypatch):
    """Without psutil, Linux's MemAvailable, not the free pages: a checkpoint just written sits in the page
    cache, and leaving it out refused a 3B run that had 21 GiB available as if it had 12."""
    monkeypatch.setitem(sys.modules, "psutil", None)  # importing it raises ImportError
    said = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemAvailable:"))
    assert abs(ckpt.available_memory() - said) < 256 << 20


@pytest.mark.parametrize("family,dtype", [("llama", "bf16"), ("gemma2", "f16"), ("mixtral", "bf16")])
def test_a_checkpoint_built_in_its_storage_dtype_holds_the_bytes_of_the_f32_model_converted(family, dtype, tmp_path):
    """make-checkpoint builds the model in the storage dtype (2 bytes a parameter for bf16: a 7B one fits);
    every tensor, per expert too (mixtral), is the f32 model's converted then saved, byte for byte."""
    import torch
    from safetensors.torch import load_file

    from archval.oracles.hf import Oracle
    config = fixtures.load(family).config
    built = load_file(build(config, tmp_path / "built", dtype) / "model.safetensors")
    Oracle(config, 1).model.to({"bf16": torch.bfloat16, "f16": torch.float16}[dtype]).save_pretrained(tmp_path / "f32")
    converted = load_file(tmp_path / "f32" / "model.safetensors")
    assert built.keys() == converted.keys() and len(built) > 3
    assert all(t.dtype == converted[n].dtype and torch.equal(t, converted[n]) for n, t in built.items())


@pytest.mark.parametrize("family", [f for f, (dtype, *_) in BUILDS.items() if dtype != "f32"])
def test_an_oracle_held_in_the_storage_dtype_computes_what_the_f32_model_does(family, checkpoints):
    """Where the f32 model would not fit, the oracle holds the checkpoint's layers as stored (bf16, f16: 2 bytes a
    parameter) and widens one at a time: its greedy run and its f64 logits are the f32 model's, bit for bit."""
    import torch

    from archval.oracles.hf import Oracle
    checkpoint = ckpt.read(checkpoints[family])
    stored = BUILDS[family][0]
    prompt = np.array([int(t) for t in PROMPT.split(",")])
    positions, steps = np.arange(len(prompt)), np.arange(len(prompt), len(prompt) + 8)
    runs = []
    for held in ("f32", stored):
        oracle = Oracle.from_checkpoint(checkpoint.directory, checkpoint.config, held)
        logits, tokens = oracle.greedy(prompt, positions, steps)
        assert {p.dtype for p in oracle.model.base_model.layers.parameters()} == {
            {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[held]}
        oracle.to_float64()
        runs.append((logits, tokens, oracle.sequence_logits(prompt, positions, steps, tokens)))
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_a_checkpoint_whose_f32_model_would_not_fit_is_validated_with_its_layers_held_as_stored(
        checkpoints, tmp_path, capsys, monkeypatch):
    """One byte short of what the f32 oracle needs, the bf16 checkpoint's layers are held in bf16 and the case
    still PASSes on the same logits; the estimate says which."""
    checkpoint = ckpt.read(checkpoints["llama"])
    monkeypatch.setattr(ckpt, "available_memory", lambda: ckpt.MemoryEstimate.of(checkpoint, True).needed - 1)
    code, out, _, records = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt-ids", PROMPT)
    assert code == 0 and "its layers held in bf16" in out and records[0]["verdict"] == "PASS", out


def test_a_checkpoint_compiles_its_graphs_at_opt_level_3_and_nothing_after_it_does(checkpoints, tmp_path, capsys,
                                                                                   monkeypatch):
    """Full-size weights: O3 made a 1.1B decode call 8.4x faster (backends/iree.py). The level is the run's own:
    graphs compiled after it in the same process (the fixtures') keep the default, under which the strict
    factor was measured, and a level enters the compile cache's key."""
    from archval.harness.backends import iree
    seen, compile_text = [], iree.compile_text
    monkeypatch.setattr(iree, "compile_text", lambda text: seen.append(iree.compile_command("in", "out")) or
                        compile_text(text))
    code, out, _, _ = validate(tmp_path, capsys, "--checkpoint", checkpoints["llama"], "--prompt-ids", PROMPT)
    assert code == 0 and "--iree-opt-level=O3" in out
    assert seen and all("--iree-opt-level=O3" in command for command in seen)
    assert "--iree-opt-level=O3" not in iree.compile_command("in", "out")
    with iree.opt_level("O3"):
        leveled = iree.cache_key("module {}")
    assert leveled != iree.cache_key("module {}")
