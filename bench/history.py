#!/usr/bin/env python3
"""Sluice's cost as the history grows (bench/history.sh runs this).

For each size N (versions in the whole manifest) it builds, in a fresh folder:

  * 50 filler clients (c00..c49, one drop folder each, empty now: their files came and went),
    whose N - 100,000 versions are inserted straight into the manifest through its own schema
    (the tables and columns `sluice` itself created, whatever its version has), in time order
    over the past BENCH_DAYS days: files with one to three versions, a transform row per
    version (1 in 1,000 failed, 1 in 5,000 held), BENCH_POLLS runs a day per client (the
    daemon's polls), and a sparse lake file of each version's size (BENCH_LAKE=0: none);
  * then client `big`, whose drop folder holds 100,000 small files, ingested for real by
    `sluice pull big --no-transform` (the manifest's newest 100,000 versions);

and measures, with the release build: the console overview, a client's page, /status and
/metrics of `sluice run` (median of BENCH_REQUESTS requests each, after the daemon's start-up
scan), the daemon's resident memory then, `sluice status`, `sluice history CLIENT PATH`,
`sluice pull big` with nothing changed (median of 3), `sluice audit --quick` (median of 3,
alternating with `find` reading every lake file's size, the reference), and the
manifest's bytes per version.

  history.py BIN WORKDIR SIZE... [--postgres URL PASSWORD_FILE]

BENCH_BUILD_ONLY=1 builds WORKDIR/n<SIZE> (and database history<SIZE> on the server at URL)
without measuring; BENCH_REUSE=1 later measures what is there, so the build can run while the
machine is busy and the measurement once it is quiet.
"""
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

BIG_FILES = int(os.environ.get("BENCH_BIG", "100000"))
CLIENTS = [f"c{i:02d}" for i in range(50)]
DAYS = int(os.environ.get("BENCH_DAYS", "365"))
POLLS = int(os.environ.get("BENCH_POLLS", "24"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "7"))
LAKE = os.environ.get("BENCH_LAKE", "1") != "0"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


