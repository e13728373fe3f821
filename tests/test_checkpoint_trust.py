"""A checkpoint directory is untrusted: no Python it holds ever runs, whatever it names in an `auto_map` and
whatever is typed on stdin; its links may not lead out of it nor its entries be devices or FIFOs, found before
anything is opened; and a tokenizer that cannot be read is one sentence (exit 2), not read at all with
--prompt-ids (docs/checkpoints.md, Trust)."""
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archval.harness import ROOT
from archval.harness.cli import main
from archval.harness.core import checkpoint_trust, fixtures
from archval.harness.modes.make_checkpoint import build, word_tokenizer

PROMPT_IDS = "3,1,4,1,5"
REFUSAL_TIMEOUT_S = 120  # a refusal takes seconds; a reader blocked on a FIFO would wait forever


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    """A tiny llama checkpoint with a word-level tokenizer (w0 w1 ...)."""
    return build(dict(fixtures.load("llama").config), tmp_path_factory.mktemp("ckpt") / "llama", tokenizer=True)


def validate(tmp_path, capsys, *argv) -> tuple[int, str, str]:
    code = main([*map(str, argv), "--reports", str(tmp_path / "reports")])
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err: str) -> bool:
    return "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def planted(llama: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the checkpoint whose tokenizer_config.json and config.json name Python in it for every Auto
    class, the marker file that Python writes when it is imported)."""
    planted, marker = tmp_path / "planted", tmp_path / "MARKER"
    shutil.copytree(llama, planted)
    (planted / "planted.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the checkpoint ran code')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast\n"
        "class PlantedConfig(LlamaConfig): pass\n"
        "class PlantedModel(LlamaForCausalLM): pass\n"
        "class PlantedTokenizer(PreTrainedTokenizerFast): pass\n")
    for name, auto_map in (("tokenizer_config.json", {"AutoTokenizer": ["planted.PlantedTokenizer", None]}),
                           ("config.json", {"AutoConfig": "planted.PlantedConfig",
                                            "AutoModelForCausalLM": "planted.PlantedModel",
                                            "AutoTokenizer": ["planted.PlantedTokenizer", None]})):
        raw = json.loads((planted / name).read_text())
        raw["auto_map"] = auto_map
        if name == "tokenizer_config.json":
            raw["tokenizer_class"] = "PlantedTokenizer"
        (planted / name).write_text(json.dumps(raw))
    return planted, marker


@pytest.mark.parametrize("options, code", [
    (["--prompt", "w1 w2"], 2),
    (["--prompt-ids", PROMPT_IDS], 0),
    (["--prompt-ids", PROMPT_IDS, "--fixed-bound-only", "--steps", "2"], 0),
], ids=["prompt", "prompt-ids", "fixed-bound"])
def test_no_code_in_a_checkpoint_runs_whatever_stdin_says(options, code, llama, tmp_path, capsys, monkeypatch):
    """stdin answers "y" to transformers' "Do you wish to run the custom code?": it must never be asked."""
    directory, marker = planted(llama, tmp_path)
    stdin = io.StringIO("y\ny\ny\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    got, out, err = validate(tmp_path, capsys, "--checkpoint", directory, *options)
    assert not marker.exists(), "the checkpoint's Python ran"
    assert stdin.tell() == 0, "stdin was read"
    assert got == code, out + err
    if code == 2:
        assert one_sentence(err) and "tokenizer_config.json: field 'auto_map' names Python in the checkpoint" in err
    else:
        assert (f"note: {directory / 'config.json'}: field 'auto_map' names Python in the checkpoint, which archval "
                "never runs: the oracle is transformers' own llama class") in out.splitlines()


def test_the_planted_config_as_a_published_config_runs_no_code_either(llama, tmp_path, capsys, monkeypatch):
    directory, marker = planted(llama, tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    got, out, err = validate(tmp_path, capsys, "--config", directory / "config.json", "--graph", "prefill")
    assert got == 0 and not marker.exists(), out + err


def test_transformers_itself_is_told_never_to_run_a_checkpoints_code(llama, tmp_path, capsys, monkeypatch):
    """The second guard alone (trust_remote_code=False): with the auto_map check out of the way, transformers
    refuses the planted tokenizer without asking, and the refusal is one sentence."""
    directory, marker = planted(llama, tmp_path)
    stdin = io.StringIO("y\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(checkpoint_trust, "tokenizer_code", lambda *_: None)
    got, _, err = validate(tmp_path, capsys, "--checkpoint", directory, "--prompt", "w1 w2")
    assert not marker.exists() and stdin.tell() == 0
    assert got == 2 and one_sentence(err) and "transformers cannot read the tokenizer in" in err, err


@pytest.mark.parametrize("name, content, says", [
    ("tokenizer.json", b"\x00\xffnot json{{", "transformers cannot read the tokenizer in {}"),
    ("tokenizer.json", b"[1, 2]", "transformers cannot read the tokenizer in {}"),
    ("tokenizer.json", b'{"model": 3}', "transformers cannot read the tokenizer in {}"),
    ("tokenizer_config.json", b"{not json", "{}/tokenizer_config.json: not valid JSON"),
], ids=["garbage", "list", "wrong-shape", "config-garbage"])
def test_an_unreadable_tokenizer_is_one_sentence_and_not_read_with_prompt_ids(name, content, says, llama, tmp_path,
                                                                                capsys):
    broken = tmp_path / "broken"
    shutil.copytree(llama, broken)
    (broken / name).write_bytes(content)
    got, out, err = validate(tmp_path, capsys, "--checkpoint", broken, "--prompt", "w1 w2")
    assert got == 2 and one_sentence(err) and says.format(broken) in err, err
    got, out, err = validate(tmp_path, capsys, "--checkpoint", broken, "--prompt-ids", PROMPT_IDS, "--steps", "2")
    assert got == 0 and "tokenizer not read (--prompt-ids)" in out, out + err


def test_a_tokenizer_with_ids_beyond_the_models_vocabulary_is_refused(llama, tmp_path, capsys):
    larger = tmp_path / "larger"
    shutil.copytree(llama, larger)
    vocab = fixtures.load("llama").config["vocab_size"]
    word_tokenizer(vocab + 10).save_pretrained(larger)
    got, _, err = validate(tmp_path, capsys, "--checkpoint", larger, "--prompt", f"w1 w{vocab + 3}")
    assert got == 2 and one_sentence(err), err
    assert f"--prompt: the tokenizer's token {vocab + 3} is outside the vocabulary [0, {vocab})" in err


def refused_without_blocking(directory: Path, tmp_path: Path) -> str:
    """stderr of a --checkpoint run that must be refused; in a process of its own, with a time limit, since a
    reader that opened a FIFO would wait forever."""
    proc = subprocess.run([sys.executable, "-m", "archval", "--checkpoint", str(directory), "--prompt-ids",
                           PROMPT_IDS, "--reports", str(tmp_path / "reports")], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S)
    assert proc.returncode == 2 and one_sentence(proc.stderr), proc.stdout + proc.stderr
    return proc.stderr


@pytest.mark.parametrize("entry, target", [
    ("config.json", "/etc/passwd"),
    ("generation_config.json", "fifo outside"),  # transformers opens it by name: it would wait for a writer
    ("tokenizer.json", "../elsewhere/tokenizer.json"),
])
def test_a_link_out_of_the_checkpoint_is_refused_before_it_is_opened(entry, target, llama, tmp_path):
    directory = tmp_path / "linked"
    shutil.copytree(llama, directory)
    if target == "fifo outside":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    elif not target.startswith("/"):
        (directory / target).parent.mkdir()
        shutil.copy(directory / entry, directory / target)
    (directory / entry).unlink()
    (directory / entry).symlink_to(target)
    err = refused_without_blocking(directory, tmp_path)
    assert f"{directory / entry}: a link to " in err and "outside the checkpoint" in err, err


def test_a_fifo_in_the_checkpoint_is_refused_before_it_is_opened(llama, tmp_path):
    directory = tmp_path / "fifo"
    shutil.copytree(llama, directory)
    (directory / "tokenizer.json").unlink()
    os.mkfifo(directory / "tokenizer.json")
    err = refused_without_blocking(directory, tmp_path)
    assert f"{directory / 'tokenizer.json'}: neither a regular file nor a folder" in err, err


def test_a_hugging_face_cache_snapshot_of_links_into_its_blobs_is_validated(llama, tmp_path, capsys):
    """hub/models--org--name/snapshots/REV/NAME -> ../../blobs/SHA, as huggingface_hub lays a download out."""
    repo = tmp_path / "hub" / "models--org--llama"
    snapshot, blobs = repo / "snapshots" / "0123abcd", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, path in enumerate(sorted(llama.iterdir())):
        shutil.copy(path, blobs / f"blob{i}")
        (snapshot / path.name).symlink_to(Path("../../blobs") / f"blob{i}")
    got, out, err = validate(tmp_path, capsys, "--checkpoint", snapshot, "--prompt", "w3 w1 w4", "--steps", "2")
    assert got == 0, out + err
