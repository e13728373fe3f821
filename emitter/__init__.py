"""archval's reference StableHLO emitter: one decoder core, families as flags."""
from .config import Config, ConfigError, Rope
from .decoder import GRAPHS, prefill

DEFAULT_BUCKET = 16


def emit(cfg: Config, graph: str = "prefill", bucket: int = DEFAULT_BUCKET) -> str:
    """The StableHLO text of one graph kind for a parsed config."""
    return GRAPHS[graph](cfg, bucket)


__all__ = ["Config", "ConfigError", "Rope", "emit", "prefill", "GRAPHS", "DEFAULT_BUCKET"]
