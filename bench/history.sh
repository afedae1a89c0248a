#!/usr/bin/env bash
# Sluice's cost as the history grows: the console, /status, /metrics, `sluice status`,
# `sluice history`, an unchanged pull, the daemon's memory, `sluice audit --quick` and the
# manifest's size, each at every size given (versions in the whole manifest; default 100,000,
# 1,000,000 and 10,000,000). How each manifest and lake is built: bench/history.py.
#   bash bench/history.sh [SIZE …]
# Env: BENCH_MANIFEST=postgres (the manifest in PostgreSQL, on a server this script starts),
#      BENCH_DAYS (365), BENCH_POLLS (runs a day per filler client, 24), BENCH_REQUESTS (7),
#      BENCH_LAKE=0 (no lake files: audit then reports every version missing), BENCH_JSON=FILE,
#      BENCH_DIR, BENCH_LOOP, SLUICE_BIN (as in bench/bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000 10000000)
total=0; for n in "${SIZES[@]}"; do total=$((total + n)); done
# Small and sparse files: the image needs inodes more than blocks (and room for the manifests).
inodes=$((total + ${#SIZES[@]} * 250000 + 100000))
bench_setup history $((8192 + total / 500)) "$inodes"
PGARGS=()
if [ "${BENCH_MANIFEST:-sqlite}" = postgres ]; then
  start_postgres
  PGARGS=(--postgres "postgresql://sluice@127.0.0.1:$PGPORT/postgres" "$W/pg.pass")
  echo "manifest: $PGVER" >&2
else
  echo "manifest: SQLite $(python3 -c 'import sqlite3; print(sqlite3.sqlite_version)') (Python's, for the inserts)" >&2
fi
echo "file system: $(df -T "$W" | awk 'NR==2 {print $1, $2}')${LOOP:+ (fresh loop-mounted image, $inodes inodes)}" >&2
python3 bench/history.py "$BIN" "$W" "${SIZES[@]}" "${PGARGS[@]}"
