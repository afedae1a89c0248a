#!/usr/bin/env bash
# Manifest commits: `sluice pull --no-transform` (release build) of BENCH_FILES (default 10000)
# small files (BENCH_SIZE bytes, default 512) from a drop folder into a new lake, with the
# manifest in SQLite and in PostgreSQL, alternating, BENCH_RUNS times (default 3); prints the
# medians. No target: the figure tells what the round trips to a database server cost.
# The PostgreSQL server is Debian's, started by this script on a free loopback port
# (initdb + pg_ctl, fsync and synchronous_commit on, as in production), password login over TCP.
#   bash bench/manifest.sh
# Env: BENCH_DIR (default /var/tmp), BENCH_FILES, BENCH_SIZE, BENCH_RUNS, BENCH_LOOP (0: no
# loop-mounted ext4 image as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
FILES=${BENCH_FILES:-10000}; SIZE=${BENCH_SIZE:-512}; RUNS=${BENCH_RUNS:-3}
bench_setup manifest 2048

start_postgres

mkdir -p "$W/drop" "$W/empty"
for i in $(seq 1 "$FILES"); do head -c "$SIZE" /dev/urandom > "$W/drop/f$i.csv"; done

# One fresh state, lake and (for PostgreSQL) database per run.
run_one() {  # $1 sqlite|postgres $2 run number; prints seconds
  local d="$W/run-$1-$2" manifest=""
  mkdir -p "$d"
  if [ "$1" = postgres ]; then
    manifest=$(pg_database "r$2")
  fi
  conf() {  # $1 the drop folder
    cat > "$d/agent.conf" <<CONF
[agent]
state_dir = "state"
lake_dir = "lake"
log_level = "warning"
$manifest
[clients.acme.sources.drop]
type = "folder"
path = "$1"
min_age = "0s"
CONF
  }
  # A first pull of an empty folder makes the tables: only the commits are timed.
  conf "$W/empty"; "$BIN" pull acme --no-transform --config "$d/agent.conf" >/dev/null
  conf "$W/drop"
  local s; s=$(timed "$BIN" pull acme --no-transform --config "$d/agent.conf")
  rm -rf "$d"
  echo "$s"
}

sq=(); pg=()
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS ..." >&2
  sq+=("$(run_one sqlite "$r")")
  pg+=("$(run_one postgres "$r")")
done
ms=$(printf '%s\n' "${sq[@]}" | median); mp=$(printf '%s\n' "${pg[@]}" | median)
printf '\n%s files of %s bytes, one pull each, median of %s (%s, loopback)\n' "$FILES" "$SIZE" "$RUNS" "$PGVER"
printf '%-12s %8.2f s  %8.0f files/s\n' "SQLite" "$ms" "$(calc "$FILES / $ms")"
printf '%-12s %8.2f s  %8.0f files/s  (%.2f x SQLite)\n' "PostgreSQL" "$mp" "$(calc "$FILES / $mp")" "$(calc "$mp / $ms")"
echo "runs: sqlite ${sq[*]}; postgres ${pg[*]}"
