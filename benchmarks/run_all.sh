#!/usr/bin/env bash
# Run every benchmark on SQLite and PostgreSQL (about 20 minutes on a 2-core machine) and write
# benchmarks/results/latest.md. Arguments go to `python -m benchmarks` (see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m benchmarks "$@"
