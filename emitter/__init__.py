"""archval's reference StableHLO emitter: one decoder core, families as flags."""
from .config import Config, ConfigError, Rope
from .decoder import Decoder, decode, prefill

GRAPHS = ("prefill", "decode")
DEFAULT_BUCKET = 16     # prefill length Lp
DEFAULT_CAPACITY = 32   # decode cache slots C


def emit(cfg: Config, graph: str = "prefill", bucket: int = DEFAULT_BUCKET, capacity: int = DEFAULT_CAPACITY,
         core: type[Decoder] = Decoder, taps: bool = False) -> str:
    """The StableHLO text of one graph kind for a parsed config (taps: prefill's per-layer debug outputs)."""
    if graph == "prefill":
        return prefill(cfg, bucket, core, taps)
    if graph == "decode" and taps:
        raise ValueError("debug taps exist for the prefill graph only")
    if graph == "decode":
        return decode(cfg, capacity, core)
    raise ValueError(f"unknown graph kind '{graph}' (known: {', '.join(GRAPHS)})")


__all__ = ["Config", "ConfigError", "Rope", "Decoder", "emit", "GRAPHS", "DEFAULT_BUCKET", "DEFAULT_CAPACITY"]
