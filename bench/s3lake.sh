#!/usr/bin/env bash
# S3 lake benchmark (release build): `sluice pull --no-transform` of a drop folder into a lake
# in a bucket (`[lake] url`) against the AWS CLI's `aws s3 cp --recursive` of the same folder
# to the same loopback S3 API server (moto), alternating, a fresh bucket per run.
#   bash bench/s3lake.sh
# Needs: pip install 'moto[server]' boto3 awscli
# Env: BENCH_DIR (default /var/tmp), BENCH_RUNS (default 3; medians are reported),
#      BENCH_SMALL (default 2000 files of 8 KiB), BENCH_BIG_MB (default 256: one file, in parts).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import moto.server, boto3" 2>/dev/null || { echo "needs moto and boto3: pip install 'moto[server]' boto3" >&2; exit 2; }
command -v aws >/dev/null || { echo "needs the AWS CLI: pip install awscli" >&2; exit 2; }
RUNS="${BENCH_RUNS:-3}"; SMALL="${BENCH_SMALL:-2000}"; BIG_MB="${BENCH_BIG_MB:-256}"
. bench/lib.sh
BENCH_LOOP=0 bench_setup s3lake 0

start_moto
mkdir -p "$W/small/d" "$W/big/d"
python3 - "$W/small/d" "$SMALL" <<'PY'
import os, sys
for i in range(int(sys.argv[2])):
    open(os.path.join(sys.argv[1], "f%05d.csv" % i), "wb").write(os.urandom(8192))
PY
head -c $((BIG_MB << 20)) /dev/urandom > "$W/big/d/big.bin"
echo "moto $(python3 -c 'import moto; print(moto.__version__)') on $EP; aws: $(aws --version 2>&1)" >&2

bucket() { local b; b="b$(date +%s%N)"; aws --endpoint-url "$EP" s3 mb "s3://$b" >/dev/null; echo "$b"; }
run_sluice() {  # $1 small|big; prints seconds
  local b d; b=$(bucket); d="$W/run-$b"; mkdir -p "$d"
  cat > "$d/agent.conf" <<CONF
[agent]
state_dir = "state"
lake_dir = "lake"
log_level = "warning"
[lake]
url = "s3://$b/prod"
endpoint = "$EP"
region = "us-east-1"
path_style = true
credentials_file = "$W/credentials"
[clients.bench.sources.drop]
type = "folder"
path = "$W/$1/d"
min_age = "0s"
CONF
  local s; s=$(timed "$BIN" pull bench --no-transform --config "$d/agent.conf")
  local stored; stored=$(aws --endpoint-url "$EP" s3 ls --recursive "s3://$b/prod/raw/" | wc -l)
  [ "$stored" -ge 1 ] || { echo "sluice stored nothing" >&2; exit 1; }
  rm -rf "$d"; echo "$s"
}
run_ref() {  # $1 small|big; prints seconds
  local b; b=$(bucket)
  timed aws --endpoint-url "$EP" s3 cp --recursive --quiet "$W/$1/d" "s3://$b/prod/raw/"
}

declare -A S R
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS ..." >&2
  for c in small big; do
    S[$c]+="$(run_sluice "$c") "; R[$c]+="$(run_ref "$c") "
  done
done
cpu0=$(server_cpu); t0=$(now); run_sluice small >/dev/null; t1=$(now); cpu=$(server_cpu_since "$cpu0")
printf '\n%-28s %12s %16s %7s %s\n' "case (median of $RUNS)" "sluice pull" "aws s3 cp -r" "ratio" "target"
for c in small big; do
  label=$([ "$c" = small ] && echo "$SMALL x 8 KiB" || echo "1 x $BIG_MB MiB (parts)")
  s=$(printf '%s\n' ${S[$c]} | median); a=$(printf '%s\n' ${R[$c]} | median)
  printf '%-28s %10.2f s %14.2f s %7.2f %s\n' "$label" "$s" "$a" "$(calc "$s / $a")" "$([ "$c" = small ] && echo '<= 1.0' || echo '')"
done
printf 'moto CPU during one more small sluice run: %.2f s of %.2f s wall\n' "$cpu" "$(calc "$t1 - $t0")"
echo "all runs: sluice small ${S[small]}| aws ${R[small]}; sluice big ${S[big]}| aws ${R[big]}" >&2
