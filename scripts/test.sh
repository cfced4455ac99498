#!/usr/bin/env bash
# The test suite: set up what is missing (Docker engine included), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -ra "$@"