class SQLiteSink:
    """Rows into the SQLite manifest, in one transaction."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("BEGIN")

    def columns(self, table):
        return [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]

    def tables(self):
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def max_id(self, table):
        return self.db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]

    def insert(self, table, columns, rows):
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def execute(self, sql):
        self.db.execute(sql)

    def finish(self):
        # No ANALYZE: Sluice never runs it on SQLite, so a manifest in production has no statistics
        # and SQLite plans by its rules (HistoryTests checks those plans).
        self.db.execute("COMMIT")
        self.db.close()


class PostgresSink:
    """Rows into the PostgreSQL manifest with COPY, in one transaction (one psql)."""

    def __init__(self, url, password_file):
        self.url = url
        self.env = dict(os.environ, PGPASSWORD=open(password_file).read().strip())
        self.psql = subprocess.Popen(["psql", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1", url], stdin=subprocess.PIPE, env=self.env, text=True)
        self.psql.stdin.write("BEGIN;\n")

    def query(self, sql):
        return subprocess.run(["psql", "-qAt", self.url, "-c", sql], env=self.env, check=True, capture_output=True, text=True).stdout

    def columns(self, table):
        return self.query(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position").split()

    def tables(self):
        return set(self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").split())

    def max_id(self, table):
        return int(self.query(f"SELECT coalesce(max(id), 0) FROM {table}").strip())

    def insert(self, table, columns, rows):
        w = self.psql.stdin
        w.write(f"COPY {table} ({', '.join(columns)}) FROM STDIN;\n")
        for r in rows:
            w.write("\t".join(copy_text(v) for v in r) + "\n")
        w.write("\\.\n")

    def execute(self, sql):
        self.psql.stdin.write(sql.rstrip(";") + ";\n")

    def finish(self):
        for table in ("run", "file", "version", "transform"):
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        # What autovacuum would have gathered by now: statistics of the filler clients, none of
        # `big`, whose real ingest comes next (Sluice refreshes them during a burst itself).
        self.psql.stdin.write("COMMIT;\nANALYZE;\n")
        self.psql.stdin.close()
        if self.psql.wait() != 0:
            sys.exit("psql failed")


def copy_text(v):
    if v is None:
        return "\\N"
    if isinstance(v, bytes):
        return "\\\\x" + v.hex()
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def fill(sink, lake, versions, now):
    """Inserts `versions` versions of the filler clients, oldest first, ending a day before `now`."""
    if versions <= 0:
        return
    rnd = random.Random(26)
    has = {t: set(sink.columns(t)) for t in ("run", "file", "version", "transform")}
    run_id, file_id, version_id, transform_id = (sink.max_id(t) for t in ("run", "file", "version", "transform"))
    per_day = versions / (DAYS * len(CLIENTS))
    start = now - (DAYS + 1) * 86400
    files = {c: [] for c in CLIENTS}  # per client: [file id, path, latest version]
    runs, file_rows, version_rows, transform_rows = [], [], [], []
    made = 0
    dirs = set()
    vcols = ["id", "file_id", "version", "sha256", "size", "source_mtime", "source_mtime_ns", "lake_path", "ingested_at", "run_id", "source_etag"]
    if "client" in has["version"]:
        vcols.append("client")
    tcols = ["id", "version_id", "dataset", "mapping_sha256", "status", "rows_written", "rows_rejected", "output_path", "error", "transformed_at"]

    def flush():
        sink.insert("run", ["id", "client", "source", "trigger", "pid", "started_at", "finished_at", "status", "new", "bytes"], runs)
        sink.insert("file", ["id", "client", "source", "path", "path_bytes", "first_seen_at"], file_rows)
        sink.insert("version", vcols, version_rows)
        sink.insert("transform", tcols, transform_rows)
        for l in (runs, file_rows, version_rows, transform_rows):
            l.clear()

    carry = 0.0
    for day in range(DAYS):
        for c in CLIENTS:
            carry += per_day
            count = int(carry)
            carry -= count
            if day == DAYS - 1 and c == CLIENTS[-1]:
                count += versions - made - count
            poll0 = start + day * 86400
            day_runs = []
            for p in range(POLLS):
                run_id += 1
                t = poll0 + p * 86400 / POLLS
                day_runs.append(run_id)
                runs.append((run_id, c, "drop", "poll", 1, iso(t), iso(t + 0.2), "ok", 0, 0))
            for k in range(count):
                t = poll0 + (k + 0.5) * 86400 / max(count, 1)
                mine = files[c]
                if mine and rnd.random() < 0.45:
                    entry = mine[rnd.randrange(len(mine))]
                    if entry[2] >= 3:
                        entry = None
                else:
                    entry = None
                if entry is None:
                    file_id += 1
                    n = len(mine)
                    path = f"d{n // 1000:04d}/f{n:07d}.csv"
                    entry = [file_id, path, 0]
                    mine.append(entry)
                    file_rows.append((file_id, c, "drop", path, path.encode(), iso(t)))
                entry[2] += 1
                version_id += 1
                size = rnd.randrange(1_000, 64_000)
                stem = entry[1][:-4]
                lake_path = f"raw/{c}/drop/{stem}.v{entry[2]}.csv"
                run = day_runs[min(POLLS - 1, int((t - poll0) * POLLS / 86400))]
                row = [version_id, entry[0], entry[2], hashlib.sha256(lake_path.encode()).hexdigest(), size, iso(t - 60), int((t - 60) * 1e9),
                       lake_path, iso(t), run, None]
                if "client" in has["version"]:
                    row.append(c)
                version_rows.append(row)
                transform_id += 1
                roll = rnd.randrange(5000)
                status = "failed" if roll < 5 else "held" if roll == 5 else "ok"
                transform_rows.append((transform_id, version_id, "rows", "0" * 64, status, 0 if status != "ok" else size // 40, 0,
                                       None if status != "ok" else f"datasets/{c}/rows/{stem}.v{entry[2]}.parquet",
                                       "bench: a failed transform" if status == "failed" else None, iso(t + 1)))
                if LAKE:
                    d = os.path.dirname(f"{lake}/{lake_path}")
                    if d not in dirs:
                        os.makedirs(d, exist_ok=True)
                        dirs.add(d)
                    fd = os.open(f"{lake}/{lake_path}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
                    os.ftruncate(fd, size)
                    os.close(fd)
            made += count
        if len(version_rows) >= 200_000 or day == DAYS - 1:
            flush()
            log(f"  filler: {made:,} versions up to day {day + 1}/{DAYS}")


def rebuild_rollups(sink):
    """The rollup tables, if this version of Sluice has them, from the rows (as its migration does)."""
    tables = sink.tables()
    if "ingest_day" in tables:
        sink.execute("DELETE FROM ingest_day")
        sink.execute("""INSERT INTO ingest_day (client, source, day, versions, new_files, bytes)
                        SELECT f.client, f.source, substr(v.ingested_at, 1, 10), count(*), sum(CASE WHEN v.version = 1 THEN 1 ELSE 0 END), sum(v.size)
                        FROM version v JOIN file f ON f.id = v.file_id GROUP BY f.client, f.source, substr(v.ingested_at, 1, 10)""")
    if "source_total" in tables:
        sink.execute("DELETE FROM source_total")
        sink.execute("""INSERT INTO source_total (client, source, versions, new_files, bytes)
                        SELECT client, source, sum(versions), sum(new_files), sum(bytes) FROM ingest_day GROUP BY client, source""")


def write_config(w, manifest_table, port):
    lines = ['[agent]', 'state_dir = "state"', 'lake_dir = "lake"', 'log_level = "warning"', f'http_listen = "127.0.0.1:{port}"', "",
             manifest_table, "", '[clients.big.sources.drop]', 'type = "folder"', 'path = "drop-big"', 'min_age = "0s"', 'rescan_interval = "1h"']
    for c in CLIENTS:
        lines += ["", f"[clients.{c}.sources.drop]", 'type = "folder"', f'path = "drop/{c}"', 'min_age = "0s"', 'rescan_interval = "1h"']
    open(f"{w}/agent.conf", "w").write("\n".join(lines) + "\n")
    for c in CLIENTS:
        os.makedirs(f"{w}/drop/{c}", exist_ok=True)


def make_big(w):
    for i in range(BIG_FILES):
        d = f"{w}/drop-big/d{i // 1000:03d}"
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i:06d}.csv", "wb") as f:
            f.write(b"id,amount\n%d,%d.%02d\n" % (i, i % 997, i % 100))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sluice(bin, w, *args, check=True):
    t0 = time.perf_counter()
    p = subprocess.run([bin, *args, "--config", f"{w}/agent.conf"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t = time.perf_counter() - t0
    if check and p.returncode not in (0,):
        sys.exit(f"sluice {' '.join(args)} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    return t, p


def median_of(n, f):
    return statistics.median(f() for _ in range(n))


def get(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
        if r.status != 200:
            sys.exit(f"GET {url}: {r.status}")
    return time.perf_counter() - t0, body


def rss_kib(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def measure_daemon(bin, w, port):
    d = subprocess.Popen([bin, "run", "--config", f"{w}/agent.conf"], stdout=subprocess.DEVNULL, stderr=open(f"{w}/run.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 1800
        while True:
            if d.poll() is not None:
                sys.exit(f"sluice run exited {d.returncode}: {open(f'{w}/run.log').read()[-2000:]}")
            try:
                _, body = get(f"{base}/status")
                sources = json.loads(body)["sources"]
                if sources and all(s.get("last_poll") and s.get("state") == "idle" for s in sources):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the daemon's start-up scan did not end within 30 minutes")
            time.sleep(0.5)
        time.sleep(3)
        mem = rss_kib(d.pid)
        out = {"rss_mib": mem["VmRSS"] / 1024, "hwm_mib": mem["VmHWM"] / 1024}
        for name, path in (("overview", "/"), ("client_page", "/clients/c00"), ("big_page", "/clients/big"), ("status_json", "/status"), ("metrics", "/metrics")):
            get(base + path)  # warm
            out[name] = median_of(REQUESTS, lambda: get(base + path)[0])
        return out
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=120)


def manifest_bytes(w, pg):
    if pg:
        url, pwfile = pg
        env = dict(os.environ, PGPASSWORD=open(pwfile).read().strip())
        return int(subprocess.run(["psql", "-qAt", url, "-c", "SELECT pg_database_size(current_database())"], env=env, check=True,
                                  capture_output=True, text=True).stdout)
    return sum(os.path.getsize(f"{w}/state/{f}") for f in os.listdir(f"{w}/state") if f.startswith("manifest.sqlite"))


def one_size(bin, root, n, pg):
    w = f"{root}/n{n}"
    if os.environ.get("BENCH_REUSE") and os.path.exists(f"{w}/agent.conf"):
        # Measure a manifest and lake an earlier run built (BENCH_REUSE=1; on PostgreSQL the
        # same server, at the same URL, still holds database history<N>).
        port = int(open(f"{w}/agent.conf").read().split('http_listen = "127.0.0.1:')[1].split('"')[0])
        if pg:
            pg = (pg[0].rsplit("/", 1)[0] + f"/history{n}", pg[1])
        log(f"[{n:,} versions] measuring what {w} holds")
        return measure(bin, w, n, port, pg, {"versions": n, "build_s": 0, "big_ingest_s": 0})
    os.makedirs(w)
    port = free_port()
    manifest = ""
    if pg:
        url, pwfile = pg
        env = dict(os.environ, PGPASSWORD=open(pwfile).read().strip())
        db = f"history{n}"
        admin = url.rsplit("/", 1)[0] + "/postgres"
        subprocess.run(["psql", "-qAt", admin, "-c", f"CREATE DATABASE {db}"], env=env, check=True, capture_output=True)
        url = url.rsplit("/", 1)[0] + "/" + db
        pg = (url, pwfile)
        manifest = f'[manifest]\nurl = "{url}"\npassword_file = "{pwfile}"\ntls = "disable"'
    write_config(w, manifest, port)
    log(f"[{n:,} versions] schema, filler, then the real ingest of {BIG_FILES:,} files")
    sluice(bin, w, "pull", "c00", "--no-transform")  # creates the manifest and the lake
    t0 = time.time()
    sink = PostgresSink(*pg) if pg else SQLiteSink(f"{w}/state/manifest.sqlite")
    fill(sink, f"{w}/lake", n - BIG_FILES, time.time())
    rebuild_rollups(sink)
    sink.finish()
    build_s = time.time() - t0
    make_big(w)
    ingest_s, _ = sluice(bin, w, "pull", "big", "--no-transform")
    log(f"  built in {build_s:.0f} s (+ {ingest_s:.1f} s for the real ingest of {BIG_FILES:,} files)")
    if os.environ.get("BENCH_BUILD_ONLY"):
        # Build now, measure later with BENCH_REUSE=1 (say, once the machine is quiet).
        return None
    return measure(bin, w, n, port, pg, {"versions": n, "build_s": build_s, "big_ingest_s": ingest_s})


def measure(bin, w, n, port, pg, r):
    r.update(measure_daemon(bin, w, port))
    r["status_cli"] = median_of(REQUESTS, lambda: sluice(bin, w, "status")[0])
    r["history_cli"] = median_of(REQUESTS, lambda: sluice(bin, w, "history", "c00", "d0000/f0000001.csv")[0])
    r["history_big"] = median_of(REQUESTS, lambda: sluice(bin, w, "history", "big", "d000/f000001.csv")[0])
    r["pull_unchanged"] = median_of(3, lambda: sluice(bin, w, "pull", "big", "--no-transform")[0])
    # audit --quick beside the reference, find reading every lake file's size, alternating.
    audits, finds = [], []
    for _ in range(3):
        t, p = sluice(bin, w, "audit", "--quick", "--json", check=False)
        rep = json.loads(p.stdout)
        if p.returncode != 0 and LAKE:
            sys.exit(f"audit --quick found problems: {p.stdout[:2000]}")
        if rep["checked"] != n:
            sys.exit(f"the manifest holds {rep['checked']:,} versions, not {n:,}")
        audits.append(t)
        t0 = time.time()
        subprocess.run(["find", f"{w}/lake/raw", "-type", "f", "-printf", "%s\n"], stdout=subprocess.DEVNULL, check=True)
        finds.append(time.time() - t0)
    t = statistics.median(audits)
    r["find_lake"] = statistics.median(finds)
    r["audit_quick"] = t
    r["audit_checked"] = rep["checked"]
    r["audit_rate"] = rep["checked"] / t
    r["manifest_bytes"] = manifest_bytes(w, pg)
    r["bytes_per_version"] = r["manifest_bytes"] / n
    log("  " + json.dumps(r))
    return r


def main():
    args = sys.argv[1:]
    pg = None
    if "--postgres" in args:
        i = args.index("--postgres")
        pg = (args[i + 1], args[i + 2])
        del args[i:i + 3]
    bin, root, sizes = args[0], args[1], [int(s) for s in args[2:]]
    results = [one_size(bin, root, n, pg) for n in sizes]
    if os.environ.get("BENCH_BUILD_ONLY"):
        return
    ms = lambda s: f"{s * 1000:.0f} ms"
    rows = [
        ("console overview (`GET /`)", "overview", ms),
        ("a client's page (`GET /clients/c00`)", "client_page", ms),
        ("`GET /clients/big`", "big_page", ms),
        ("`/status`", "status_json", ms),
        ("`/metrics`", "metrics", ms),
        ("`sluice status` (the whole process)", "status_cli", ms),
        ("`sluice history c00 PATH`", "history_cli", ms),
        ("`sluice history big PATH`", "history_big", ms),
        (f"`sluice pull` of the unchanged {BIG_FILES:,}-file source", "pull_unchanged", lambda s: f"{s:.2f} s"),
        ("`sluice run` resident memory after its start-up scan", "rss_mib", lambda v: f"{v:.0f} MiB"),
        ("`sluice run` peak resident memory", "hwm_mib", lambda v: f"{v:.0f} MiB"),
        ("`sluice audit --quick` (all clients)", "audit_quick", lambda s: f"{s:.2f} s"),
        ("`sluice audit --quick` rate", "audit_rate", lambda v: f"{v:,.0f} versions/s"),
        ("`find lake/raw -type f -printf '%s\\n'` (reference)", "find_lake", lambda s: f"{s:.2f} s"),
        ("manifest size per version", "bytes_per_version", lambda v: f"{v:.0f} B"),
    ]
    print("| what | " + " | ".join(f"{r['versions']:,} versions" for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for label, key, fmt in rows:
        print(f"| {label} | " + " | ".join(fmt(r[key]) for r in results) + " |")
    if os.environ.get("BENCH_JSON"):
        json.dump(results, open(os.environ["BENCH_JSON"], "w"))


if __name__ == "__main__":
    main()
