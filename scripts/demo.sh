#!/usr/bin/env bash
# The demo: set up what is missing, then map a numpy function over inputs in local containers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python examples/quickstart.py "$@"
