#!/usr/bin/env bash
# The soak (README: Reliability): the real `sluice run` against a real sshd, moto, a drop folder
# and the upload API, files arriving all the time, faults injected at random instants, then
# every file checked to be stored exactly once and the lake audited. See scripts/soak.py.
#   bash scripts/soak.sh [MINUTES]         default 30, with a release build
# SLUICE_BIN picks another binary (CI: the debug build its tests made); SOAK_MAX_BYTES the
# largest file (default 200 MB); SOAK_SEED repeats a run's choices; SOAK_KEEP=1 keeps the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
if [ -z "${SLUICE_BIN:-}" ]; then
    swift build -c release --product sluice
    SLUICE_BIN="$(swift build -c release --show-bin-path)/sluice"
    export SLUICE_BIN
fi
exec python3 scripts/soak.py "${1:-30}"
