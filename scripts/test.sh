#!/usr/bin/env bash
# The test suite: set up what is missing (Docker engine included), then run every test.
# Two pytest-xdist workers (SPMD_TEST_WORKERS to change; 0 runs in this process): most
# tests wait on containers, so two at once use the 2 cores better. tests/conftest.py keeps
# each file, and each of the AWS and Slurm stacks, on one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -ra -n "${SPMD_TEST_WORKERS:-2}" --dist loadgroup "$@"
