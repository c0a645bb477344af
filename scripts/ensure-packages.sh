#!/usr/bin/env bash
# Installs the Debian packages Conclave's tests and demo use, when missing, then the npm
# packages of the browser tests. `ensure-packages.sh bench` adds what only the benchmarks use
# (janus, the SFU the forwarding benchmark compares against).
set -euo pipefail
# runc, the CNI plugins and nftables (kube-proxy) serve the local cluster's real nodes.
# libnss3-tools (certutil) makes Chromium trust the TLS tests' certificate authority.
want=(coturn chromium libnss3-tools iproute2 runc containernetworking-plugins nftables)
[ "${1:-}" = bench ] && want+=(janus)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm may come from Debian or from another source: only their commands matter.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exec bash "$(dirname "$0")/ensure-npm.sh"
fi
echo "installing Debian packages: ${missing[*]}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# coturn's and janus's packages start system services (TURN on 3478, Janus on 8088/8188);
# tests and benchmarks run their own.
for service in coturn janus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    $sudo systemctl disable --now "$service" || true
  fi
done
exec bash "$(dirname "$0")/ensure-npm.sh"
