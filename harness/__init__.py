"""archval's harness: validates StableHLO emitters against Hugging Face oracles (README.md, docs/)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: fixtures/, oracles/ and reports/ beside harness/
