#!/usr/bin/env bash
# Install Debian's prometheus package for the chart's alert tests (tests/chart/test_chart_monitoring.py)
# and the live-server ones: promtool checks the rules and runs their unit tests with Prometheus's own
# engine, and a real Prometheus scrapes a real server. Only when missing; needs root (or sudo). The
# package's service is not started.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    echo "promtool $(promtool --version 2>&1 | awk 'NR==1 {print $3}') already installed"
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" install-prometheus prometheus
echo "installed $(promtool --version 2>&1 | head -1)"
