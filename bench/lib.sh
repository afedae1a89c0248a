# Sourced by bench/sftp.sh, bench/s3.sh, bench/archive.sh and bench/transform.sh: the release build, a work folder (as root on a fresh
# loop-mounted ext4 image: ext4 on a busy disk slows inode allocation after mass deletions and
# makes runs incomparable), cleanup of it and of the server the script starts, and small helpers.
#   bench_setup NAME IMAGE_MB [INODES]   sets BIN, W and LOOP; the script sets SERVER_PID once it starts one.
bench_setup() {
  . scripts/deps.sh && build_libssh2 >&2  # libssh2 1.11 (patched), once
  if [ -n "${SLUICE_BIN:-}" ]; then BIN="$SLUICE_BIN"; else
    swift build -c release --product sluice >/dev/null
    BIN="$(swift build -c release --show-bin-path)/sluice"
  fi
  W="$(mktemp -d "${BENCH_DIR:-/var/tmp}/sluice-$1-bench.XXXXXX")"
  LOOP=""
  if [ "$(id -u)" -eq 0 ] && [ "${BENCH_LOOP:-1}" = 1 ] && command -v mkfs.ext4 >/dev/null; then
    truncate -s "$2M" "$W.img" && mkfs.ext4 -q -F ${3:+-N "$3"} "$W.img" && mount -o loop "$W.img" "$W" && LOOP=1
  fi
  SERVER_PID=""
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  if [ -n "$LOOP" ]; then umount "$W"; rm -f "$W.img"; fi
  rm -rf "$W"
}

# Waits until something listens on 127.0.0.1:$1 (10 s at most).
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
calc() { python3 -c "print($*)"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# CPU seconds (user + system) the server the script started ($SERVER_PID) has used so far.
server_cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$SERVER_PID/stat"; }
# CPU seconds the server has used since server_cpu printed $1.
server_cpu_since() { calc "round($(server_cpu) - $1, 2)"; }

# Times a command (its output discarded) in seconds.
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); calc "$t1 - $t0"; }

# Runs the big and the small case RUNS times, Sluice and the reference tool alternating, and
# prints medians, their ratios and every run. The script defines run_sluice ARGS… (prints
# "seconds peak_rss_kib") and run_ref ARGS… (prints seconds), and sets the arrays SLUICE_BIG,
# REF_BIG, SLUICE_SMALL and REF_SMALL (each case's arguments).
#   bench_compare REF_NAME BIG_LABEL SMALL_LABEL BIG_TARGET SMALL_TARGET RSS_TARGET
bench_compare() {
  local big_s=() big_rss=() big_ref=() small_s=() small_ref=() s rss r
  for r in $(seq "$RUNS"); do
    echo "run $r/$RUNS ..." >&2
    read -r s rss < <(run_sluice "${SLUICE_BIG[@]}"); big_s+=("$s"); big_rss+=("$rss")
    big_ref+=("$(run_ref "${REF_BIG[@]}")")
    read -r s _ < <(run_sluice "${SLUICE_SMALL[@]}"); small_s+=("$s")
    small_ref+=("$(run_ref "${REF_SMALL[@]}")")
  done
  local bs br ss sr
  bs=$(printf '%s\n' "${big_s[@]}" | median); br=$(printf '%s\n' "${big_ref[@]}" | median)
  ss=$(printf '%s\n' "${small_s[@]}" | median); sr=$(printf '%s\n' "${small_ref[@]}" | median)
  rss=$(printf '%s\n' "${big_rss[@]}" | sort -n | tail -1)
  printf '\n%-30s %18s %26s %7s %s\n' "case (median of $RUNS)" "sluice pull" "$1" "ratio" "target"
  printf '%-30s %16.2f s %24.2f s %7.2f %s\n' "$2" "$bs" "$br" "$(calc "$bs / $br")" "$4"
  printf '%-30s %16.2f s %24.2f s %7.2f %s\n' "$3" "$ss" "$sr" "$(calc "$ss / $sr")" "$5"
  printf '%-30s %14d MiB %26s %7s %s\n' "peak RSS, $2" "$((rss / 1024))" "" "" "$6"
  echo "all runs: big sluice ${big_s[*]} | ref ${big_ref[*]}; small sluice ${small_s[*]} | ref ${small_ref[*]}" >&2
}

