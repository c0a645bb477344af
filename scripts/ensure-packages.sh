#!/usr/bin/env bash
# Installs the Debian packages Conclave's tests and demo use, when missing, then the npm
# packages of the browser tests.
set -euo pipefail
want=(coturn chromium iproute2)
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
# coturn's package starts a system TURN server on 3478; tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  $sudo systemctl disable --now coturn || true
fi
exec bash "$(dirname "$0")/ensure-npm.sh"
