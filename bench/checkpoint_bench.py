"""Benchmark of --checkpoint: archval's whole run against transformers alone doing the oracle's irreducible
work, measured in the same run on the same machine, and the run's peak memory against its printed estimate.

    .venv/bin/python bench/checkpoint_bench.py [--hidden 512 --layers 8 --intermediate 1536 --vocab 32000
        --heads 8 --kv-heads 4 --dtype bf16 --steps 32] [--keep DIR] [--checkout DIR] [--weights bf16]
        [--archval-only]

1. `archval make-checkpoint` builds a llama-shaped checkpoint of seeded weights (sharded safetensors);
2. archval validates it (`--checkpoint`, an 8-token prompt, --steps greedy steps) with an empty cache
   directory, so its compile counts: wall time, its stages (summary.json), its peak RSS (VmHWM, polled)
   against the `estimated peak` it printed and what it said must be free (the peak less the files mapped
   to load the model: the kernel reclaims those pages when memory runs short);
3. then, in this process, transformers alone: the checkpoint loaded in f32 (eager attention), the greedy
   steps with its KV cache, the model converted to f64 and one forward over the whole sequence (the strict
   bound's fp64 logits), on every core this process may use;
4. the ratio archval / transformers, and IREE's time per call (prefill and each decode step). --checkout runs
   another checkout's archval (an earlier commit's, for a before-and-after) with this script. Figures, not
   assertions: the machines are shared and noisy, so compare
   the two measured in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = (1, 450, 4996, 17354, 1701, 432, 17204, 975)
GiB = 1 << 30


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def archval(*argv: str) -> list[str]:
    """archval's command line, run in the checkout (validate_arch.sh without its set-up step)."""
    return [sys.executable, "-m", "archval", *argv]


def make_checkpoint(a, out: Path) -> float:
    """Builds the checkpoint; its wall seconds."""
    sets = {"hidden_size": a.hidden, "num_hidden_layers": a.layers, "intermediate_size": a.intermediate,
            "vocab_size": a.vocab, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
            "max_position_embeddings": max(128, len(PROMPT) + a.steps)}
    command = archval("make-checkpoint", "--family", "llama", "--out", str(out), "--dtype", a.dtype,
                      "--max-shard-size", "500MB", *[w for k, v in sets.items() for w in ("--set", f"{k}={v}")])
    start = time.perf_counter()
    subprocess.run(command, cwd=a.checkout, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_archval(a, checkpoint: Path, scratch: Path) -> dict:
    """archval --checkpoint, cold: wall seconds, peak RSS, the estimate it printed, its stages and verdict."""
    env = {**os.environ, "ARCHVAL_CACHE_DIR": str(scratch / "cache")}
    command = archval("--checkpoint", str(checkpoint), "--prompt-ids", ",".join(map(str, PROMPT)),
                      "--steps", str(a.steps), "--reports", str(scratch / "reports"),
                      *(["--emitter", f"{sys.executable} -m archval.emitter --weights bf16"] if a.weights == "bf16" else []))
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=a.checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], peak_rss(proc.pid))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    watcher.join()
    if proc.returncode != 0:
        sys.exit(f"archval exited {proc.returncode}:\n{output[-3000:]}")
    estimate = re.search(r"estimated peak ([\d.]+) GiB", output)
    needed = re.search(r"of which ([\d.]+) GiB must be free", output)
    record = json.loads((scratch / "reports" / "summary.json").read_text())["records"][0]
    return {"wall": wall, "peak": peak[0], "estimate": float(estimate.group(1)) * GiB if estimate else None,
            "needed": float(needed.group(1)) * GiB if needed else None,
            "timings": record["timings"], "verdict": record["verdict"], "output": output}


