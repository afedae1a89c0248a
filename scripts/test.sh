#!/usr/bin/env bash
# Installs what the tests need (if missing) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
swift build --build-tests
swift test --skip-build
