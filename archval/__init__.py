"""archval: differential validation of StableHLO emitters of decoder-only LLM families against Hugging Face.

One import namespace over the project's top-level folders, so that no generic name (harness, emitter,
oracles, fixtures) reaches an environment archval is installed into: archval.harness, archval.emitter,
archval.oracles and archval.fixtures. A wheel installs them inside this package (pyproject.toml,
package-dir); in a checkout they stay beside it, and this package's search path takes them from there.
"""
from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "harness").is_dir():  # a checkout: harness/, emitter/, oracles/, fixtures/ are siblings
    __path__.append(str(_here.parent))
