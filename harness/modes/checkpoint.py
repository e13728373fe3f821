"""--checkpoint DIR: a local checkpoint's own weights through the decode case (core/kinds.py: prefill, then
--steps greedy steps, teacher-forced, and the greedy tokens token-exact or near-tie only), the graph emitted
from DIR's config.json at full size and bound to DIR's tensors by their safetensors names.

Everything that can be refused is refused before the heavy part (exit 2, one sentence): the files
(core/checkpoint.py), their shapes against config.json, the prompt, and the memory estimate against the
memory available. The graphs are compiled first, then the oracle runs and is freed before the graph's
weights are read; the three-way comparison with XLA is not run (it would hold a third copy of the weights).
"""
from __future__ import annotations

import shlex

import numpy as np

from archval.harness import COMMAND
from archval.harness.checks import published
from archval.harness.core import checkpoint as ckpt
from archval.harness.core.binding import IDENTITY
from archval.harness.core.binding_file import load as load_binding
from archval.harness.core.case import run_case
from archval.harness.core.fixtures import DEFAULT_BOUND, Fixture
from archval.harness.core.record import CheckpointFacts
from archval.harness.core.summary import RunInfo
from archval.harness.modes import Outcome, UsageError, claim_reports
from archval.harness.modes.gate import emitter_of
from archval.harness.present.console import line

DEFAULT_STEPS = 32


def prompt_ids(args, checkpoint: ckpt.Checkpoint, tokenizer) -> list[int]:
    """--prompt-ids, or --prompt through the checkpoint's tokenizer; UsageError naming what is wrong."""
    if (args.prompt_ids is None) == (args.prompt is None):
        raise UsageError("--checkpoint needs a prompt: --prompt-ids 1,2,3 or, with a tokenizer in the directory, "
                         "--prompt TEXT (one of the two)")
    if args.prompt is not None:
        if tokenizer is None:
            raise UsageError(f"--prompt: {checkpoint.directory} holds no tokenizer "
                             f"({', '.join(ckpt.TOKENIZER_FILES)}); give --prompt-ids instead")
        ids = list(tokenizer(args.prompt, add_special_tokens=False)["input_ids"])
        if not ids:
            raise UsageError(f"--prompt {shlex.quote(args.prompt)}: the tokenizer makes no tokens of it")
        return ids
    try:
        ids = [int(t) for t in args.prompt_ids.split(",")]
    except ValueError:
        raise UsageError(f"--prompt-ids {shlex.quote(args.prompt_ids)}: not comma-separated integers") from None
    vocab = checkpoint.config["vocab_size"]
    outside = [t for t in ids if not 0 <= t < vocab]
    if outside:
        raise UsageError(f"--prompt-ids: token {outside[0]} is outside the vocabulary [0, {vocab}) of "
                         f"{checkpoint.directory / 'config.json'}")
    return ids


def prepare(args) -> tuple[Fixture, ckpt.Checkpoint, object, ckpt.MemoryEstimate]:
    """The checkpoint read and checked, the memory stated, the fixture made; UsageError for what cannot run."""
    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: must be at least 1")
    if args.graph and set(args.graph) != {"decode"}:
        raise UsageError(f"--graph {next(g for g in args.graph if g != 'decode')}: --checkpoint validates the decode "
                         "graph kind only (its step 0 is the prefill graph's logits)")
    try:
        checkpoint = ckpt.read(args.checkpoint)
        from archval.oracles.hf import checkpoint_tensors
        ckpt.check_shapes(checkpoint, checkpoint_tensors(checkpoint.config))
        name = published.label(checkpoint.directory / "config.json")
    except (ckpt.CheckpointError, published.PublishedConfigError) as e:
        raise UsageError(str(e)) from None
    tokenizer = None
    if checkpoint.tokenizer:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(checkpoint.directory, local_files_only=True)
    prompt = prompt_ids(args, checkpoint, tokenizer)
    strict = not args.fixed_bound_only
    estimate, available = ckpt.MemoryEstimate.of(checkpoint, strict), ckpt.available_memory()
    print(f"== checkpoint {checkpoint.directory}: {checkpoint.config['model_type']}, {checkpoint.parameters():,} "
          f"parameters in {len(checkpoint.files)} safetensors files ({checkpoint.storage()}), "
          f"tokenizer {'yes' if tokenizer else 'none'}", flush=True)
    print(f"memory: estimated peak {estimate.describe()}; available "
          + (f"{available / ckpt.GiB:.1f} GiB" if available is not None else "unknown"), flush=True)
    if available is not None and estimate.peak > available:
        raise UsageError(f"--checkpoint {checkpoint.directory}: the run needs an estimated "
                         f"{estimate.peak / ckpt.GiB:.1f} GiB but {available / ckpt.GiB:.1f} GiB is available"
                         + ("" if args.fixed_bound_only else " (--fixed-bound-only skips the f64 oracle)"))
    replay = " ".join([COMMAND, "--checkpoint", shlex.quote(str(args.checkpoint)), "--prompt-ids",
                       ",".join(map(str, prompt)), "--steps", str(args.steps)])
    fixture = Fixture(
        name=name, config_path=checkpoint.directory / "config.json", config=checkpoint.config, seed=0,
        prompt_len=len(prompt), bound=DEFAULT_BOUND, bound_reason=None,
        purpose=f"the checkpoint {checkpoint.directory}: its own weights ({checkpoint.storage()} storage)",
        mutants=(), decode_steps=args.steps, replay=replay, prompt_ids=tuple(prompt),
        sizes=(len(prompt), len(prompt) + args.steps),
        source=ckpt.CheckpointSource(checkpoint, np.array(prompt), args.steps, strict))
    return fixture, checkpoint, tokenizer, estimate


def run(args, info: RunInfo) -> Outcome:
    fixture, checkpoint, tokenizer, estimate = prepare(args)
    claim_reports(args)
    print(f"== numerical: oracle (transformers loads the checkpoint: eager attention, f32 compute) vs IREE, prefill "
          f"of {fixture.prompt_len} tokens and {fixture.decode_steps} decode steps (no XLA three-way: it would hold a "
          "third copy of the weights)", flush=True)
    record = run_case(fixture, "decode", emitter=emitter_of(args), xla=False, strict_bound=not args.fixed_bound_only,
                      binding=load_binding(args.binding) if args.binding else IDENTITY)
    texts = _texts(tokenizer, fixture, record)
    record.checkpoint = CheckpointFacts(str(args.checkpoint), len(checkpoint.files), checkpoint.storage(),
                                        checkpoint.parameters(), estimate.peak, *texts)
    print(line(record), flush=True)
    if texts[0] is not None:
        for label, text in zip(("prompt", "oracle", "graph"), texts):
            print(f"    {label + ':':<8}{text!r}")
    return Outcome(True, [record])


def _texts(tokenizer, fixture: Fixture, record) -> tuple[str | None, str | None, str | None]:
    """(the prompt, the oracle's continuation, the graph's) as text; Nones without a tokenizer, and for the
    continuations where the case ended before comparing them."""
    if tokenizer is None:
        return None, None, None
    prompt = tokenizer.decode(list(fixture.prompt_ids))
    if record.decode is None:
        return prompt, None, None
    timeline = record.decode.timeline
    return (prompt, tokenizer.decode([s.oracle_token for s in timeline]),
            tokenizer.decode([s.graph_token for s in timeline]))
