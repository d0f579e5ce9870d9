#!/usr/bin/env bash
# Install Debian's headless browser for the browser test (tests/e2e/test_browser.py):
# chromium and the matching chromium-driver, only when one is missing. Needs root (or sudo).
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "chromium $(chromium --version 2>/dev/null | awk '{print $2}') and chromedriver already installed"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" install-browser chromium chromium-driver fonts-liberation
echo "installed $(chromium --version) and $(chromedriver --version | cut -d' ' -f1-2)"
