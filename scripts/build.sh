#!/usr/bin/env bash
# Builds sluice in release mode (installing what the build needs, libssh2 included):
#   bash scripts/build.sh            → .build/release/sluice
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
swift build -c release --product sluice
echo "$(swift build -c release --show-bin-path)/sluice"
