#!/usr/bin/env bash
# Install Debian's prometheus package for the chart's alert tests (tests/chart/test_chart_alerts.py):
# promtool checks the PrometheusRule's rules and runs their unit tests with Prometheus's own engine.
# Only when promtool is missing; needs root (or sudo). The package's service is not started.
set -euo pipefail

if command -v promtool >/dev/null; then
    echo "promtool $(promtool --version 2>&1 | awk 'NR==1 {print $3}') already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-prometheus: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "installed $(promtool --version 2>&1 | head -1)"