def run_transformers(a, checkpoint: Path) -> dict:
    """The oracle's irreducible work with transformers alone: load in f32, the greedy steps with a cache,
    the model in f64 and one forward over the sequence. Seconds per part."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(cores())
    times, start = {}, time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="eager",
                                                 local_files_only=True).eval()
    times["load"] = time.perf_counter() - start
    ids = lambda xs: torch.tensor([list(xs)])
    with torch.no_grad():
        start = time.perf_counter()
        out = model(input_ids=ids(PROMPT), position_ids=ids(range(len(PROMPT))), use_cache=True)
        tokens = [int(out.logits[0, -1].argmax())]
        for position in range(len(PROMPT), len(PROMPT) + a.steps):
            out = model(input_ids=ids(tokens[-1:]), position_ids=ids([position]), cache=out.cache,
                        use_cache=True)
            tokens.append(int(out.logits[0, -1].argmax()))
        times["greedy"] = time.perf_counter() - start
        start = time.perf_counter()
        model.to(torch.float64)
        sequence = [*PROMPT, *tokens[:-1]]
        model(input_ids=ids(sequence), position_ids=ids(range(len(sequence))), use_cache=False)
        times["fp64"] = time.perf_counter() - start
    return times


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--dtype", default="bf16", choices=("f32", "bf16", "f16"))
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--keep", type=Path, help="build the checkpoint here and keep it (default: a temporary folder)")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the archval checkout to run (default: this one)")
    ap.add_argument("--weights", choices=("f32", "bf16"), default="f32",
                    help="the graph's weight arguments: f32, or bf16 as stored (the built-in emitter's --weights)")
    ap.add_argument("--archval-only", action="store_true",
                    help="no transformers-alone reference (its f64 forward holds the model in f64: 8 bytes a "
                         "parameter, more than a 3B model leaves on a 24 GiB machine)")
    return ap


def main() -> None:
    ap = parser()
    a = ap.parse_args()
    if a.vocab <= max(PROMPT):
        ap.error(f"--vocab {a.vocab}: the prompt's tokens go up to {max(PROMPT)}")
    with tempfile.TemporaryDirectory(prefix="archval-checkpoint-bench-") as tmp:
        scratch = Path(tmp)
        checkpoint = a.keep or scratch / "checkpoint"
        built = make_checkpoint(a, checkpoint) if not (checkpoint / "config.json").is_file() else None
        ours = run_archval(a, checkpoint, scratch)
        theirs = None if a.archval_only else run_transformers(a, checkpoint)
    stages = ", ".join(f"{k} {v:.1f}" for k, v in ours["timings"].items() if v >= 0.05)
    print(f"checkpoint: llama, hidden {a.hidden}, {a.layers} layers, intermediate {a.intermediate}, vocab {a.vocab}, "
          f"{a.dtype}; prompt {len(PROMPT)} tokens, {a.steps} steps; {cores()} cores"
          + (f"; built in {built:.1f} s" if built is not None else ""))
    for start in ("== checkpoint", "memory: estimated"):
        print(next((line for line in ours["output"].splitlines() if line.startswith(start)), ""))
    print(next((line.strip() for line in ours["output"].splitlines() if "max|Δlogit|" in line), ""))
    commit = subprocess.run(["git", "-C", str(a.checkout), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    print(f"archval --checkpoint at {commit or a.checkout} (cold cache, {a.weights} weight arguments): "
          f"{ours['wall']:.1f} s wall, {ours['verdict']}; "
          f"stages (s): {stages}")
    print(f"IREE per call: {1e3 * ours['timings'].get('run', 0) / (a.steps + 1):.1f} ms ({a.steps + 1} calls)")
    if theirs:
        reference = sum(theirs.values())
        print(f"transformers alone ({cores()} threads): {reference:.1f} s = load {theirs['load']:.1f} + {a.steps} "
              f"greedy steps with a cache (f32) {theirs['greedy']:.1f} + to f64 and one forward {theirs['fp64']:.1f}")
        print(f"ratio archval / transformers: {ours['wall'] / reference:.2f}")
    for what in ("estimate", "needed"):  # the peak with the mapped files, and what had to be free
        if ours[what]:
            print(f"peak RSS of the archval process {ours['peak'] / GiB:.2f} GiB against its {what} "
                  f"{ours[what] / GiB:.1f} GiB ({100 * (ours['peak'] / ours[what] - 1):+.0f}%)")


if __name__ == "__main__":
    main()
