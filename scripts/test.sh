#!/usr/bin/env bash
# Installs what the tests need (if missing), builds libssh2 (once) and runs libssh2's own tests
# on the patched build, then Sluice's whole test suite: once with the manifests in SQLite, once
# with every agent's manifest in PostgreSQL; then every fuzz harness for 30 s on its committed
# seeds (scripts/fuzz.sh), and a 2-minute soak of the agent under faults (scripts/soak.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
check_libssh2
swift build --build-tests
swift test --skip-build
# The whole suite again, every test agent's manifest on PostgreSQL (a server the tests start).
SLUICE_TEST_MANIFEST=postgres swift test --skip-build
# Every fuzz harness for 30 s, with the address sanitizer (README: Reliability).
bash scripts/fuzz.sh all 30
# A 2-minute soak with faults, on the debug build the tests used (README: Reliability).
SLUICE_BIN="$(swift build --show-bin-path)/sluice" SOAK_MAX_BYTES=20000000 bash scripts/soak.sh 2
