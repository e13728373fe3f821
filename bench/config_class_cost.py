"""What typing a config by its transformers config class costs a process that has not imported torch: reading
the class from its source (oracles/config_class.py, ast) against importing it (transformers' CONFIG_MAPPING, whose
import brings torch in). Each way in a fresh process, REPEATS times; prints the fastest of each.

    .venv/bin/python bench/config_class_cost.py [MODEL_TYPE]        (default: cohere2_moe)
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3
WAYS = {
    "read by ast (oracles/config_class.py)": "from archval.oracles.config_class import config_class; "
                                             "c = config_class({t!r}); import sys; assert 'torch' not in sys.modules",
    "imported (transformers' CONFIG_MAPPING)": "from transformers.models.auto.configuration_auto import CONFIG_MAPPING; "
                                               "import dataclasses; dataclasses.fields(CONFIG_MAPPING[{t!r}])",
}


def main(argv: list[str]) -> int:
    model_type = argv[0] if argv else "cohere2_moe"
    for way, code in WAYS.items():
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code.format(t=model_type)], cwd=ROOT, check=True)
            times.append(time.perf_counter() - start)
        print(f"{way:<42} {min(times):6.2f} s (fastest of {REPEATS}, a whole python process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
