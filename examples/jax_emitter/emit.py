"""archval emitter protocol: emit.py --config C --graph {prefill,decode} --out F

Lowers model.prefill / model.decode with jax.jit, then adapts JAX's StableHLO module to
archval's ABI:
  - `module @<model_type>_<graph>` holding `func.func public @main`;
  - every argument named by a `loc("...")`: checkpoint tensor names for the weights
    (archval binds weights by these names, not by position), then the inputs;
  - no JAX-specific attributes on the results or the module.
Exit 2 with one sentence on stderr for a config it refuses.
"""
import argparse
import json
import os
import sys

import jax
import jax.extend
import jax.numpy as jnp
from jaxlib.mlir import ir

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # after the path: model.py and config.py sit beside this file
from config import Refused, parse

jax.config.update("jax_traceback_in_locations_limit", 0)   # op locations: op names, no file paths
jax.config.update("jax_enable_x64", False)                   # i32 inputs stay i32

PREFILL_BUCKET = 16   # Lp: prompt slots in prefill
CAPACITY = 32         # C: decode cache slots (prompt + decode steps must fit)


def graph_signature(spec, graph):
    """(function, [(argument name, shape, dtype)]): weights first, then the graph's inputs."""
    f32, i32 = jnp.float32, jnp.int32
    args = [(n, s, f32) for n, s in zip(model.weight_names(spec), model.weight_shapes(spec))]
    cache = (spec.layers, CAPACITY, spec.kv_heads, spec.head_dim)
    if graph == "prefill":
        fn = model.prefill
        args += [("tokens", (PREFILL_BUCKET,), i32), ("positions", (PREFILL_BUCKET,), i32),
                 ("real_len", (), i32)]
    else:
        fn = model.decode
        args += [("token", (), i32), ("position", (), i32), ("cache_len", (), i32),
                 ("k_cache", cache, f32), ("v_cache", cache, f32)]
    return fn, args


def lower(spec, graph):
    fn, args = graph_signature(spec, graph)
    n_weights = len(model.weight_names(spec))
    structs = [jax.ShapeDtypeStruct(shape, dtype) for _, shape, dtype in args]

    def flat(*xs):  # one positional argument per graph argument, in ABI order
        return fn(spec, list(xs[:n_weights]), *xs[n_weights:])

    # keep_unused: jit would otherwise drop arguments the math does not read
    module = jax.jit(inlined(flat, structs), keep_unused=True).lower(*structs).compiler_ir("stablehlo")
    return adapt(module, f"{spec.family}_{graph}", [name for name, _, _ in args])


def inlined(fn, structs):
    """fn with every nested jit (jnp.where, jax.nn.silu, ... are jitted) traced inline.

    Otherwise JAX's module holds private functions (@_where, @silu) beside @main, and
    archval wants @main alone."""
    closed = jax.make_jaxpr(fn)(*structs)

    def run(jaxpr, consts, *args):
        env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))
        read = lambda v: v.val if isinstance(v, jax.extend.core.Literal) else env[v]
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            if eqn.primitive.name in ("jit", "pjit"):
                outs = run(eqn.params["jaxpr"].jaxpr, eqn.params["jaxpr"].consts, *ins)
            else:
                outs = eqn.primitive.bind(*ins, **eqn.params)
                outs = outs if eqn.primitive.multiple_results else [outs]
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    return lambda *args: run(closed.jaxpr, closed.consts, *args)


def adapt(module, module_name, arg_names):
    """Rename the module, name every argument, strip JAX's attributes; return the text."""
    with module.context:
        funcs = [ir.StringAttr(op.attributes["sym_name"]).value for op in module.body.operations]
        if funcs != ["main"]:
            raise RuntimeError(f"JAX's module holds functions {funcs}; archval wants @main alone")
        main = module.body.operations[0]
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
    a = ap.parse_args(argv)
    try:
        if a.graph not in ("prefill", "decode"):
            raise Refused(f"graph {a.graph!r} is not emitted by this example (prefill and decode only).")
        with open(a.config) as f:
            spec = parse(json.load(f), a.config)
    except Refused as e:
        print(e, file=sys.stderr)
        return 2
    text = lower(spec, a.graph)
    with open(a.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
