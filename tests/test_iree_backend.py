"""The compile cache: keyed by content, hit on the second compile, a corrupt entry detected and rebuilt."""
import numpy as np

from archval.harness.backends import iree
from archval.harness.core.graph import parse_signature

DOUBLE = """module @double {
  func.func public @main(%x: tensor<4xf32> loc("x")) -> (tensor<4xf32>) {
    %0 = stablehlo.add %x, %x : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"""


def run(vmfb):
    main = parse_signature(DOUBLE).functions["main"]
    (out,) = iree.IreeModule(main, vmfb, "double", cache_hit=False).call({}, {"x": np.arange(4, dtype=np.float32)})
    return out


def test_cache_hits_and_rebuilds_a_corrupt_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path))
    vmfb, hit = iree.compile_text(DOUBLE)
    assert not hit and run(vmfb).tolist() == [0, 2, 4, 6]
    assert iree.compile_text(DOUBLE)[1]
    (entry,) = tmp_path.glob("*.vmfb")
    entry.write_bytes(entry.read_bytes()[: len(vmfb) // 2])  # a torn write
    rebuilt, hit = iree.compile_text(DOUBLE)
    assert not hit and rebuilt == vmfb and run(rebuilt).tolist() == [0, 2, 4, 6]
    assert iree.cache_key(DOUBLE) != iree.cache_key(DOUBLE.replace("add", "multiply"))
