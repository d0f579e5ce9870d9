#!/usr/bin/env bash
# Install Debian packages without recommends: `bash .ci/apt-install.sh WHO PACKAGE...` (WHO names the
# caller in errors). Needs root, or sudo. Callers check first whether what they need is there.
set -euo pipefail

who="$1"
shift
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "$who: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
