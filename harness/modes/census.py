"""archval census: every decoder-only causal-LM model type of the installed transformers, synthesised and run.

Which types: every key of transformers' MODEL_FOR_CAUSAL_LM_MAPPING_NAMES except those that are not
decoder-only (not_decoder_only): a type that transformers also maps to a sequence-to-sequence LM (BART,
Whisper's decoder, ...) or to a masked LM (BERT, RoBERTa, ...: bidirectional encoders that only run
causally as another model's decoder), or whose config class says is_encoder_decoder.

Each type, in a process of its own with a time limit (a hang or a crash is that type's sentence, never the
census's end): its tiny config synthesised (oracles/synth.py), the oracle built from it (oracles/hf.py:
seeded weights, eager attention, fp32), then the prompt and decode rules of archval's fixtures (13 prompt
tokens at positions apart from their slots, quiet rows; harness/core/fixtures.py) run as a case would:
prefill logits at every position, 16 greedy decode steps through transformers' own cache, the fp64 oracle
teacher-forced on those tokens. Usable when every logit is finite, the positions reach the logits, and the
decode through the cache equals one full forward over the prompt and the chosen tokens (no cache) to within
CACHE_NOISE_FACTOR times the fp32 oracle's own distance from fp64, or ABSOLUTE_FLOOR. Refused besides: a
forward that takes no position_ids or returns no cache, and a prefill that attends otherwise without an
attention_mask (as the oracle runs it) than with an all-ones one. The features found are the built model's
(oracles/synth.py features), and for MoE how many experts each router chose over the prompt and the decode.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ROOT
from ..core.fixtures import QUIET_TOKENS, Fixture

SEED, PROMPT_LEN, DECODE_STEPS = 1, 13, 16
TIME_LIMIT_S = 120
CACHE_NOISE_FACTOR, ABSOLUTE_FLOOR = 16.0, 1e-4
DEFAULT_OUTPUT = ROOT / "docs" / "census.md"


@dataclass
class Result:
    model_type: str
    usable: bool
    reason: str  # why not, in one sentence; "" when usable
    features: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cache_gap: float | None = None   # max |decode through the cache - full forward|
    fp32_noise: float | None = None  # max |fp32 decode - fp64 teacher-forced|
    config: dict | None = None  # the tiny config examined (a synthesised fixture's config.json)


def not_decoder_only() -> dict[str, str]:
    """The causal-LM model types that are not decoder-only, each with why."""
    from transformers import AutoConfig
    from transformers.models.auto import modeling_auto as auto
    seq2seq, masked = set(auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES), set(auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    found = {}
    for model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        if model_type in seq2seq:
            found[model_type] = "encoder-decoder: transformers maps it to a sequence-to-sequence LM"
        elif model_type in masked:
            found[model_type] = "a bidirectional encoder: transformers maps it to a masked LM"
        else:
            try:
                if getattr(AutoConfig.for_model(model_type), "is_encoder_decoder", False):
                    found[model_type] = "encoder-decoder: its config class says is_encoder_decoder"
            except Exception:  # noqa: BLE001 - a config that cannot be built is tried, and refused with its reason
                pass
    return found


def decoder_only_types() -> list[str]:
    from transformers.models.auto import modeling_auto as auto
    excluded = not_decoder_only()
    return sorted(t for t in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if t not in excluded)


def _fixture(config: dict) -> Fixture:
    """The fixture rules archval's own fixtures follow (prompt, positions apart from slots, quiet tokens)."""
    return Fixture(name=config["model_type"], config_path=Path("synthesised/config.json"), config=config,
                   seed=SEED, prompt_len=PROMPT_LEN, bound=1e-2, bound_reason=None, purpose="census", mutants=(),
                   decode_steps=DECODE_STEPS)


def examine(model_type: str) -> Result:
    """Synthesise model_type and run the oracle on it, in this process; every failure is the Result's sentence."""
    from ...oracles.synth import SynthError, sentence, synthesise
    start = time.perf_counter()
    try:
        synthesised = synthesise(model_type)
        result = _examine(model_type, synthesised)
        result.config = synthesised.config
    except SynthError as e:
        result = Result(model_type, False, str(e))
    except Exception as e:  # noqa: BLE001 - the modeling code's own failure is this type's reason
        result = Result(model_type, False, f"the oracle fails on the tiny config: {sentence(e)}")
    result.seconds = time.perf_counter() - start
    return result


