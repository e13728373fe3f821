#!/usr/bin/env bash
# archval gate: on first use (or when pyproject.toml changes) creates .venv and installs the
# project; then validates every family and prints one line each and RESULT: PASS|FAIL.
#   ./validate_arch.sh [--family NAME]... [--jobs N] [--emitter CMD] [--list]
#   ./validate_arch.sh --config PATH/config.json...   a published config, shrunk (docs/published-configs.md)
#   ./validate_arch.sh --shard I/N --reports DIR      shard I of N; then --merge DIR... (docs/sharding-and-ci.md)
#   ./validate_arch.sh --setup        only create/refresh .venv
# Exit: 0 all pass, 1 a family failed or errored (or a report could not be written), 2 usage or input
# error, 130 Ctrl-C (143 SIGTERM).
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
stamp="$venv/.archval-installed"

# The stamp is pyproject.toml's digest, taken with Python: no sha256sum on macOS.
digest() {
  "$1" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' pyproject.toml
}

# pip as the set-up runs it. PYTHONWARNINGS: setuptools' "Please be careful with folders in your working
# directory" note, which pip shows (it forwards build-backend warnings) for any editable install of folders
# mapped into a package, as pyproject.toml's package-dir maps harness/ to archval.harness on purpose.
pip_install() {
  PYTHONWARNINGS="ignore:Editable installation" "$venv/bin/python" -m pip install -q "$@"
}

bootstrap() {
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(digest "$venv/bin/python")" ]; then
    return 0
  fi
  local py=${PYTHON:-python3}
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: archval needs Python >= 3.11 as '$py' (set PYTHON=/path/to/python3.11)" >&2
    exit 2
  fi
  echo "archval: setting up $venv (first run or pyproject.toml changed)..." >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  pip_install --upgrade pip
  # torch first, pinned: with no torch present a looser spec pulls a multi-GB CUDA build.
  pip_install torch==2.13.0
  pip_install -e ".[torch-example]"  # the extra: examples/torch_emitter's torch-mlir, tested in the suite
  digest "$venv/bin/python" > "$stamp"
}

for arg in "$@"; do  # before the set-up: a usage error is said at once
  if [ "$arg" = "--setup" ] && [ "$#" -ne 1 ]; then
    echo "error: --setup only sets up .venv and takes no other option (got: $*)" >&2
    exit 2
  fi
done
bootstrap
if [ "${1:-}" = "--setup" ]; then
  exit 0
fi
exec "$venv/bin/python" -m archval "$@"
