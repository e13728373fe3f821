"""archval's reference StableHLO emitter: one decoder core, families as flags."""
from .config import Config, ConfigError, Rope
from .batched import DEFAULT_BATCH, decode_batched, decode_paged
from .continued import CHUNK_GRAPHS, EMBEDDING_GRAPHS, VERIFY_TOKENS, continued, prefill_embeddings
from .stablehlo import COMPUTE_DTYPES, WEIGHT_DTYPES
from .decoder import Decoder, decode, moe_block, prefill

GRAPHS = ("prefill", "decode")  # every family's graphs
BLOCKS = ("moe_block",)         # block-level graphs, for families that have the block
SERVING = CHUNK_GRAPHS + EMBEDDING_GRAPHS + ("decode_batched", "decode_paged")  # every family's, on request
DEFAULT_BUCKET = 16     # prefill length Lp
DEFAULT_CAPACITY = 32   # decode cache slots C


def emit(cfg: Config, graph: str = "prefill", bucket: int = DEFAULT_BUCKET, capacity: int = DEFAULT_CAPACITY,
         core: type[Decoder] = Decoder, taps: bool = False, batch: int = DEFAULT_BATCH, dtype: str = "f32",
         weights: str = "f32") -> str:
    """The StableHLO text of one graph kind for a parsed config (taps: prefill's per-layer debug outputs; batch:
    the serving graphs' sequences; dtype: what prefill's, decode's and moe_block's matmuls and activations compute
    in, f32 or bf16; weights: their weight arguments' type)."""
    if graph in GRAPHS + SERVING:
        cfg.check_positions(bucket if graph in ("prefill", "prefill_embeddings") else capacity, graph)
    if taps and graph != "prefill":
        raise ValueError("debug taps exist for the prefill graph only")
    if cfg.mla is not None and graph in CHUNK_GRAPHS + ("decode_batched", "decode_paged"):
        raise ConfigError(f"--graph {graph}: the built-in emitter keeps latent attention's own caches (kv_latent, "
                          f"k_rope) in its decode graph alone, and writes no {graph} graph for them")
    if graph == "moe_block" and dtype != "f32":
        raise ConfigError(f"--graph moe_block --dtype {dtype}: the block check's bound is f32's, so the built-in "
                          f"emitter writes its block graph in f32 only")
    if graph in SERVING and (dtype, weights) != ("f32", "f32"):
        raise ValueError(f"the serving graph {graph} is written in f32 only (--dtype and --weights: prefill, decode "
                         f"and moe_block)")
    if graph == "prefill":
        return prefill(cfg, bucket, core, taps, dtype, weights)
    if graph == "decode":
        return decode(cfg, capacity, core, dtype, weights)
    if graph == "decode_batched":
        return decode_batched(cfg, batch, capacity, core)
    if graph == "decode_paged":
        return decode_paged(cfg, batch, capacity, core)
    if graph in CHUNK_GRAPHS:
        return continued(cfg, graph, bucket if graph == "prefill_chunked" else VERIFY_TOKENS, capacity, core)
    if graph == "prefill_embeddings":
        return prefill_embeddings(cfg, bucket, core)
    if graph == "moe_block":
        return moe_block(cfg, bucket, core, dtype, weights)
    raise ValueError(f"unknown graph kind '{graph}' (known: {', '.join(GRAPHS + SERVING + BLOCKS)})")


__all__ = ["COMPUTE_DTYPES", "WEIGHT_DTYPES", "Config", "ConfigError", "Rope", "Decoder", "emit", "GRAPHS", "SERVING",
           "BLOCKS", "DEFAULT_BUCKET", "DEFAULT_CAPACITY", "DEFAULT_BATCH"]
