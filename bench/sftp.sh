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

# One run, timed with its CPU: prints "seconds client_cpu peak_rss_kib sshd_cpu" (client CPU
# is user + system of the client process; sshd CPU is what the server's session processes used,
# counted through the listener, which reaps them).
sshd_cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / t}' "/proc/$SERVER_PID/stat"; }
measure() {
  local t0 t1 out c0
  sync
  c0=$(sshd_cpu); t0=$(now)
  out=$(/usr/bin/env time -f "%U %S %M" "$@" 2>&1 >/dev/null | tail -1)
  t1=$(now)
  sleep 0.2  # the session processes exit and are reaped
  read -r u sy rss <<<"$out"
  echo "$(calc "round($t1 - $t0, 3)") $(calc "round($u + $sy, 2)") $rss $(calc "round($(sshd_cpu) - $c0, 2)")"
}
run_sluice() { # $1 = remote folder
  local d="$W/run-sluice"
  rm -rf "$d"; conf "$d" "$1"
  measure "$BIN" pull bench --config "$d/agent.conf" --log-level error
  [ "$(find "$d/lake/raw" -type f | wc -l)" -ge 1 ] || { echo "sluice stored nothing" >&2; exit 1; }
  rm -rf "$d"
}
run_ref() { # $1 = remote path, $2 = recursive flag or "", $3… = more sftp options
  local d="$W/run-sftp" path="$1" flag="$2"; shift 2
  rm -rf "$d"; mkdir -p "$d"
  measure "${SFTP[@]}" "$@" $flag "$USER_NAME@127.0.0.1:$path" "$d/"
  rm -rf "$d"
}

# The durable-write floor: the same file copied onto the same file system with an fsync (dd
# conv=fsync), what any tool that makes the bytes durable pays at least (sftp does not fsync).
run_floor() { local t; sync; t=$(timed dd if="$W/served/big/big.bin" of="$W/floor.bin" bs=4M conv=fsync status=none); rm -f "$W/floor.bin"; echo "$t"; }

# Alternating rounds: sluice, sftp (default cipher), sftp -c aes128-gcm, for the big file; then
# sluice and sftp for the small files. Each line: seconds, client CPU, peak RSS, sshd CPU.
declare -a BIG_S BIG_R BIG_G SMALL_S SMALL_R FLOOR
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS ..." >&2
  BIG_S+=("$(run_sluice "$W/served/big")")
  BIG_R+=("$(run_ref "$W/served/big/big.bin" "")")
  BIG_G+=("$(run_ref "$W/served/big/big.bin" "" -c aes128-gcm@openssh.com)")
  SMALL_S+=("$(run_sluice "$W/served/small")")
  SMALL_R+=("$(run_ref "$W/served/small" "-r")")
  FLOOR+=("$(run_floor)")
done
col() { printf '%s\n' "${@:2}" | awk -v c="$1" '{print $c}' | median; }
ratio_med() { # median of the per-round ratios of two arrays' first columns
  local -n a=$1 b=$2; local i; for i in "${!a[@]}"; do calc "${a[$i]%% *} / ${b[$i]%% *}"; done | median
}
printf '\n%-44s %9s %11s %10s %10s\n' "case (median of $RUNS rounds)" "wall s" "client CPU" "peak RSS" "sshd CPU"
line() { local label=$1; shift; printf '%-44s %9.2f %11.2f %6d MiB %10.2f\n' "$label" "$(col 1 "$@")" "$(col 2 "$@")" "$(( $(col 3 "$@") / 1024 ))" "$(col 4 "$@")"; }
line "sluice pull, ${BIG_MB} MiB" "${BIG_S[@]}"
line "sftp (default cipher), ${BIG_MB} MiB" "${BIG_R[@]}"
line "sftp -c aes128-gcm, ${BIG_MB} MiB" "${BIG_G[@]}"
line "sluice pull, $SMALL x 8 KiB" "${SMALL_S[@]}"
line "sftp -r, $SMALL x 8 KiB" "${SMALL_R[@]}"
printf '%-44s %9.2f\n' "dd conv=fsync (durable-write floor), ${BIG_MB} MiB" "$(printf '%s\n' "${FLOOR[@]}" | median)"
echo
echo "ratio sluice / sftp (default cipher), ${BIG_MB} MiB: median of pairs $(ratio_med BIG_S BIG_R) (target <= 1.0)"
echo "ratio sluice / sftp -c aes128-gcm, ${BIG_MB} MiB:    median of pairs $(ratio_med BIG_S BIG_G)"
echo "ratio sluice / sftp, $SMALL x 8 KiB:          median of pairs $(ratio_med SMALL_S SMALL_R) (target <= 0.5)"
echo "peak RSS of sluice, ${BIG_MB} MiB: $(( $(printf '%s\n' "${BIG_S[@]}" | awk '{print $3}' | sort -n | tail -1) / 1024 )) MiB (target <= 64 MiB)"
echo "every round (wall client_cpu rss_kib sshd_cpu): sluice big ${BIG_S[*]// /\/} | sftp ${BIG_R[*]// /\/} | sftp-gcm ${BIG_G[*]// /\/} | sluice small ${SMALL_S[*]// /\/} | sftp small ${SMALL_R[*]// /\/}" >&2
echo "sluice: max_connections = $CONNECTIONS, libssh2 $("$BIN" version | sed -n 2p | cut -d' ' -f2-), hashing and the durable commit included; sftp: plain get (no fsync)" >&2
