#!/usr/bin/env bash
# `make bench`: runs every benchmark, short versions by default; `--full` (make bench
# BENCH_FLAGS=--full) runs the long ones: the SFU forwarding benchmark, the placement benchmark
# on three real media nodes, and the scale benchmark on kwok-simulated Nodes (simulated day,
# operator cost).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=--quick
for arg in "$@"; do
  case "$arg" in
    --full) mode=--full ;;
    --quick) mode=--quick ;;
    *) echo "usage: scripts/bench.sh [--quick | --full]" >&2; exit 2 ;;
  esac
done
if [ "$mode" = --full ]; then bash scripts/bench-sfu.sh 30; else bash scripts/bench-sfu.sh; fi
bash scripts/bench-placement.sh "$mode"
bash scripts/bench-scale.sh "$mode"