def _examine(model_type: str, synthesised) -> Result:
    """model_type: the census's key (gpt-sw3), which may name another type's config (gpt2)."""
    import inspect

    import torch

    from ...oracles.hf import Oracle, binding
    from ...oracles.synth import experts_reached, features, moe_shape, routing
    config = synthesised.config
    model_class = binding(model_type).class_name
    import transformers
    accepted = inspect.signature(getattr(transformers, model_class).forward).parameters
    if "position_ids" not in accepted:
        return Result(model_type, False, f"{model_class}.forward takes no position_ids, so its positions are its "
                                         "cache slots and archval's positions apart from slots cannot reach it")
    takes = getattr(getattr(transformers, model_class).config_class, "model_type", None)
    text_type = config.get("text_config", {}).get("model_type")
    if takes and takes != config["model_type"] and takes == text_type and text_type in decoder_only_types():
        return Result(model_type, False, f"{model_class} takes its text config alone, model type {text_type}, "
                                         "which the census tries on its own")
    fixture = _fixture(config)
    prompt, positions, steps = fixture.prompt(), fixture.prompt_positions(), fixture.decode_positions()
    oracle = Oracle(config, SEED, quiet_tokens=QUIET_TOKENS)
    found = features(oracle.model.config, oracle.model)
    found.append("quiet rows" if oracle.quiet_tokens else "no RMSNorm or LayerNorm: no quiet rows")
    with torch.no_grad():
        if getattr(oracle.forward(prompt, positions), "cache", None) is None:
            return Result(model_type, False, f"{model_class} returns no cache, so a decode cannot run through "
                                             "transformers' own cache", found)
    experts, top_k = moe_shape(oracle.model.config)
    with routing(oracle.model, experts, top_k) as chosen:
        logits, tokens = oracle.greedy(prompt, positions, steps)
    found += [said for said in (experts and experts_reached(chosen, experts),) if said]
    every = oracle.prompt_logits(prompt, positions)
    at_slots = oracle.prompt_logits(prompt, np.arange(len(prompt)))
    as_ids = lambda xs: torch.tensor(np.asarray(xs)[None], dtype=torch.long)
    with torch.no_grad():
        masked = oracle.model(input_ids=as_ids(prompt), position_ids=as_ids(positions), use_cache=True,
                              attention_mask=torch.ones_like(as_ids(prompt))).logits[0].float().numpy()
    if not np.allclose(masked, every, rtol=0, atol=ABSOLUTE_FLOOR):  # the oracle passes no mask (oracles/hf.py)
        return Result(model_type, False, "without an attention_mask its prefill reads the gap in position_ids as "
                                         "the start of another packed sequence (unlike with an all-ones mask), so "
                                         "positions apart from slots change what it attends to", found)
    fp64 = Oracle(config, SEED, dtype=torch.float64, quiet_tokens=QUIET_TOKENS).teacher_forced(
        prompt, positions, steps, tokens)
    ids = as_ids(np.concatenate([prompt, tokens[:-1]]))
    with torch.no_grad():  # an explicit mask: without one (and no cache) transformers reads the gap in the
        # positions as the start of another packed sequence and masks the tokens before it away
        full = oracle.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False,
                            position_ids=as_ids(np.concatenate([positions, steps]))).logits[0, len(prompt) - 1:]
    full = full.float().numpy()
    return _judge(model_type, found, logits, every, at_slots, fp64, full)


def _judge(model_type, found, logits, every, at_slots, fp64, full) -> Result:
    if not all(np.isfinite(x).all() for x in (logits, every, fp64, full)):
        return Result(model_type, False, "its logits are not all finite on the tiny config", found)
    if np.array_equal(every, at_slots):
        return Result(model_type, False, "its logits do not depend on position_ids (positions moved apart from "
                                         "slots change nothing), so positions cannot be validated", found)
    gap = float(np.abs(logits - full).max())
    noise = float(np.abs(logits - fp64).max())
    allowed = max(CACHE_NOISE_FACTOR * noise, ABSOLUTE_FLOOR)
    if gap > allowed:
        return Result(model_type, False, f"its decode through the cache differs from a full forward by {gap:.1e}, "
                                         f"over {allowed:.1e} ({CACHE_NOISE_FACTOR:g}x its fp32 noise {noise:.1e})",
                      found, cache_gap=gap, fp32_noise=noise)
    return Result(model_type, True, "", found, cache_gap=gap, fp32_noise=noise)


def _child(model_type: str, pipe, how) -> None:
    pipe.send(how(model_type))
    pipe.close()


