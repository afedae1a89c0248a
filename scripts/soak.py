#!/usr/bin/env python3
"""The soak: the real `sluice run` under fire (README: Reliability).

Runs one agent against a real sshd, moto (S3), a drop folder and the upload API while files of
random sizes arrive all the time, and injects faults at random instants:

  - SIGKILL of the agent (every ~15 s; the supervisor restarts it, as systemd would);
  - sshd killed mid-transfer, and moto killed mid-GET (both restarted; moto's objects, held in
    memory, are put back);
  - the lake's file system filled (a small tmpfs; root only) and then freed;
  - the manifest locked by another process for longer than the busy timeout (30 s);
  - a wall-clock step of an hour forward and back, and back and forward (an LD_PRELOAD shim
    compiled here shifts CLOCK_REALTIME: libfaketime empties Swift's CommandLine.arguments);
  - SIGSTOP for longer than the watchdog (WATCHDOG_USEC through NOTIFY_SOCKET, which this
    script serves as systemd does: a missed ping is SIGABRT, then SIGKILL, then a restart).

At the end it waits for the agent to catch up, stops it, and checks: every file sent is in the
manifest exactly once, with the SHA-256 it was sent with, and nothing else is; every version
has exactly one ok transform; `sluice audit` is clean (no missing, corrupt, orphan or temp
file); no partial transfer is left; the agent's RSS and open descriptors are flat. It prints
the figures and exits 1 when a check fails.

    python3 scripts/soak.py MINUTES        (scripts/soak.sh builds sluice and calls this)

Environment: SLUICE_BIN (default .build/release/sluice), SOAK_MAX_BYTES (largest file,
default 200 MB), SOAK_LAKE_BYTES (the lake's tmpfs, default 200 MB a minute, at least 2 GiB),
SOAK_SEED, SOAK_KEEP=1 (keep the work folder), SOAK_REPORT (JSON report path).
"""
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSY_TIMEOUT = 30          # the agent's SQLite busy timeout, seconds
WATCHDOG_SECONDS = 10
HEADER = b"id,name,amount,note\n"
CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
static volatile int64_t *offset;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
__attribute__((constructor)) static void soak_clock_init(void) {
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    const char *p = getenv("SOAK_CLOCK_FILE");
    if (!p) return;
    int fd = open(p, O_RDONLY);
    if (fd < 0) return;
    void *m = mmap(0, 8, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m != MAP_FAILED) offset = m;
}
int clock_gettime(clockid_t c, struct timespec *ts) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real_clock_gettime(c, ts);
    if (r == 0 && offset && (c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE)) ts->tv_sec += *offset;
    return r;
}
int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    return 0;
}
time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=15):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def content(name, size):
    """The bytes of a file: `size` bytes of CSV whose rows come from its name, so that they can
    be made again (moto's objects are put back after it is killed) and every file differs. A
    row the size cuts is blanked (blank lines are skipped). Files shorter than the header are
    deliveries too; their transform fails (no header)."""
    rng = random.Random(name)
    if size < len(HEADER):
        return HEADER[:size]
    rows = []
    total = 0
    while total < 65536:
        row = f"{rng.randrange(10**9)},{name},{rng.randrange(10**6) / 100:.2f},{rng.getrandbits(64):x}\n".encode()
        rows.append(row)
        total += len(row)
    block = b"".join(rows)
    reps, rest = divmod(size - len(HEADER), len(block))
    body = block * reps + block[:rest]
    cut = body.rfind(b"\n") + 1
    return HEADER + body[:cut] + b"\n" * (len(body) - cut)


def file_size(rng, max_bytes):
    r = rng.random()
    if r < 0.03:
        return 0
    if r < 0.90:
        return rng.randint(1, 64 << 10)
    if r < 0.99:
        return rng.randint(64 << 10, min(5 << 20, max_bytes))
    return rng.randint(min(5 << 20, max_bytes), max_bytes)


