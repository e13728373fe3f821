"""archval emitter protocol: emit.py --config C --graph {prefill,decode,decode_batched} --out F [--debug-taps] [--bucket Lp]
[--capacity C] [--batch B]

Lowers model.prefill / model.decode with jax.jit, then adapts JAX's StableHLO module to
archval's ABI (docs/emitter-protocol.md):
  - `module @<model_type>_<graph>` holding `func.func public @main` and the private
    functions JAX lowers nested jits to (`@_where`, `@silu`, ...), which @main calls;
  - every @main argument named by a `loc("...")`: checkpoint tensor names for the weights
    (archval binds them by these names, not by position), then the inputs;
  - no JAX-specific attributes on the results or the module.
--debug-taps (prefill only): archval's localisation taps after the normal results.
--bucket / --capacity: the prefill bucket and the decode cache's slots (a --checkpoint run passes
its prompt's and steps' sizes; the fixtures use the defaults).
decode_batched: model.decode over B sequences with jax.vmap, each row's caches f32[B, S, K, D] (--batch B).
Exit 2 with one sentence on stderr for a config it refuses.
"""
import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
from jaxlib.mlir import ir

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # after the path: model.py and config.py sit beside this file
from config import Refused, parse

jax.config.update("jax_traceback_in_locations_limit", 0)   # op locations: op names, no file paths
jax.config.update("jax_enable_x64", False)                   # i32 inputs stay i32

PREFILL_BUCKET = 16   # Lp: prompt slots in prefill
CAPACITY = 32         # C: decode cache slots (prompt + decode steps must fit)
BATCH = 3             # B: decode_batched's sequences


def graph_signature(spec, graph, debug_taps=False, bucket=PREFILL_BUCKET, capacity=CAPACITY, batch=BATCH):
    """(function, [(argument name, shape, dtype)]): weights first, then the graph's inputs."""
    f32, i32 = jnp.float32, jnp.int32
    args = [(n, s, f32) for n, s in zip(model.weight_names(spec), model.weight_shapes(spec))]
    if graph == "prefill":
        def fn(spec, weights, *inputs):
            return model.prefill(spec, weights, *inputs, debug_taps=debug_taps)
        args += [("tokens", (bucket,), i32), ("positions", (bucket,), i32), ("real_len", (), i32)]
    elif graph == "decode_batched":
        def fn(spec, weights, *inputs):  # every input and cache gains a leading batch axis; the weights are shared
            return jax.vmap(lambda *row: model.decode(spec, weights, *row))(*inputs)
        args += [(name, (batch,), i32) for name in ("token", "position", "cache_len")]
        args += [(name, (batch, capacity, spec.kv_heads, spec.head_dim), f32) for name in model.cache_names(spec)]
    else:
        fn = model.decode
        args += [("token", (), i32), ("position", (), i32), ("cache_len", (), i32)]
        args += [(name, (capacity, spec.kv_heads, spec.head_dim), f32) for name in model.cache_names(spec)]
    return fn, args


def lower(spec, graph, debug_taps=False, bucket=PREFILL_BUCKET, capacity=CAPACITY, batch=BATCH):
    fn, args = graph_signature(spec, graph, debug_taps, bucket, capacity, batch)
    n_weights = len(model.weight_names(spec))
    structs = [jax.ShapeDtypeStruct(shape, dtype) for _, shape, dtype in args]

    def flat(*xs):  # one positional argument per graph argument, in ABI order
        return fn(spec, list(xs[:n_weights]), *xs[n_weights:])

    # keep_unused: jit would otherwise drop arguments the math does not read (prefill's real_len)
    module = jax.jit(flat, keep_unused=True).lower(*structs).compiler_ir("stablehlo")
    return adapt(module, f"{spec.family}_{graph}", [name for name, _, _ in args])


def adapt(module, module_name, arg_names):
    """Rename the module, name @main's arguments, strip JAX's attributes; return the text."""
    with module.context:
        main = next(op for op in module.body.operations if ir.StringAttr(op.attributes["sym_name"]).value == "main")
        params = main.regions[0].blocks[0].arguments
        if len(params) != len(arg_names):
            raise RuntimeError(f"JAX's @main takes {len(params)} arguments, the ABI {len(arg_names)}")
        for param, name in zip(params, arg_names):
            param.set_location(ir.Location.name(name))
        for attr in ("res_attrs", "arg_attrs"):          # jax.result_info, layouts, shardings
            if attr in main.attributes:
                del main.attributes[attr]
        module.operation.attributes["sym_name"] = ir.StringAttr.get(module_name)
        for attr in ("mhlo.num_partitions", "mhlo.num_replicas"):
            if attr in module.operation.attributes:
                del module.operation.attributes[attr]
        return module.operation.get_asm(enable_debug_info=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--graph", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--debug-taps", action="store_true", help="prefill only: also return archval's taps")
    ap.add_argument("--bucket", type=int, default=PREFILL_BUCKET, help="prefill's prompt slots (Lp)")
    ap.add_argument("--capacity", type=int, default=CAPACITY, help="decode's cache slots (C)")
    ap.add_argument("--batch", type=int, default=BATCH, help="decode_batched's sequences (B)")
    a = ap.parse_args(argv)
    try:
        if a.graph not in ("prefill", "decode", "decode_batched"):
            raise Refused(f"graph {a.graph!r} is not emitted by this example (prefill, decode and decode_batched "
                          "only).")
        if a.debug_taps and a.graph != "prefill":
            raise Refused("--debug-taps exists for --graph prefill only.")
        if min(a.bucket, a.capacity, a.batch) < 1:
            raise Refused(f"--bucket {a.bucket} --capacity {a.capacity} --batch {a.batch}: each must be at least 1.")
        with open(a.config) as f:
            spec = parse(json.load(f), a.config)
    except Refused as e:
        print(e, file=sys.stderr)
        return 2
    text = lower(spec, a.graph, a.debug_taps, a.bucket, a.capacity, a.batch)
    with open(a.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
