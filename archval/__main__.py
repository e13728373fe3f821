"""python -m archval: the gate (what validate_arch.sh runs; installed, the `archval` command)."""
import sys

from archval.harness.cli import main

sys.exit(main())