class Soak:
    def __init__(self, minutes):
        self.minutes = minutes
        self.seed = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
        self.rng = random.Random(self.seed)
        self.max_bytes = int(os.environ.get("SOAK_MAX_BYTES", str(200 * 1000 * 1000)))
        self.bin = os.path.abspath(os.environ.get("SLUICE_BIN", os.path.join(ROOT, ".build/release/sluice")))
        self.work = tempfile.mkdtemp(prefix="sluice-soak-")
        os.chmod(self.work, 0o755)
        self.root = os.geteuid() == 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ledger = {}            # (source, path) -> (sha256, size)
        self.s3_objects = {}        # key -> size (to put back after moto restarts)
        self.pending_uploads = []   # (path, size) the API did not take yet
        self.faults = {k: 0 for k in ("sigkill", "sshd_kill", "moto_kill", "disk_full", "manifest_lock", "clock_step", "sigstop_watchdog")}
        self.sent = {k: [0, 0] for k in ("outbox", "bucket", "drop", "portal")}
        self.agent = None
        self.incarnation_start = 0
        self.expected_exit = False
        self.unexpected_exits = []
        self.restarts = 0
        self.samples = []           # (t, rss_kib, fds)
        self.last_ping = time.time()
        self.problems = []
        self.fault_threads = []
        self.hold_kills = threading.Event()
        self.watchdog_kills = 0
        self.pings = 0

    # MARK: set-up

    def sh(self, *args, check=True, **kw):
        return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    def setup(self):
        w = self.work
        for d in ("sftp/outbox", "drop", "state", "mappings", "keys", "lakefs"):
            os.makedirs(os.path.join(w, d), exist_ok=True)
        self.lakefs = os.path.join(w, "lakefs")
        if self.root:
            # Room for what a run sends (about 80 MB a minute) and its outputs.
            size = int(os.environ.get("SOAK_LAKE_BYTES", str(max(2 << 30, int(self.minutes * 200e6)))))
            self.sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", self.lakefs)
        self.lake = os.path.join(self.lakefs, "lake")
        # The clock shim and its offset file.
        src = os.path.join(w, "clockshift.c")
        open(src, "w").write(CLOCK_SHIM)
        self.shim = os.path.join(w, "clockshift.so")
        self.sh("gcc", "-shared", "-fPIC", "-O2", "-o", self.shim, src, "-ldl")
        self.clock_file = os.path.join(w, "clock-offset")
        open(self.clock_file, "wb").write(struct.pack("<q", 0))
        # sshd.
        self.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(w, "keys/host"))
        self.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(w, "keys/client"))
        shutil.copy(os.path.join(w, "keys/client.pub"), os.path.join(w, "keys/authorized_keys"))
        self.ssh_port = free_port()
        user = subprocess.run(["id", "-un"], stdout=subprocess.PIPE, text=True).stdout.strip()
        open(os.path.join(w, "sshd_config"), "w").write(f"""Port {self.ssh_port}
ListenAddress 127.0.0.1
HostKey {w}/keys/host
PidFile {w}/sshd.pid
AuthorizedKeysFile {w}/keys/authorized_keys
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
PermitRootLogin yes
Subsystem sftp internal-sftp
LogLevel ERROR
""")
        if self.root:
            os.makedirs("/run/sshd", exist_ok=True)
        self.start_sshd()
        # moto.
        self.moto_port = free_port()
        self.start_moto()
        open(os.path.join(w, "keys/s3"), "w").write("[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        self.api_port = free_port()
        self.notify = os.path.join(w, "notify")
        open(os.path.join(w, "agent.conf"), "w").write(f"""[agent]
state_dir = "{w}/state"
lake_dir = "{self.lake}"
mappings_dir = "{w}/mappings"

[api]
listen = "127.0.0.1:{self.api_port}"

[clients.acme.sources.outbox]
type = "sftp"
host = "127.0.0.1"
port = {self.ssh_port}
user = "{user}"
identity_file = "{w}/keys/client"
remote_dir = "{w}/sftp/outbox"
min_age = "0s"
poll_interval = "3s"
connect_timeout = "5s"
io_timeout = "10s"

[clients.acme.sources.bucket]
type = "s3"
endpoint = "http://127.0.0.1:{self.moto_port}"
region = "us-east-1"
bucket = "soak"
path_style = true
credentials_file = "{w}/keys/s3"
min_age = "0s"
poll_interval = "3s"

[clients.acme.sources.drop]
type = "folder"
path = "{w}/drop"
min_age = "0s"

[clients.acme.sources.portal]
type = "http"
""")
        open(os.path.join(w, "mappings/acme.toml"), "w").write("""[datasets.rows]
match = ["**/*.csv"]
format = "csv"
fields = [
  { name = "id", source = "id", type = "int64" },
  { name = "name", source = "name", type = "string" },
  { name = "amount", source = "amount", type = "decimal(12,2)" },
  { name = "note", source = "note", type = "string" },
]
""")
        self.config = os.path.join(w, "agent.conf")
        r = self.sluice("check-config")
        if r.returncode != 0:
            raise SystemExit(f"check-config failed: {r.stderr}")
        r = self.sluice("trust", "acme", "--source", "outbox", "--yes")
        if r.returncode != 0:
            raise SystemExit(f"trust failed: {r.stderr}")
        r = self.sluice("token", "create", "acme", "--source", "portal")
        if r.returncode != 0:
            raise SystemExit(f"token create failed: {r.stderr}")
        self.token = r.stdout.strip()
        self.manifest = os.path.join(w, "state/manifest.sqlite")
        # The supervisor's watchdog socket (what systemd's NOTIFY_SOCKET is).
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.bind(self.notify)
        self.notify_sock.settimeout(0.5)

    def sluice(self, *args, timeout=600):
        return subprocess.run([self.bin, *args, "--config", self.config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)

    def start_sshd(self):
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(self.work, "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "sshd.log"), "a"))
        if not wait_port(self.ssh_port):
            raise SystemExit("sshd did not start")

    def start_moto(self):
        self.moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "moto.log"), "a"))
        if not wait_port(self.moto_port, 30):
            raise SystemExit("moto did not start")
        import boto3
        self.s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.moto_port}", region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test")
        self.s3.create_bucket(Bucket="soak")
        with self.lock:
            objects = dict(self.s3_objects)
        for key, size in objects.items():
            self.s3.put_object(Bucket="soak", Key=key, Body=content(key, size))

    # MARK: the agent and its supervisor

    def start_agent(self):
        env = dict(os.environ, LD_PRELOAD=self.shim, SOAK_CLOCK_FILE=self.clock_file, NOTIFY_SOCKET=self.notify,
                   WATCHDOG_USEC=str(WATCHDOG_SECONDS * 1_000_000))
        env.pop("WATCHDOG_PID", None)
        self.agent = subprocess.Popen([self.bin, "run", "--config", self.config], env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(self.work, "agent.log"), "a"))
        self.incarnation_start = time.time()
        self.last_ping = time.time()

    def kill_agent(self, sig):
        """Signals the agent if it is running; whether it was."""
        with self.lock:
            if self.agent and self.agent.poll() is None:
                self.expected_exit = True
                self.agent.send_signal(sig)
                return True
            return False

    def supervisor(self):
        """Restarts the agent after it dies (RestartSec=1), kills it when it misses the
        watchdog, and samples its memory and descriptors."""
        last_sample = 0
        while not self.stop.is_set() or self.agent_wanted:
            try:
                msg = self.notify_sock.recv(4096).decode(errors="replace")
                if "WATCHDOG=1" in msg:
                    self.last_ping = time.time()
                    self.pings += 1
            except socket.timeout:
                pass
            with self.lock:
                agent = self.agent
            if agent is None:
                continue
            code = agent.poll()
            if code is not None:
                with self.lock:
                    if not self.expected_exit and self.agent_wanted:
                        self.unexpected_exits.append(code)
                        log(f"the agent exited by itself with {code}")
                    self.expected_exit = False
                if not self.agent_wanted:
                    return
                time.sleep(1)
                with self.lock:
                    self.start_agent()
                    self.restarts += 1
                continue
            now = time.time()
            if now - self.last_ping > WATCHDOG_SECONDS + 2 and now - self.incarnation_start > WATCHDOG_SECONDS + 2:
                log("watchdog: no ping: SIGABRT, then SIGKILL")
                self.kill_agent(signal.SIGABRT)
                time.sleep(3)
                self.kill_agent(signal.SIGKILL)
                agent.wait()
                self.watchdog_kills += 1
                continue
            if now - last_sample >= 2:
                last_sample = now
                try:
                    rss = next(int(l.split()[1]) for l in open(f"/proc/{agent.pid}/status") if l.startswith("VmRSS:"))
                    fds = len(os.listdir(f"/proc/{agent.pid}/fd"))
                    self.samples.append((now, rss, fds))
                except (OSError, StopIteration):
                    pass

    # MARK: deliveries

    def new_name(self, channel):
        with self.lock:
            n = sum(v[0] for v in self.sent.values()) + len(self.pending_uploads)
        return f"{channel}/{time.strftime('%H%M%S')}-{n}-{self.rng.getrandbits(32):08x}.csv"

    def record(self, source, path, data):
        with self.lock:
            self.ledger[(source, path)] = (hashlib.sha256(data).hexdigest(), len(data))
            self.sent[source][0] += 1
            self.sent[source][1] += len(data)

    def deliver_one(self):
        channel = self.rng.choice(["outbox", "bucket", "drop", "portal"])
        size = file_size(self.rng, self.max_bytes)
        name = self.new_name(channel).split("/", 1)[1]
        data = content(name, size)
        if channel == "outbox":
            tmp = os.path.join(self.work, "sftp", ".tmp-" + name)
            open(tmp, "wb").write(data)
            os.rename(tmp, os.path.join(self.work, "sftp/outbox", name))
            self.record("outbox", name, data)
        elif channel == "drop":
            tmp = os.path.join(self.work, ".drop-" + name)
            open(tmp, "wb").write(data)
            os.rename(tmp, os.path.join(self.work, "drop", name))
            self.record("drop", name, data)
        elif channel == "bucket":
            with self.lock:
                self.s3_objects[name] = size
            for _ in range(60):
                try:
                    self.s3.put_object(Bucket="soak", Key=name, Body=data)
                    break
                except Exception:
                    time.sleep(1)  # moto is down: the client tries again
            self.record("bucket", name, data)
        else:
            with self.lock:
                self.pending_uploads.append((name, size))
        self.send_uploads()

    def send_uploads(self):
        with self.lock:
            pending, self.pending_uploads = self.pending_uploads, []
        left = []
        for name, size in pending:
            data = content(name, size)
            req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/api/v1/files/{name}", data=data, method="PUT",
                                         headers={"Authorization": f"Bearer {self.token}", "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    if resp.status in (200, 201):
                        self.record("portal", name, data)
                        continue
            except (urllib.error.URLError, OSError, ConnectionError):
                pass
            left.append((name, size))  # the agent is down or busy: the client sends it again
        with self.lock:
            self.pending_uploads = left + self.pending_uploads

    def generator(self):
        while not self.stop.is_set():
            try:
                self.deliver_one()
            except Exception as e:  # noqa: BLE001 - a delivery that failed is retried by the next one
                log(f"delivery: {e}")
            self.stop.wait(self.rng.uniform(0.2, 1.5))

    # MARK: faults

    def fault_sigkill(self):
        if self.kill_agent(signal.SIGKILL):
            self.faults["sigkill"] += 1

    def fault_sshd(self):
        self.sshd.kill()
        self.sshd.wait()
        self.faults["sshd_kill"] += 1
        time.sleep(self.rng.uniform(1, 5))
        self.start_sshd()

    def fault_moto(self):
        self.moto.kill()
        self.moto.wait()
        self.faults["moto_kill"] += 1
        time.sleep(self.rng.uniform(1, 4))
        self.start_moto()

    def fault_disk_full(self):
        if not self.root:
            return
        ballast = os.path.join(self.lakefs, "ballast")
        st = os.statvfs(self.lakefs)
        free = st.f_bavail * st.f_frsize
        subprocess.run(["fallocate", "-l", str(max(free - 4096, 0)), ballast], stderr=subprocess.DEVNULL)
        self.faults["disk_full"] += 1
        time.sleep(self.rng.uniform(10, 25))
        os.remove(ballast)

    def fault_manifest_lock(self):
        db = sqlite3.connect(self.manifest, timeout=60)
        try:
            db.execute("BEGIN EXCLUSIVE")
            self.faults["manifest_lock"] += 1
            time.sleep(BUSY_TIMEOUT + 5)
            db.execute("ROLLBACK")
        finally:
            db.close()

    def set_clock(self, seconds):
        with open(self.clock_file, "r+b") as f:
            f.write(struct.pack("<q", seconds))

    def fault_clock(self):
        first = self.rng.choice([3600, -3600])
        self.set_clock(first)
        self.faults["clock_step"] += 1
        time.sleep(self.rng.uniform(15, 30))
        self.set_clock(0)

    def fault_sigstop(self):
        # No SIGKILL meanwhile: the watchdog is what must end the stopped agent.
        self.hold_kills.set()
        try:
            for _ in range(100):
                with self.lock:
                    agent = self.agent
                if agent is not None and agent.poll() is None and time.time() - self.last_ping < 3:
                    break
                time.sleep(0.2)
            before = self.watchdog_kills
            agent.send_signal(signal.SIGSTOP)
            self.faults["sigstop_watchdog"] += 1
            end = time.time() + WATCHDOG_SECONDS + 20
            while self.watchdog_kills == before and time.time() < end:
                time.sleep(0.5)
            if self.watchdog_kills == before:
                self.problems.append("the watchdog did not end an agent stopped for longer than WatchdogSec")
        finally:
            self.hold_kills.clear()

    def faulter(self):
        """SIGKILLs every ~15 s; each other fault at random instants, at least once a run."""
        others = [self.fault_sshd, self.fault_moto, self.fault_disk_full, self.fault_manifest_lock, self.fault_clock, self.fault_sigstop]
        span = self.minutes * 60
        start = time.time()
        # Every other fault once in each part of the run, in random order, at a random instant.
        rounds = max(1, int(span // 300))
        plan = []
        for r in range(rounds):
            kinds = others[:]
            self.rng.shuffle(kinds)
            for i, f in enumerate(kinds):
                plan.append((start + span * (r + (i + self.rng.random()) / len(kinds)) / rounds * 0.85, f))
        plan.sort(key=lambda p: p[0])
        next_kill = start + self.rng.uniform(5, 15)

        def inject(f):
            log(f"fault: {f.__name__[6:]}")
            try:
                f()
            except Exception as e:  # noqa: BLE001
                self.problems.append(f"fault {f.__name__} failed to run: {e}")
        while not self.stop.is_set():
            now = time.time()
            if plan and now >= plan[0][0]:
                # Each in a thread of its own: a fault may last longer than the gap to the next.
                t = threading.Thread(target=inject, args=(plan.pop(0)[1],), daemon=True)
                t.start()
                self.fault_threads.append(t)
                continue
            if now >= next_kill and not self.hold_kills.is_set():
                self.fault_sigkill()
                next_kill = now + self.rng.uniform(8, 22) * min(1.0, span / 1800 + 0.5)
            self.stop.wait(0.2)

    # MARK: the end

    def versions(self):
        db = sqlite3.connect(f"file:{self.manifest}?mode=ro", uri=True, timeout=60)
        try:
            return db.execute("SELECT source, path, sha256, size, version_id FROM versions WHERE client = 'acme'").fetchall()
        finally:
            db.close()

    def transforms(self):
        db = sqlite3.connect(f"file:{self.manifest}?mode=ro", uri=True, timeout=60)
        try:
            return db.execute("SELECT version_id, status, dataset FROM transform WHERE parent_id IS NULL").fetchall()
        finally:
            db.close()

    def caught_up(self):
        have = {(s, p, sha) for s, p, sha, _, _ in self.versions()}
        with self.lock:
            want = {(s, p, sha) for (s, p), (sha, _) in self.ledger.items()}
        missing = want - have
        if missing:
            return False, f"{len(missing)} files not yet ingested"
        rows = self.transforms()
        ok = {v for v, status, _ in rows if status == "ok"}
        tried = {v for v, _, _ in rows}
        untransformed = [v for _, _, _, size, v in self.versions() if v not in (ok if size >= len(HEADER) else tried)]
        if untransformed:
            return False, f"{len(untransformed)} versions not yet transformed"
        return True, "caught up"

    def run(self):
        log(f"work folder {self.work}, seed {self.seed}, {self.minutes} min, files up to {self.max_bytes} bytes, sluice {self.bin}")
        self.setup()
        self.agent_wanted = True
        self.start_agent()
        threads = [threading.Thread(target=f, daemon=True) for f in (self.supervisor, self.generator, self.faulter)]
        for t in threads:
            t.start()
        t0 = time.time()
        self.stop.wait(self.minutes * 60)
        self.stop.set()
        threads[1].join()
        threads[2].join()
        for t in self.fault_threads:
            t.join()
        self.set_clock(0)
        fault_end = time.time()
        log("deliveries and faults stopped; the uploads not taken yet are sent again")
        for _ in range(120):
            with self.lock:
                left = len(self.pending_uploads)
            if not left:
                break
            self.send_uploads()
            time.sleep(1)
        deadline = time.time() + 300 + sum(v[1] for v in self.sent.values()) / 20e6
        state = (False, "")
        while time.time() < deadline:
            state = self.caught_up()
            if state[0]:
                break
            time.sleep(3)
        log(f"catch-up: {state[1]} after {time.time() - fault_end:.0f} s")
        self.agent_wanted = False
        self.kill_agent(signal.SIGTERM)
        try:
            code = self.agent.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = "did not stop in 120 s"
            self.agent.kill()
        threads[0].join(timeout=10)
        return self.check(state, code, time.time() - t0)

    def check(self, state, stop_code, seconds):
        problems = list(self.problems)
        if not state[0]:
            problems.append(f"the agent did not catch up: {state[1]}")
        if stop_code != 0:
            problems.append(f"the agent's clean stop exited with {stop_code}")
        if self.pings == 0:
            problems.append("the agent never pinged the watchdog (NOTIFY_SOCKET, WATCHDOG_USEC)")
        if self.unexpected_exits:
            problems.append(f"the agent exited by itself {len(self.unexpected_exits)} times: {self.unexpected_exits[:5]}")
        versions = self.versions()
        seen = {}
        for s, p, sha, size, _ in versions:
            seen.setdefault((s, p), []).append(sha)
        with self.lock:
            ledger = dict(self.ledger)
        doubled = [k for k, shas in seen.items() if len(shas) > 1]
        extra = [k for k in seen if k not in ledger]
        lost = [k for k in ledger if k not in seen]
        wrong = [k for k in ledger if k in seen and ledger[k][0] not in seen[k]]
        for what, keys in (("stored twice", doubled), ("stored but never sent", extra), ("lost", lost), ("stored with other bytes", wrong)):
            if keys:
                problems.append(f"{len(keys)} files {what}: {keys[:3]}")
        ok = {}
        tried = set()
        for v, status, dataset in self.transforms():
            tried.add(v)
            if status == "ok":
                ok[(v, dataset)] = ok.get((v, dataset), 0) + 1
        done = {k[0] for k in ok}
        # A file shorter than the CSV header cannot be transformed: its transform must have run
        # (and failed); every other version must have been transformed ok.
        no_transform = [v for _, _, _, size, v in versions if v not in (done if size >= len(HEADER) else tried)]
        twice = [k for k, n in ok.items() if n > 1]
        if no_transform:
            problems.append(f"{len(no_transform)} versions without their transform")
        if twice:
            problems.append(f"{len(twice)} versions transformed ok twice")
        audit = self.sluice("audit", "--json")
        if audit.returncode != 0:
            problems.append(f"audit exit {audit.returncode}: {audit.stdout[:500]} {audit.stderr[:500]}")
        temps = [os.path.join(d, f) for d, _, fs in os.walk(self.lake) for f in fs if f.startswith(".%tmp-")]
        if temps:
            problems.append(f"{len(temps)} temp files left in the lake: {temps[:3]}")
        partial = os.path.join(self.work, "state", "partial")
        left = [f for _, _, fs in os.walk(partial) for f in fs] if os.path.isdir(partial) else []
        if left:
            problems.append(f"{len(left)} partial transfers left in state/partial")
        # Flat memory and descriptors: the first third of the run against the last third.
        t = [s[0] for s in self.samples]
        flat = {}
        if len(self.samples) >= 9:
            lo, hi = min(t), max(t)
            first = sorted(s for s in self.samples if s[0] <= lo + (hi - lo) / 3)
            last = sorted(s for s in self.samples if s[0] >= hi - (hi - lo) / 3)

            def median(xs):
                xs = sorted(xs)
                return xs[len(xs) // 2] if xs else 0
            flat = {"rss_first_mib": median([s[1] for s in first]) / 1024, "rss_last_mib": median([s[1] for s in last]) / 1024,
                    "rss_max_mib": max(s[1] for s in self.samples) / 1024,
                    "fds_first": median([s[2] for s in first]), "fds_last": median([s[2] for s in last]), "fds_max": max(s[2] for s in self.samples)}
            if flat["rss_last_mib"] > flat["rss_first_mib"] * 1.5 + 30:
                problems.append(f"RSS grew: {flat['rss_first_mib']:.0f} MiB → {flat['rss_last_mib']:.0f} MiB")
            if flat["fds_last"] > flat["fds_first"] + 16:
                problems.append(f"open descriptors grew: {flat['fds_first']} → {flat['fds_last']}")
        else:
            problems.append("too few memory samples to judge")
        report = {
            "minutes": self.minutes, "seconds": round(seconds), "seed": self.seed, "sluice": self.bin,
            "faults": self.faults, "agent_restarts": self.restarts, "watchdog_pings": self.pings, "watchdog_kills": self.watchdog_kills,
            "files": {k: v[0] for k, v in self.sent.items()}, "bytes": {k: v[1] for k, v in self.sent.items()},
            "largest_file": max((size for _, size in ledger.values()), default=0),
            "files_over_5mb": sum(1 for _, size in ledger.values() if size > 5 << 20),
            "versions": len(versions), "ok_transforms": sum(ok.values()), "audit_clean": audit.returncode == 0,
            "memory": flat, "problems": problems, "result": "pass" if not problems else "fail",
        }
        print(json.dumps(report, indent=2))
        if os.environ.get("SOAK_REPORT"):
            open(os.environ["SOAK_REPORT"], "w").write(json.dumps(report, indent=2))
        return 0 if not problems else 1

    def cleanup(self):
        for p in (getattr(self, "agent", None), getattr(self, "sshd", None), getattr(self, "moto", None)):
            if p is not None and p.poll() is None:
                p.kill()
        if self.root and os.path.ismount(self.lakefs):
            subprocess.run(["umount", "-l", self.lakefs])
        if os.environ.get("SOAK_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 30
    soak = Soak(minutes)
    try:
        code = soak.run()
    finally:
        soak.cleanup()
    sys.exit(code)


if __name__ == "__main__":
    main()
