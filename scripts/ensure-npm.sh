#!/usr/bin/env bash
# Installs the npm packages of the browser tests (tests/browser: axe-core, and playwright-core, which drives
# Debian's chromium; no browser is downloaded) from the committed package-lock.json, when
# missing or older than the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ]; then
  exit 0
fi
echo "installing npm packages of tests/browser (npm ci)"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