def isolated(model_type: str, time_limit: float, how=examine) -> Result:
    """how(model_type) (examine()) in a forked process: a crash, a hang past time_limit or a kill is this type's
    sentence."""
    start = time.perf_counter()
    context = multiprocessing.get_context("fork")  # torch and transformers already imported: no start-up cost
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(model_type, send, how), daemon=True)
    process.start()
    send.close()
    result = receive.recv() if receive.poll(time_limit) else None
    process.join(5 if result is not None else 0)
    if process.is_alive():
        process.kill()
        process.join()
    if result is None:
        reason = (f"it did not finish within the census's time limit of {time_limit:g} s" if process.exitcode in
                  (None, -9) else f"its process died (exit status {process.exitcode}) before giving a result")
        result = Result(model_type, False, reason, seconds=time.perf_counter() - start)
    return result


def census(model_types: list[str], time_limit: float, progress=print) -> list[Result]:
    results = []
    for model_type in model_types:
        results.append(isolated(model_type, time_limit))
        r = results[-1]
        progress(f"{r.model_type:<28} {'usable' if r.usable else 'refused'} {r.seconds:6.1f} s  "
                 f"{'; '.join(r.features) if r.usable else r.reason}", flush=True)
    return results


def table(results: list[Result], excluded: dict[str, str], header: list[str]) -> str:
    usable = [r for r in results if r.usable]
    lines = [*header, "",
             f"**{len(usable)} of {len(results)}** decoder-only model types usable; {len(excluded)} causal-LM "
             "types are not decoder-only and are not tried (listed after the table).", "",
             "| model type | usable | features found, or why not | decode vs full forward (fp32 noise) | seconds |",
             "|---|---|---|---|---|"]
    for r in results:
        gap = f"{r.cache_gap:.1e} ({r.fp32_noise:.1e})" if r.cache_gap is not None else ""
        said = ", ".join(r.features) if r.usable else r.reason
        lines.append(f"| {r.model_type} | {'yes' if r.usable else 'no'} | {said.replace('|', '/')} | {gap} | "
                     f"{r.seconds:.1f} |")
    lines += ["", "Not decoder-only, not tried:", "",
              *(f"- {t}: {why}" for t, why in sorted(excluded.items())), ""]
    return "\n".join(lines)


def header(argv: list[str], time_limit: float, seconds: float) -> list[str]:
    """What the table's figures were measured with: when, which libraries, which machine, which commit, how."""
    import importlib.metadata
    import os
    import subprocess

    from ..core.summary import command
    from ..core.host import cpu_model
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "not a git checkout"
    machine = "; ".join(part.split(":", 1)[-1].strip() for part in cpu_model().split("; "))  # the values only
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("transformers", "torch"))
    return ["# Census: every decoder-only causal-LM model type of the installed transformers", "",
            "Written by `archval census` (harness/modes/census.py; what it checks is its docstring). Rerun it after "
            "changing transformers: tests/test_census.py fails while this table and the installed types differ.", "",
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
            f"- versions: {versions}",
            f"- machine: {machine}, {os.cpu_count()} cores (shared with other work while it ran)",
            f"- commit: {commit}",
            f"- command: `{' '.join([command(), 'census', *argv])}`",
            f"- took: {seconds / 60:.1f} min, each model type in its own process, at most {time_limit:g} s each"]


def main(argv: list[str]) -> int:
    from ..core.summary import command
    ap = argparse.ArgumentParser(prog=f"{Path(command()).name} census", description=__doc__.split("\n\n")[0])
    ap.add_argument("--type", action="append", metavar="MODEL_TYPE", help="only this model type (repeatable)")
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, metavar="S",
                    help=f"seconds each model type may take (default {TIME_LIMIT_S})")
    ap.add_argument("--output", type=Path, metavar="FILE", help="write the table (markdown) here")
    args = ap.parse_args(argv)
    from ...oracles import hf  # noqa: F401 - torch and transformers imported once, before the forks
    excluded = not_decoder_only()
    known = decoder_only_types()
    unknown = [t for t in args.type or () if t not in known]
    if unknown:
        print(f"error: --type {unknown[0]}: not a decoder-only causal-LM model type of the installed transformers",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = census(args.type or known, args.time_limit)
    text = table(results, excluded, header(argv, args.time_limit, time.perf_counter() - start))
    if args.output:
        from ..core.files import write_atomic
        write_atomic(args.output, text)
    print(f"{sum(r.usable for r in results)} of {len(results)} usable")
    return 0
