#!/usr/bin/env bash
# Rename-to-manifest latency of `sluice run` (release build): files are renamed into a watched
# drop folder one at a time, and each one's time until its row is in the manifest (copied,
# hashed, fsync'd, published and committed) is measured by polling the manifest read-only.
# The reference, in the same run and on the same disk, is the floor of any durable store:
# copy the same file, fsync it, rename it, fsync the folder.
#   bash bench/latency.sh
# Env: BENCH_DIR (default /var/tmp), BENCH_FILES (default 300), BENCH_SIZE (bytes, default 4096).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh && build_libssh2 >&2  # libssh2 1.11 (patched), once
# SLUICE_BIN runs another build of sluice (an older one, to compare) instead of this checkout's.
if [ -n "${SLUICE_BIN:-}" ]; then BIN="$SLUICE_BIN"; else
  swift build -c release --product sluice >/dev/null
  BIN="$(swift build -c release --show-bin-path)/sluice"
fi
W="$(mktemp -d "${BENCH_DIR:-/var/tmp}/sluice-latency-bench.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$W/drop" "$W/staging" "$W/ref"
cat > "$W/agent.conf" <<CONF
[agent]
state_dir = "state"
lake_dir = "lake"
http_listen = "127.0.0.1:$PORT"
log_level = "warning"
[clients.bench.sources.drop]
type = "folder"
path = "drop"
CONF
"$BIN" run --config "$W/agent.conf" 2> "$W/run.log" &
PID=$!
python3 - "$W" "$PORT" "${BENCH_FILES:-300}" "${BENCH_SIZE:-4096}" <<'PY'
import os, sqlite3, statistics, sys, time, urllib.request
w, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200: break
    except Exception: time.sleep(0.05)
else:
    sys.exit("sluice run did not become ready: " + open(f"{w}/run.log").read())
db = sqlite3.connect(f"file:{w}/state/manifest.sqlite?mode=ro", uri=True, timeout=5)
payload = os.urandom(size)
def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
sluice, ref = [], []
for i in range(n):
    name = f"f{i:05d}.bin"
    with open(f"{w}/staging/{name}", "wb") as f: f.write(payload)
    t0 = time.perf_counter()
    os.rename(f"{w}/staging/{name}", f"{w}/drop/{name}")
    while db.execute("SELECT 1 FROM versions WHERE path = ?", (name,)).fetchone() is None:
        time.sleep(0.0005)
        if time.perf_counter() - t0 > 10: sys.exit(f"{name} not in the manifest after 10 s")
    sluice.append((time.perf_counter() - t0) * 1000)
    # The reference: a durable copy of the same bytes, by hand.
    t0 = time.perf_counter()
    with open(f"{w}/drop/{name}", "rb") as src, open(f"{w}/ref/.tmp", "wb") as dst:
        dst.write(src.read()); dst.flush(); os.fsync(dst.fileno())
    os.rename(f"{w}/ref/.tmp", f"{w}/ref/{name}")
    fd = os.open(f"{w}/ref", os.O_RDONLY); os.fsync(fd); os.close(fd)
    ref.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.02)  # one at a time: the agent is idle when the next file arrives
print(f"\n{'measure (' + str(n) + ' files of ' + str(size) + ' B, one at a time)':54} {'p50':>9} {'p99':>9} {'max':>9}  target")
print(f"{'sluice run: rename → row committed in the manifest':54} {statistics.median(sluice):7.1f}ms {pct(sluice, 99):7.1f}ms {max(sluice):7.1f}ms  p99 <= 100 ms")
print(f"{'reference: copy + fsync + rename + fsync folder':54} {statistics.median(ref):7.1f}ms {pct(ref, 99):7.1f}ms {max(ref):7.1f}ms")
PY
kill -TERM "$PID"; wait "$PID" || true; PID=""
