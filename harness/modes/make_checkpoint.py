"""archval make-checkpoint (./validate_arch.sh make-checkpoint in a checkout): build a local checkpoint in the
format Hugging Face publishes: save_pretrained of a model with archval's seeded weights (oracles/hf.py: real
margins between logits, unlike transformers' 0.02 init), in the storage dtype and shard size asked for,
optionally with a word-level tokenizer. No download; the tests, the docs and the 1B-parameter measurement build
theirs with it, and an installed archval has it as a command of its own (docs/checkpoints.md).

    archval make-checkpoint --family llama --out /tmp/llama-ckpt --dtype bf16 --max-shard-size 100KB
    archval make-checkpoint --family llama --set hidden_size=2048 --set num_hidden_layers=16 ... --out DIR
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core import fixtures
from ..core.summary import command
from . import UsageError

DTYPES = ("f32", "bf16", "f16")


def config_of(family: str | None, config: str | None, overrides: list[str]) -> dict:
    """The family fixture's config.json, or a given one, with key=value overrides (JSON values); UsageError,
    in one sentence, for an unknown family, a config that cannot be read as a JSON object, or a bad override."""
    try:
        raw = json.loads(Path(config).read_text()) if config else dict(fixtures.load(family).config)
    except fixtures.FixtureError as e:
        raise UsageError(f"--family {family}: {e}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"--config {config}: cannot be read as JSON ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"--config {config}: not a JSON object")
    for item in overrides:
        key, equals, value = item.partition("=")
        try:
            if not (key and equals):
                raise ValueError(item)
            raw[key] = json.loads(value)
        except ValueError:
            raise UsageError(f"--set {item}: not KEY=JSON (a string value needs its quotes: KEY='\"text\"')") from None
    return raw


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer: token i is the word w{i}; text is words separated by spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0")


def build(config: dict, out: Path, dtype: str = "f32", max_shard_size: str | None = None, seed: int = 1,
          tokenizer: bool = False) -> Path:
    import torch

    from ...oracles.hf import Oracle
    # built in the storage dtype: each tensor drawn in f32 and rounded as it is copied in (the bytes of an f32 model
    # converted after, tests/test_checkpoint.py), so a 7B model in bf16 takes 2 bytes a parameter, not 4
    model = Oracle(config, seed, {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]).model
    model.save_pretrained(out, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    if tokenizer:
        word_tokenizer(config["vocab_size"]).save_pretrained(out)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"{Path(command()).name} make-checkpoint",
                                 description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--family", help="a fixture family's config.json (--list names them)")
    source.add_argument("--config", help="a config.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a config field")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--dtype", choices=DTYPES, default="f32", help="storage dtype")
    ap.add_argument("--max-shard-size", help="shard the safetensors (e.g. 100KB, 500MB)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tokenizer", action="store_true", help="also save a word-level tokenizer (w0 w1 ...)")
    return ap


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_of(args.family, args.config, args.set)
        build(config, args.out, args.dtype, args.max_shard_size, args.seed, args.tokenizer)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: --out {args.out}: cannot be written ({e.strerror or e})", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the input decides what transformers can build: said, not a traceback
        print(f"error: transformers cannot build this config: {type(e).__name__}: {' '.join(str(e).split())}",
              file=sys.stderr)
        return 2
    print(f"{args.out}: {config['model_type']}, {args.dtype} storage")
    return 0
