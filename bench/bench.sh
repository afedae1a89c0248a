#!/usr/bin/env bash
# Sluice benchmark (release build). Prints a table: what, Sluice, reference tool, ratio, target.
#   bash bench/bench.sh            # everything, in a temp dir under $BENCH_DIR (default /var/tmp)
# Env: BENCH_DIR (where to build the data; same file system as a real lake is best),
#      BENCH_FILES (default 10000), BENCH_AUDIT_MB (default 768).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh && build_libssh2 >&2  # libssh2 1.11 (patched), once
# SLUICE_BIN runs another build of sluice (an older one, to compare) instead of this checkout's.
if [ -n "${SLUICE_BIN:-}" ]; then BIN="$SLUICE_BIN"; else
  swift build -c release --product sluice >/dev/null
  BIN="$(swift build -c release --show-bin-path)/sluice"
fi
BASE="${BENCH_DIR:-/var/tmp}"
W="$(mktemp -d "$BASE/sluice-bench.XXXXXX")"
# ext4 slows inode allocation right after mass deletions (it avoids reusing recently deleted
# inodes), so on a busy disk figures swing several-fold between runs. As root, measure on a
# fresh ext4 file system in a loop-mounted image instead (BENCH_LOOP=0 to skip).
LOOP=""
if [ "$(id -u)" -eq 0 ] && [ "${BENCH_LOOP:-1}" = 1 ] && command -v mkfs.ext4 >/dev/null; then
  truncate -s 4G "$W.img" && mkfs.ext4 -q -F "$W.img" && mount -o loop "$W.img" "$W" && LOOP=1
fi
cleanup() { if [ -n "$LOOP" ]; then umount "$W"; rm -f "$W.img"; fi; rm -rf "$W"; }
trap cleanup EXIT
FILES="${BENCH_FILES:-10000}"
AUDIT_MB="${BENCH_AUDIT_MB:-768}"

now() { date +%s.%N; }
calc() { python3 -c "print($*)"; }
conf() { # $1 = dir, $2 = drop folder
  cat > "$1/agent.conf" <<CONF
[agent]
state_dir = "state"
lake_dir = "lake"
[clients.bench.sources.drop]
type = "folder"
path = "$2"
min_age = "0s"
CONF
}

echo "file system: $(df -T "$W" | awk 'NR==2 {print $1, $2}')${LOOP:+ (fresh loop-mounted image)}" >&2
echo "preparing $FILES x 4 KiB files and ${AUDIT_MB} MB for the audit in $W ..." >&2
mkdir -p "$W/ingest/drop"
python3 - "$W/ingest/drop" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.csv"), "wb") as f:
        f.write(os.urandom(4096))
PY
conf "$W/ingest" "drop"
sync
t0=$(now); "$BIN" pull bench --config "$W/ingest/agent.conf" --log-level error >/dev/null; t1=$(now)
ingest_s=$(calc "$t1 - $t0")

# References on the same files: cp -r (no fsync at all), and a copy that fsyncs every file.
t0=$(now); cp -r "$W/ingest/drop" "$W/ingest/cp-copy"; t1=$(now)
cp_s=$(calc "$t1 - $t0")
fsync_s=$(python3 - "$W/ingest/drop" "$W/ingest/fsync-copy" <<'PY'
import os, sys, time
src, dst = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
for d, _, files in os.walk(src):
    out = os.path.join(dst, os.path.relpath(d, src))
    os.makedirs(out, exist_ok=True)
    for f in files:
        with open(os.path.join(d, f), "rb") as i, open(os.path.join(out, f), "wb") as o:
            o.write(i.read()); o.flush(); os.fsync(o.fileno())
print(time.perf_counter() - t0)
PY
)

mkdir -p "$W/audit/drop"
python3 - "$W/audit/drop" "$AUDIT_MB" <<'PY'
import os, sys
root, mb = sys.argv[1], int(sys.argv[2])
chunk = os.urandom(1 << 20)
n = mb // 8
for i in range(n):
    with open(os.path.join(root, f"big{i:03d}.bin"), "wb") as f:
        for k in range(8):
            f.write(chunk[k:] + chunk[:k])
PY
conf "$W/audit" "drop"
"$BIN" pull bench --config "$W/audit/agent.conf" --log-level error >/dev/null
LAKE_FILES=$(find "$W/audit/lake/raw" -type f | sort)
bytes=$(cat $LAKE_FILES | wc -c)
# Warm the page cache for both tools, then time each twice and keep the best.
cat $LAKE_FILES > /dev/null
best() { sort -n | head -1; }
ossl=$(for r in 1 2; do t0=$(now); openssl dgst -sha256 $LAKE_FILES >/dev/null; t1=$(now); calc "$t1 - $t0"; done | best)
aud=$(for r in 1 2; do t0=$(now); "$BIN" audit --config "$W/audit/agent.conf" --log-level error >/dev/null; t1=$(now); calc "$t1 - $t0"; done | best)

printf '\n%-34s %16s %22s %8s %s\n' "measure" "sluice" "reference" "ratio" "target"
printf '%-34s %12.0f f/s %14.0f f/s (cp) %8.2f %s\n' "ingest $FILES x 4 KiB, durable" \
  "$(calc "$FILES / $ingest_s")" "$(calc "$FILES / $cp_s")" "$(calc "$cp_s / $ingest_s")" ">= 8000 f/s"
printf '%-34s %12s %14.0f f/s (fsync each) %5.2f\n' "" "" "$(calc "$FILES / $fsync_s")" "$(calc "$fsync_s / $ingest_s")"
printf '%-34s %12.1f MB/s\n' "ingest throughput" "$(calc "$FILES * 4096 / $ingest_s / 1000000")"
printf '%-34s %11.2f GB/s %13.2f GB/s (openssl) %6.2f %s\n' "audit re-hash $((bytes / 1000000)) MB" \
  "$(calc "$bytes / $aud / 1000000000")" "$(calc "$bytes / $ossl / 1000000000")" "$(calc "$aud / $ossl")" "time <= 1.1 x openssl"
printf '%-34s %12.3f s %16.3f s\n' "audit wall time" "$aud" "$ossl"
