"""archval's harness: validates StableHLO emitters against Hugging Face oracles (README.md, docs/)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: fixtures/, oracles/ and reports/ beside harness/
# How a user runs archval, as replay lines, usage and summary.json say it: the checkout's wrapper, or the
# command an installed archval gives.
COMMAND = "./validate_arch.sh" if (ROOT / "validate_arch.sh").is_file() else "archval"
