"""archval's reference StableHLO emitter: one decoder core, families as flags."""
from .config import Config, ConfigError, Rope
from .stablehlo import COMPUTE_DTYPES, WEIGHT_DTYPES
from .decoder import Decoder, decode, moe_block, prefill

GRAPHS = ("prefill", "decode")  # every family's graphs
BLOCKS = ("moe_block",)         # block-level graphs, for families that have the block
DEFAULT_BUCKET = 16     # prefill length Lp
DEFAULT_CAPACITY = 32   # decode cache slots C


def emit(cfg: Config, graph: str = "prefill", bucket: int = DEFAULT_BUCKET, capacity: int = DEFAULT_CAPACITY,
         core: type[Decoder] = Decoder, taps: bool = False, dtype: str = "f32", weights: str = "f32") -> str:
    """The StableHLO text of one graph kind for a parsed config (taps: prefill's per-layer debug outputs; dtype:
    what its matmuls and activations compute in, f32 or bf16; weights: its weight arguments' type)."""
    if graph in GRAPHS:
        cfg.check_positions(bucket if graph == "prefill" else capacity, graph)
    if graph == "prefill":
        return prefill(cfg, bucket, core, taps, dtype, weights)
    if graph == "decode" and taps:
        raise ValueError("debug taps exist for the prefill graph only")
    if graph == "decode":
        return decode(cfg, capacity, core, dtype, weights)
    if graph == "moe_block":
        return moe_block(cfg, bucket, core, dtype, weights)
    raise ValueError(f"unknown graph kind '{graph}' (known: {', '.join(GRAPHS + BLOCKS)})")


__all__ = ["COMPUTE_DTYPES", "WEIGHT_DTYPES", "Config", "ConfigError", "Rope", "Decoder", "emit", "GRAPHS", "BLOCKS", "DEFAULT_BUCKET", "DEFAULT_CAPACITY"]
