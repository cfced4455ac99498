#!/usr/bin/env bash
# Runs the side-by-side benchmark, with Lithops installed into the project's .venv if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -c "import lithops" 2>/dev/null || .venv/bin/pip install --quiet lithops
exec .venv/bin/python benchmarks/bench_map.py "$@"
