#!/usr/bin/env bash
# Fails with a clear message when Go is missing or older than the control plane needs.
set -euo pipefail
command -v go >/dev/null || { echo "Go 1.26 or newer is needed to build the local control plane (https://go.dev/dl/)"; exit 1; }
v=$(go env GOVERSION | sed 's/^go//')
major=${v%%.*}; rest=${v#*.}; minor=${rest%%.*}
if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 26 ]; }; then
  echo "Go $v is too old: the control plane (Kubernetes 1.36) needs Go 1.26 or newer"; exit 1
fi
