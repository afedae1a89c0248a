#!/usr/bin/env bash
# SFTP benchmark (release build): `sluice pull` against OpenSSH's own `sftp` client, in the same
# run, against the same loopback sshd, on the same file system.
#   bash bench/sftp.sh
# Env: BENCH_DIR (default /var/tmp), BENCH_RUNS (default 3; medians are reported),
#      BENCH_BIG_MB (default 1024), BENCH_SMALL (default 2000 files of 8 KiB),
#      BENCH_CONNECTIONS (max_connections for sluice, default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/sbin/sshd >/dev/null || { echo "needs openssh-server (apt-get install openssh-server)" >&2; exit 2; }
RUNS="${BENCH_RUNS:-3}"
BIG_MB="${BENCH_BIG_MB:-1024}"
SMALL="${BENCH_SMALL:-2000}"
CONNECTIONS="${BENCH_CONNECTIONS:-4}"
. bench/lib.sh
bench_setup sftp $(( BIG_MB * 3 + 2048 ))

# A loopback sshd with generated keys, as the tests start it.
K="$W/keys"; mkdir -p "$K" "$W/served/big" "$W/served/small"
ssh-keygen -q -t ed25519 -N "" -f "$K/host" && ssh-keygen -q -t ed25519 -N "" -f "$K/client"
cp "$K/client.pub" "$K/authorized_keys"
PORT=$(free_port)
[ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd
cat > "$K/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $K/host
PidFile $K/sshd.pid
AuthorizedKeysFile $K/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
Subsystem sftp internal-sftp
LogLevel ERROR
CONF
/usr/sbin/sshd -D -e -f "$K/sshd_config" 2>"$W/sshd.log" &
SERVER_PID=$!
wait_port "$PORT"
USER_NAME=$(id -un)
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$K/host.pub")" > "$K/known_hosts"

echo "file system: $(df -T "$W" | awk 'NR==2 {print $1, $2}')${LOOP:+ (fresh loop-mounted image)}; sshd on 127.0.0.1:$PORT" >&2
echo "preparing one ${BIG_MB} MiB file and $SMALL x 8 KiB files ..." >&2
head -c $((BIG_MB << 20)) /dev/urandom > "$W/served/big/big.bin"
python3 - "$W/served/small" "$SMALL" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 20:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.csv"), "wb") as f:
        f.write(os.urandom(8192))
PY
touch -d '1 hour ago' "$W/served/big/big.bin" "$W/served/small"/*/*
sync

conf() { # $1 = dir, $2 = remote folder
  mkdir -p "$1"
  cat > "$1/agent.conf" <<CONF
[agent]
state_dir = "state"
lake_dir = "lake"
[clients.bench.sources.remote]
type = "sftp"
host = "127.0.0.1"
port = $PORT
user = "$USER_NAME"
identity_file = "$K/client"
known_hosts = "$K/known_hosts"
remote_dir = "$2"
max_connections = $CONNECTIONS
min_age = "0s"
CONF
}
SFTP=(sftp -q -P "$PORT" -i "$K/client" -o "UserKnownHostsFile=$K/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)

run_sluice() { # $1 = remote folder; prints seconds and peak RSS (KiB)
  local d="$W/run-sluice"
  rm -rf "$d"; conf "$d" "$1"
  timed_pull "$d"
  rm -rf "$d"
}
run_ref() { # $1 = remote path, $2 = recursive flag or ""
  local d="$W/run-sftp"
  rm -rf "$d"; mkdir -p "$d"; sync
  timed "${SFTP[@]}" $2 "$USER_NAME@127.0.0.1:$1" "$d/"
  rm -rf "$d"
}

SLUICE_BIG=("$W/served/big"); REF_BIG=("$W/served/big/big.bin" ""); SLUICE_SMALL=("$W/served/small"); REF_SMALL=("$W/served/small" "-r")
bench_compare "OpenSSH sftp" "one ${BIG_MB} MiB file" "$SMALL x 8 KiB files" "<= 1.0" "<= 0.5" "<= 64 MiB"
echo "sluice: max_connections = $CONNECTIONS, hashing and the durable commit included; sftp: plain get (no fsync)" >&2
