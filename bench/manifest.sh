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
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/pg_ctl" ] || { echo "PostgreSQL is needed: apt-get install -y postgresql" >&2; exit 2; }
FILES=${BENCH_FILES:-10000}; SIZE=${BENCH_SIZE:-512}; RUNS=${BENCH_RUNS:-3}
bench_setup manifest 2048

PG="$W/pg"; mkdir -p "$PG"; chmod 755 "$W" "$PG"
AS=(); [ "$(id -u)" -eq 0 ] && { chown postgres "$PG"; AS=(runuser -u postgres --); }
head -c 24 /dev/urandom | base64 > "$W/pg.pass"; chmod 644 "$W/pg.pass"
"${AS[@]}" "$PGBIN/initdb" -D "$PG/data" -U sluice --pwfile "$W/pg.pass" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
PGPORT=$(free_port)
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/log" -w -o "-p $PGPORT -k $PG -c listen_addresses=127.0.0.1" start >/dev/null
trap '"${AS[@]}" "$PGBIN/pg_ctl" -D "$PG/data" -m fast -w stop >/dev/null 2>&1 || true; bench_cleanup' EXIT
PGVER=$("$PGBIN/postgres" --version)

mkdir -p "$W/drop" "$W/empty"
for i in $(seq 1 "$FILES"); do head -c "$SIZE" /dev/urandom > "$W/drop/f$i.csv"; done

# One fresh state, lake and (for PostgreSQL) database per run.
run_one() {  # $1 sqlite|postgres $2 run number; prints seconds
  local d="$W/run-$1-$2" manifest=""
  mkdir -p "$d"
  if [ "$1" = postgres ]; then
    PGPASSWORD=$(cat "$W/pg.pass") psql -h 127.0.0.1 -p "$PGPORT" -U sluice -d postgres -qAtc "CREATE DATABASE r$2" >/dev/null
    manifest=$'[manifest]\nurl = "postgresql://sluice@127.0.0.1:'"$PGPORT"'/r'"$2"$'"\npassword_file = "'"$W/pg.pass"$'"\ntls = "disable"'
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
