#!/usr/bin/env bash
# The one-command GPU check (one GPU, no network, under 10 minutes): see docs/benchmarks.md#gpu-check.
#   bash benchmarks/gpu_check.sh [--out DIR] [--workdir DIR] [--stages a,b] [--timeout STAGE=SECONDS] [--dry-run]
# PYTHON picks the interpreter (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
