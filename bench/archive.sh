#!/usr/bin/env bash
# Archive benchmark (release build): a zip of BENCH_FILES (default 2,000) small CSVs, as a
# client sends a month of daily exports in one file, to ZSTD Parquet.
#   Sluice:  `sluice pull` of the zip from a drop folder (ingest: copy, SHA-256, fsync, commit;
#            then every member transformed on its own into its own Parquet file).
#   Reference, in the same run: `unzip -q` into a folder, timed, plus DuckDB single-threaded
#            over the extracted folder (read_csv('…/*.csv', columns={…}) → COPY … (FORMAT
#            parquet, COMPRESSION zstd)), timed; the ratio is Sluice / (unzip + DuckDB).
# Each is run BENCH_RUNS times (default 5), alternating; the median of the paired ratios and
# the best of each are printed, with Sluice's peak RSS.
#   bash bench/archive.sh
# Env: BENCH_DIR (default /var/tmp), BENCH_FILES, BENCH_ROWS_PER_FILE (default 400), BENCH_RUNS,
#      BENCH_LOOP, SLUICE_BIN (as in bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
# As root, on a fresh loop-mounted ext4 image (BENCH_LOOP=0: the disk as it is).
bench_setup archive 3072
FILES="${BENCH_FILES:-2000}"
PER="${BENCH_ROWS_PER_FILE:-400}"
RUNS="${BENCH_RUNS:-5}"

echo "generating $FILES CSVs of $PER rows in $W ..." >&2
python3 - "$W/src" "$FILES" "$PER" <<'PY'
import os, random, sys, datetime
out, files, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
words = ["alpha", "beta", "Smith, John", "O'Neil", "Müller, Anna", "widget"]
base = datetime.datetime(2026, 1, 1)
for f in range(files):
    day = (base + datetime.timedelta(days=f % 28)).strftime("%Y-%m-%d")
    os.makedirs(f"{out}/{day}", exist_ok=True)
    with open(f"{out}/{day}/orders_{f:05d}.csv", "w") as h:
        h.write("id,created_at,amount,name,active,qty\n")
        for i in range(per):
            ts = base + datetime.timedelta(seconds=rnd.randrange(0, 30000000))
            w = rnd.choice(words)
            name = f'"{w}"' if "," in w else w
            h.write(f"{f * per + i + 1},{ts.strftime('%Y-%m-%dT%H:%M:%S')},{rnd.randrange(-1000000, 10000000) / 100:.2f},{name},"
                    f"{'true' if rnd.random() < 0.5 else 'false'},{rnd.randrange(0, 100000)}\n")
PY
(cd "$W/src" && zip -q -r "$W/batch.zip" .)
MB=$(( $(du -sb "$W/src" | cut -f1) / 1000000 ))
ZMB=$(( $(stat -c %s "$W/batch.zip") / 1000000 ))
echo "$FILES CSVs, $MB MB, zipped to $ZMB MB; file system: $(df -T "$W" | awk 'NR==2 {print $1, $2}')${LOOP:+ (fresh loop-mounted image)}" >&2

# Every run gets fresh folders and nothing is deleted until the end: on ext4 without a journal
# (this machine's disk), a file created within minutes of many deletions in the same block
# group waits while the allocator skips the recently deleted inodes, which would time the
# previous run's clean-up rather than either tool.
setup() {
  bench_client "$1" "**/orders_*.csv" orders
  ln "$W/batch.zip" "$1/drop/batch.zip" 2>/dev/null || cp "$W/batch.zip" "$1/drop/batch.zip"
}

sluice_run() {
  setup "$W/run$1"
  pull_timed "$W/run$1/agent.conf"
}

# Prints "unzip_seconds duckdb_seconds".
reference_run() {
  python3 - "$W/batch.zip" "$W/unzipped$1" "$W/duck$1.parquet" <<'PY'
import duckdb, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(["unzip", "-q", sys.argv[1], "-d", sys.argv[2]], check=True)
t1 = time.perf_counter()
con = duckdb.connect()
con.execute("SET threads=1")
t2 = time.perf_counter()
con.execute(f"""COPY (SELECT * FROM read_csv('{sys.argv[2]}/*/*.csv', header=true, columns={{'id':'BIGINT','created_at':'TIMESTAMP',
  'amount':'DECIMAL(12,2)','name':'VARCHAR','active':'BOOLEAN','qty':'BIGINT'}})) TO '{sys.argv[3]}' (FORMAT parquet, COMPRESSION zstd)""")
print(f"{t1 - t0:.3f} {time.perf_counter() - t2:.3f}")
PY
}

cat "$W/batch.zip" > /dev/null
s_best=999999; r_best=999999; rss=0; ratios=""
for r in $(seq "$RUNS"); do
  read -r s m < <(sluice_run "$r")
  read -r u d < <(reference_run "$r")
  ref=$(python3 -c "print(f'{$u + $d:.3f}')")
  echo "run $r: sluice ${s}s (RSS ${m} KiB); unzip ${u}s + duckdb ${d}s = ${ref}s; ratio $(python3 -c "print(f'{$s / $ref:.2f}')")" >&2
  s_best=$(python3 -c "print(min($s_best, $s))"); r_best=$(python3 -c "print(min($r_best, $ref))"); rss=$((m > rss ? m : rss))
  ratios="$ratios $(python3 -c "print($s / $ref)")"
done
median=$(python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" $ratios)

# The outputs agree: every member's rows, read by DuckDB from Sluice's files and the reference's.
python3 - "$W/run1/lake/processed/bench/orders" "$W/duck1.parquet" "$FILES" <<'PY'
import duckdb, glob, sys
con = duckdb.connect()
q = "SELECT count(*), sum(amount), sum(qty), sum(active::INT), count(DISTINCT id) FROM read_parquet('{}')"
a = con.execute(q.format(sys.argv[1] + "/**/*.parquet")).fetchone(); b = con.execute(q.format(sys.argv[2])).fetchone()
n = len(glob.glob(sys.argv[1] + "/**/*.parquet", recursive=True))
ok = a == b and n == int(sys.argv[3])
print(f"outputs agree: {ok} ({n} Parquet files)", file=sys.stderr)
if not ok: sys.exit(f"outputs differ: {a} vs {b}, {n} files")
PY

printf '\n%-50s %12s %14s %8s %s\n' "measure" "sluice" "unzip+duckdb" "ratio" "target"
printf '%-50s %11.2fs %13.2fs %8.2f %s\n' "zip of ${FILES} CSVs (${MB} MB, ${ZMB} MB zipped) → Parquet" "$s_best" "$r_best" \
  "$(python3 -c "print($s_best / $r_best)")" "<= 1.0 x (best vs best; sluice = ingest + transform)"
printf '%-50s %12s %14s %8.2f %s\n' "  the same, median of the ${RUNS} paired runs" "" "" "$median" "<= 1.0 x"
printf '%-50s %9d MiB\n' "peak RSS" "$((rss / 1024))"
