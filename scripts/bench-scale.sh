#!/usr/bin/env bash
# Scale benchmark on kwok-simulated Nodes (tests/src/bin/conclave-scale.rs): the simulated day
# replayed on the operator's decisions alone (a second, no cluster), the same day against the
# operator on a control plane, then the operator's cost with many media nodes. Release
# builds of the operator and the benchmark; results under docs/benchmarks/scale-*.
# Usage: scripts/bench-scale.sh [--quick | --full] [more conclave-scale flags]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p conclave-operator -p conclave-testenv --bin conclave-operator --bin conclave-scale
echo "load average before the scale benchmark: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/conclave-scale "$@"