# One `sluice pull bench` of the config in folder $1: prints seconds and peak RSS (KiB), and
# fails the benchmark when nothing was stored.
timed_pull() {
  local t0 t1 rss
  sync
  t0=$(now)
  rss=$(/usr/bin/env time -f "%M" "$BIN" pull bench --config "$1/agent.conf" --log-level error 2>&1 >/dev/null | tail -1)
  t1=$(now)
  [ "$(find "$1/lake/raw" -type f | wc -l)" -ge 1 ] || { echo "sluice stored nothing" >&2; exit 1; }
  echo "$(calc "$t1 - $t0") $rss"
}

# Writes folder $1's agent.conf (client "bench", one drop folder $1/drop) and a mapping of the
# generated CSVs' six columns (id, created_at, amount, name, active, qty) as dataset $3 whose
# match glob is $2.
bench_client() {
  mkdir -p "$1/drop" "$1/mappings"
  printf '[agent]\nstate_dir = "state"\nlake_dir = "lake"\nmappings_dir = "mappings"\n[clients.bench.sources.drop]\ntype = "folder"\npath = "drop"\nmin_age = "0s"\n' > "$1/agent.conf"
  cat > "$1/mappings/bench.toml" <<MAP
[datasets.$3]
match = ["$2"]
format = "csv"
fields = [
  { name = "id", source = "id", type = "int64", required = true },
  { name = "created_at", source = "created_at", type = "timestamp" },
  { name = "amount", source = "amount", type = "decimal(12,2)" },
  { name = "name", source = "name", type = "string" },
  { name = "active", source = "active", type = "bool" },
  { name = "qty", source = "qty", type = "int64" },
]
MAP
}

# Prints "seconds peak_rss_kib" for one `sluice pull bench` of the config $1 (the binary $BIN).
pull_timed() {
  python3 - "$BIN" "$1" <<'PY'
import resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run([sys.argv[1], "pull", "bench", "--config", sys.argv[2], "--log-level", "error"], stdout=subprocess.DEVNULL)
t = time.perf_counter() - t0
if p.returncode != 0: sys.exit(f"sluice pull failed with {p.returncode}")
print(f"{t:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
PY
}

# Starts Debian's PostgreSQL on a free loopback port in $W/pg (initdb + pg_ctl, fsync and
# synchronous_commit on, as in production; password login over TCP as role sluice, the
# password in $W/pg.pass) and stops it with the benchmark. Sets PGPORT and PGVER.
start_postgres() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PGBIN/pg_ctl" ] || { echo "PostgreSQL is needed: apt-get install -y postgresql" >&2; exit 2; }
  PG="$W/pg"; mkdir -p "$PG"; chmod 755 "$W" "$PG"
  AS=(); [ "$(id -u)" -eq 0 ] && { chown postgres "$PG"; AS=(runuser -u postgres --); }
  head -c 24 /dev/urandom | base64 > "$W/pg.pass"; chmod 644 "$W/pg.pass"
  "${AS[@]}" "$PGBIN/initdb" -D "$PG/data" -U sluice --pwfile "$W/pg.pass" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
  PGPORT=$(free_port)
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/log" -w -o "-p $PGPORT -k $PG -c listen_addresses=127.0.0.1" start >/dev/null
  trap '"${AS[@]}" "$PGBIN/pg_ctl" -D "$PG/data" -m fast -w -t 600 stop >/dev/null 2>&1 || true; bench_cleanup' EXIT
  PGVER=$("$PGBIN/postgres" --version)
}

# Creates database $1 on that server and prints its [manifest] table.
pg_database() {
  PGPASSWORD=$(cat "$W/pg.pass") psql -h 127.0.0.1 -p "$PGPORT" -U sluice -d postgres -qAtc "CREATE DATABASE $1" >/dev/null
  printf '[manifest]\nurl = "postgresql://sluice@127.0.0.1:%s/%s"\npassword_file = "%s"\ntls = "disable"\n' "$PGPORT" "$1" "$W/pg.pass"
}

# Runs SQL on database $1 of that server; prints the rows (| between columns).
pg_query() { PGPASSWORD=$(cat "$W/pg.pass") psql -h 127.0.0.1 -p "$PGPORT" -U sluice -d "$1" -qAtc "$2"; }

# Starts moto's S3 server on a free loopback port (the benchmark's server: SERVER_PID), with
# credentials bench/bench in $W/credentials and in the environment. Sets PORT and EP.
start_moto() {
  PORT=$(free_port)
  EP="http://127.0.0.1:$PORT"
  python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$W/moto.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT"
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
  printf '[default]\naws_access_key_id = bench\naws_secret_access_key = bench\n' > "$W/credentials"
}
