#!/usr/bin/env python3
"""The transform matrix (`bash bench/transform.sh --matrix`): Sluice against DuckDB on many
shapes of client file, not one.

For each shape it generates a file of about BENCH_MB (default 120) MB, then, alternating in one
run, times BENCH_RUNS (default 3) times each: `sluice pull` of the file from a drop folder
(ingest: copy, SHA-256, fsync, commit; then the typed transform to ZSTD Parquet), DuckDB doing
the same typed conversion to ZSTD Parquet with one thread, and DuckDB at its default thread
count. It prints each side's median, the median of the back-to-back pairs' ratios, Sluice's
peak RSS, and checks that the outputs agree (DuckDB reads both: the row count and the sum of
every numeric and time column are equal).

Usage: matrix.py SLUICE [SHAPE ...]   (shapes: plain formats european text wide jsonl gzip)
Env: BENCH_DIR (default /var/tmp), BENCH_MB, BENCH_RUNS.
"""
import datetime as dt
import gzip
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import duckdb

MB = int(os.environ.get("BENCH_MB", "120"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WORDS = ["alpha", "beta", "gamma", "delta", "Smith, John", "O'Neil", "Müller, Anna", "x", "widget", "blue, green", "Zoë", "Łódź"]


def write_rows(path, header, row, target, opener=open):
    """Writes `header`, then `row(i, rnd)` lines until the file is about `target` bytes."""
    rnd = random.Random(42)
    size, i = 0, 0
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        if header:
            f.write(header)
        buf = []
        while size < target:
            line = row(i, rnd)
            buf.append(line)
            size += len(line)
            i += 1
            if len(buf) >= 20000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
    return i


BASE = dt.datetime(2026, 1, 1)


def safe_local(rnd):
    """A local time in 2026 away from the hours a daylight-saving change skips or repeats."""
    while True:
        t = BASE + dt.timedelta(minutes=rnd.randrange(0, 525000))
        if not (t.month in (3, 10) and t.day >= 25 and 1 <= t.hour <= 3):
            return t


def quoted(w):
    return f'"{w}"' if "," in w or '"' in w or "\n" in w or ";" in w else w


# Each shape: file name, generator, mapping, DuckDB's SELECT (FROM is {src}), and the columns to sum.
def plain_row(i, rnd):
    ts = BASE + dt.timedelta(seconds=rnd.randrange(0, 30000000))
    return (f"{i + 1},{ts:%Y-%m-%dT%H:%M:%S},{rnd.randrange(-10000000, 100000000) / 100:.2f},{quoted(rnd.choice(WORDS))},"
            f"{'true' if rnd.random() < 0.5 else 'false'},{rnd.randrange(0, 100000)}\n")


PLAIN = {
    "file": "data.csv", "header": "id,created_at,amount,name,active,qty\n", "row": plain_row,
    "mapping": """format = "csv"
fields = [
  { name = "id", source = "id", type = "int64", required = true },
  { name = "created_at", source = "created_at", type = "timestamp" },
  { name = "amount", source = "amount", type = "decimal(12,2)" },
  { name = "name", source = "name", type = "string" },
  { name = "active", source = "active", type = "bool" },
  { name = "qty", source = "qty", type = "int64" },
]""",
    "duck": """SELECT * FROM read_csv('{src}', header=true, columns={{'id':'BIGINT','created_at':'TIMESTAMP','amount':'DECIMAL(12,2)',
               'name':'VARCHAR','active':'BOOLEAN','qty':'BIGINT'}})""",
    "sums": ["id", "amount", "qty", "active::INT", "epoch_us(created_at)"],
}


def formats_row(i, rnd):
    local = safe_local(rnd)
    utc = BASE + dt.timedelta(seconds=rnd.randrange(0, 30000000))
    day = dt.date(2020, 1, 1) + dt.timedelta(days=rnd.randrange(0, 3000))
    return (f"{i + 1},{local:%d.%m.%Y %H:%M},{utc:%Y-%m-%dT%H:%M:%S},{day.month:02d}/{day.day:02d}/{day.year},"
            f"{rnd.randrange(-10000000, 100000000) / 100:.2f},{quoted(rnd.choice(WORDS))}\n")


FORMATS = {
    "file": "formats.csv", "header": "id,booked,sent,due,amount,name\n", "row": formats_row,
    "mapping": """format = "csv"
fields = [
  { name = "id", source = "id", type = "int64", required = true },
  { name = "booked", source = "booked", type = "timestamp", format = "%d.%m.%Y %H:%M", timezone = "Europe/Berlin" },
  { name = "sent", source = "sent", type = "timestamp", format = "%Y-%m-%dT%H:%M:%S" },
  { name = "due", source = "due", type = "date", format = "%m/%d/%Y" },
  { name = "amount", source = "amount", type = "decimal(12,2)" },
  { name = "name", source = "name", type = "string" },
]""",
    "duck": """SELECT id, timezone('Europe/Berlin', strptime(booked, '%d.%m.%Y %H:%M')) AS booked, strptime(sent, '%Y-%m-%dT%H:%M:%S') AS sent,
               strptime(due, '%m/%d/%Y')::DATE AS due, amount, name
               FROM read_csv('{src}', header=true, columns={{'id':'BIGINT','booked':'VARCHAR','sent':'VARCHAR','due':'VARCHAR',
               'amount':'DECIMAL(12,2)','name':'VARCHAR'}})""",
    "sums": ["id", "amount", "epoch_us(booked)", "epoch_us(sent)", "epoch(due::TIMESTAMP)"],
}


def eu(v, places):
    s = f"{v:,.{places}f}"
    return s.replace(",", "X").replace(".", ",").replace("X", ".")


def european_row(i, rnd):
    ts = BASE + dt.timedelta(seconds=rnd.randrange(0, 30000000))
    a = rnd.randrange(-10000000, 100000000) / 100
    b = rnd.randrange(-10**13, 10**13) / 10**4
    return f"{i + 1};{f'{a:.2f}'.replace('.', ',')};{eu(b, 4)};{ts:%d.%m.%Y %H:%M:%S};{quoted(rnd.choice(WORDS))}\n"


EUROPEAN = {
    "file": "european.csv", "header": "id;betrag;saldo;zeit;name\n", "row": european_row,
    "mapping": """format = "csv"
delimiter = ";"
decimal_separator = ","
thousands_separator = "."
fields = [
  { name = "id", source = "id", type = "int64", required = true },
  { name = "betrag", source = "betrag", type = "decimal(12,2)" },
  { name = "saldo", source = "saldo", type = "decimal(18,4)" },
  { name = "zeit", source = "zeit", type = "timestamp", format = "%d.%m.%Y %H:%M:%S" },
  { name = "name", source = "name", type = "string" },
]""",
    "duck": """SELECT id, betrag, replace(replace(saldo, '.', ''), ',', '.')::DECIMAL(18,4) AS saldo, zeit, name
               FROM read_csv('{src}', header=true, delim=';', decimal_separator=',', timestampformat='%d.%m.%Y %H:%M:%S',
               columns={{'id':'BIGINT','betrag':'DECIMAL(12,2)','saldo':'VARCHAR','zeit':'TIMESTAMP','name':'VARCHAR'}})""",
    "sums": ["id", "betrag", "saldo", "epoch_us(zeit)"],
}

TEXTS = ["plain words", "Smith, John", 'He said "no"', "two\nlines", "Müller; Anna", "x", "a longer piece of free text, with commas, in it", "ZOË"]


def text_row(i, rnd):
    cells = []
    for k in range(8):
        w = rnd.choice(TEXTS) if k % 3 == 0 else rnd.choice(["alpha", "beta", "gamma", "delta-epsilon", "zeta" * rnd.randrange(1, 4)])
        cells.append('"' + w.replace('"', '""') + '"' if any(c in w for c in ',"\n') else w)
    return f"{i + 1}," + ",".join(cells) + "\n"


TEXT = {
    "file": "text.csv", "header": "id," + ",".join(f"t{k}" for k in range(8)) + "\n", "row": text_row,
    "mapping": 'format = "csv"\nfields = [\n  { name = "id", source = "id", type = "int64", required = true },\n'
               + "".join(f'  {{ name = "t{k}", source = "t{k}", type = "string" }},\n' for k in range(8)) + "]",
    "duck": "SELECT * FROM read_csv('{src}', header=true, columns={{'id':'BIGINT'," + ",".join(f"'t{k}':'VARCHAR'" for k in range(8)) + "}})",
    "sums": ["id"] + [f"length(t{k})" for k in range(8)],
}

WIDE_TYPES = (["int"] * 50 + ["dec"] * 50 + ["str"] * 50 + ["bool"] * 25 + ["date"] * 25)


def wide_row(i, rnd):
    out = [str(i + 1)]
    for k, t in enumerate(WIDE_TYPES):
        if t == "int":
            out.append(str(rnd.randrange(0, 1000000)))
        elif t == "dec":
            out.append(f"{rnd.randrange(0, 10000000) / 100:.2f}")
        elif t == "str":
            out.append(rnd.choice(["alpha", "beta", "gamma", "delta", "epsilon"]))
        elif t == "bool":
            out.append("true" if rnd.random() < 0.5 else "false")
        else:
            out.append(f"2026-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}")
    return ",".join(out) + "\n"


WIDE_SQL = {"int": ("int64", "BIGINT"), "dec": ("decimal(12,2)", "DECIMAL(12,2)"), "str": ("string", "VARCHAR"), "bool": ("bool", "BOOLEAN"),
            "date": ("date", "DATE")}
WIDE = {
    "file": "wide.csv", "header": "id," + ",".join(f"c{k}" for k in range(len(WIDE_TYPES))) + "\n", "row": wide_row,
    "mapping": 'format = "csv"\nfields = [\n  { name = "id", source = "id", type = "int64", required = true },\n'
               + "".join(f'  {{ name = "c{k}", source = "c{k}", type = "{WIDE_SQL[t][0]}" }},\n' for k, t in enumerate(WIDE_TYPES)) + "]",
    "duck": "SELECT * FROM read_csv('{src}', header=true, columns={{'id':'BIGINT',"
            + ",".join(f"'c{k}':'{WIDE_SQL[t][1]}'" for k, t in enumerate(WIDE_TYPES)) + "}})",
    "sums": ["id"] + [f"c{k}" for k, t in enumerate(WIDE_TYPES) if t in ("int", "dec")][:20]
            + [f"c{k}::INT" for k, t in enumerate(WIDE_TYPES) if t == "bool"][:5] + [f"epoch(c{k}::TIMESTAMP)" for k, t in enumerate(WIDE_TYPES) if t == "date"][:5],
}


def jsonl_row(i, rnd):
    ts = BASE + dt.timedelta(seconds=rnd.randrange(0, 30000000))
    rec = {"id": i + 1, "ts": f"{ts:%Y-%m-%dT%H:%M:%S}Z", "customer": {"id": rnd.randrange(1, 100000), "name": rnd.choice(WORDS), "city": rnd.choice(["Köln", "Paris", "Lyon"])},
           "amount": rnd.randrange(0, 10000000) / 100, "active": rnd.random() < 0.5, "tags": ["a", "b"][: rnd.randrange(0, 3)]}
    return json.dumps(rec, ensure_ascii=False) + "\n"


JSONL = {
    "file": "events.jsonl", "header": "", "row": jsonl_row,
    "mapping": """format = "jsonl"
fields = [
  { name = "id", source = "id", type = "int64", required = true },
  { name = "ts", source = "ts", type = "timestamp" },
  { name = "customer_id", source = "customer.id", type = "int64" },
  { name = "customer_name", source = "customer.name", type = "string" },
  { name = "city", source = "customer.city", type = "string" },
  { name = "amount", source = "amount", type = "decimal(12,2)" },
  { name = "active", source = "active", type = "bool" },
]""",
    "duck": """SELECT id, ts, customer.id AS customer_id, customer.name AS customer_name, customer.city AS city, amount, active
               FROM read_json('{src}', format='newline_delimited', columns={{'id':'BIGINT','ts':'TIMESTAMPTZ',
               'customer':'STRUCT(id BIGINT, name VARCHAR, city VARCHAR)','amount':'DECIMAL(12,2)','active':'BOOLEAN','tags':'VARCHAR[]'}})""",
    "sums": ["id", "customer_id", "amount", "active::INT", "epoch_us(ts)"],
}

GZIP = dict(PLAIN, file="data.csv.gz", gzip=True)
SHAPES = {"plain": PLAIN, "formats": FORMATS, "european": EUROPEAN, "text": TEXT, "wide": WIDE, "jsonl": JSONL, "gzip": GZIP}


def sluice_run(sluice, work, shape, path):
    run = os.path.join(work, "run")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(os.path.join(run, "drop"))
    os.makedirs(os.path.join(run, "mappings"))
    os.link(path, os.path.join(run, "drop", os.path.basename(path)))
    with open(os.path.join(run, "agent.conf"), "w") as f:
        f.write('[agent]\nstate_dir = "state"\nlake_dir = "lake"\n\n[clients.bench.sources.drop]\ntype = "folder"\npath = "drop"\nmin_age = "0s"\n')
    name = shape["file"].replace(".gz", "")
    with open(os.path.join(run, "mappings", "bench.toml"), "w") as f:
        f.write(f'[datasets.data]\nmatch = ["{name}"]\n' + shape["mapping"] + "\n")
    errors = open(os.path.join(run, "stderr"), "w+b")
    peak = os.path.join(run, "peak-rss")
    # Through GNU time: a child of this process would report this process's own peak (Linux
    # keeps the peak across exec), and a big Python with DuckDB in it is no measure of Sluice.
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-o", peak, "-f", "%M", sluice, "pull", "bench", "--json", "--config", os.path.join(run, "agent.conf")],
                         stdout=subprocess.PIPE, stderr=errors)
    out, _ = p.communicate()
    elapsed = time.perf_counter() - t0
    with open(peak) as f:
        rss = int(f.read().split()[-1])
    report = json.loads(out)
    t = report["transforms"][0]
    if p.returncode != 0 or t["status"] != "ok":
        errors.seek(0)
        raise SystemExit(f"sluice pull failed ({p.returncode}): {t} {errors.read().decode()[-2000:]}")
    return elapsed, rss, os.path.join(run, "lake", t["output_path"])


def duck_run(shape, path, out, threads):
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads={threads}")
    t0 = time.perf_counter()
    con.execute(f"COPY ({shape['duck'].format(src=path)}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    return time.perf_counter() - t0


def agree(shape, a, b):
    cols = ", ".join(["count(*)"] + [f"sum({c})" for c in shape["sums"]])
    con = duckdb.connect()
    x = con.execute(f"SELECT {cols} FROM read_parquet('{a}')").fetchone()
    y = con.execute(f"SELECT {cols} FROM read_parquet('{b}')").fetchone()
    return x == y, x, y


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sluice = sys.argv[1]
    names = sys.argv[2:] or list(SHAPES)
    work = tempfile.mkdtemp(prefix="sluice-matrix-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    rows_out = []
    try:
        for name in names:
            shape = SHAPES[name]
            path = os.path.join(work, shape["file"])
            rows = write_rows(path, shape["header"], shape["row"], MB * 1_000_000, opener=gzip.open if shape.get("gzip") else open)
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass  # warm the page cache for every tool
            s_times, d1_times, d2_times, r1, r2, rss = [], [], [], [], [], 0
            for r in range(RUNS):
                # Alternate who goes first, so that neither always meets a warmer machine.
                order = ["s", "d1", "d2"] if r % 2 == 0 else ["d2", "d1", "s"]
                got = {}
                for who in order:
                    if who == "s":
                        got["s"], m, out = sluice_run(sluice, work, shape, path)
                        rss = max(rss, m)
                    else:
                        got[who] = duck_run(shape, path, os.path.join(work, f"duck{who}.parquet"), 1 if who == "d1" else None)
                s_times.append(got["s"]); d1_times.append(got["d1"]); d2_times.append(got["d2"])
                r1.append(got["s"] / got["d1"]); r2.append(got["s"] / got["d2"])
                print(f"{name} run {r + 1}: sluice {got['s']:.2f}s, duckdb 1 thread {got['d1']:.2f}s, default {got['d2']:.2f}s", file=sys.stderr)
            ok, x, y = agree(shape, out, os.path.join(work, "duckd1.parquet"))
            if not ok:
                print(f"{name}: outputs differ: sluice {x} duckdb {y}", file=sys.stderr)
            rows_out.append({"shape": name, "mb": size / 1e6, "rows": rows, "sluice": statistics.median(s_times), "duck1": statistics.median(d1_times),
                             "duck2": statistics.median(d2_times), "ratio1": statistics.median(r1), "ratio2": statistics.median(r2),
                             "rss_mib": rss / 1024, "agree": ok})
            os.unlink(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n| shape | file | rows | sluice | DuckDB 1 thread | ratio (median of {RUNS} pairs) | DuckDB default threads | ratio | Sluice peak RSS | outputs agree |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows_out:
        print(f"| {r['shape']} | {r['mb']:.0f} MB | {r['rows']:,} | {r['sluice']:.2f} s | {r['duck1']:.2f} s | {r['ratio1']:.2f} | {r['duck2']:.2f} s | {r['ratio2']:.2f} | "
              f"{r['rss_mib']:.0f} MiB | {'yes' if r['agree'] else 'NO'} |")
    g1 = math.exp(sum(math.log(r["ratio1"]) for r in rows_out) / len(rows_out))
    g2 = math.exp(sum(math.log(r["ratio2"]) for r in rows_out) / len(rows_out))
    print(f"| geometric mean | | | | | {g1:.2f} | | {g2:.2f} | | |")


if __name__ == "__main__":
    main()
