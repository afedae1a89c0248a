#!/usr/bin/env bash
# Installs what the tests need (if missing), builds libssh2 (once) and runs libssh2's own tests
# on the patched build, then Sluice's whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
check_libssh2
swift build --build-tests
swift test --skip-build
