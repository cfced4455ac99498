#!/usr/bin/env bash
# The test suite: set up what is missing (Docker engine included), then run every test.
# Two pytest-xdist workers (SPMD_TEST_WORKERS to change; 0 runs in this process): most
# tests wait on containers, so two at once use the 2 cores better. tests/conftest.py keeps
# each file, and each of the AWS and Slurm stacks, on one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The layers of the package (.importlinter): no import circle in the core, no backend in it.
.venv/bin/lint-imports --no-cache --no-logo
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest -ra -n "${SPMD_TEST_WORKERS:-2}" --dist loadgroup "$@"
fi
# The private Slurm runs alone, after the rest: with both cores loaded its slurmd now and
# then fails a job's launch on a cgroup race and drains the node, and every later job waits.
# Its second worker runs only the walltime test (a cluster of its own, mostly idle).
status=0
.venv/bin/python -m pytest -ra --durations=15 -n "${SPMD_TEST_WORKERS:-2}" --dist loadgroup --ignore=tests/slurm || status=$?
.venv/bin/python -m pytest -ra --durations=15 -n 2 --dist loadgroup tests/slurm || status=$?
exit $status
