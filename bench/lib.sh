# Sourced by bench/sftp.sh and bench/s3.sh: the release build, a work folder (as root on a fresh
# loop-mounted ext4 image: ext4 on a busy disk slows inode allocation after mass deletions and
# makes runs incomparable), cleanup of it and of the server the script starts, and small helpers.
#   bench_setup NAME IMAGE_MB   sets BIN, W and LOOP; the script sets SERVER_PID once it starts one.
bench_setup() {
  swift build -c release --product sluice >/dev/null
  BIN="$(swift build -c release --show-bin-path)/sluice"
  W="$(mktemp -d "${BENCH_DIR:-/var/tmp}/sluice-$1-bench.XXXXXX")"
  LOOP=""
  if [ "$(id -u)" -eq 0 ] && [ "${BENCH_LOOP:-1}" = 1 ] && command -v mkfs.ext4 >/dev/null; then
    truncate -s "$2M" "$W.img" && mkfs.ext4 -q -F "$W.img" && mount -o loop "$W.img" "$W" && LOOP=1
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
