#!/usr/bin/env bash
# Runs spmd beside its peers in one run and writes the table into benchmarks/README.md.
#   benchmarks/run.sh            medians of 3, full sizes (run it on a quiet machine)
#   benchmarks/run.sh --smoke    1 repetition, a quarter of the sizes (a check only)
# The peers (Dask, Lithops) and numpy are installed from their packages into a venv of the
# benchmark's own, benchmarks/.venv, with spmd itself (editable): never into the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh          # the Docker engine and the base image spmd's local backend needs
venv=benchmarks/.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import dask.distributed, lithops, numpy, spmd" 2>/dev/null || \
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r benchmarks/requirements.txt -e .
exec "$venv/bin/python" benchmarks/bench.py --readme benchmarks/README.md "$@"
