#!/usr/bin/env bash
# A wrapper emitter ending with `trap 'kill 0' EXIT`: when it exits, SIGTERM to its whole process group.
# usage: trap_kill0.sh PYTHON --config C --graph KIND --out FILE
trap 'kill 0' EXIT
py=$1
shift
"$py" -m archval.emitter "$@"
