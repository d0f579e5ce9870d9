#!/usr/bin/env bash
# Install Debian's headless browser for the browser test (tests/e2e/test_browser.py):
# chromium and the matching chromium-driver, only when one is missing. Needs root (or sudo).
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "chromium $(chromium --version 2>/dev/null | awk '{print $2}') and chromedriver already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-browser: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation >/dev/null
echo "installed $(chromium --version) and $(chromedriver --version | cut -d' ' -f1-2)"
