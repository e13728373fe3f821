"""archval's harness: validates StableHLO emitters against Hugging Face oracles (README.md, docs/)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: fixtures/, oracles/ and reports/ beside harness/
# How a user runs archval, as replay lines, usage and summary.json say it: the checkout's wrapper, or the
# `archval` command (installed, or started as `archval` from a checkout's editable install).
COMMAND = ("./validate_arch.sh" if (ROOT / "validate_arch.sh").is_file() and Path(sys.argv[0]).name != "archval"
           else "archval")
