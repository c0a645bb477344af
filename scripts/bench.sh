#!/usr/bin/env bash
# `make bench`: runs every benchmark. Today that is the SFU forwarding benchmark; the
# placement and scale benchmarks join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bench-sfu.sh "$@"
