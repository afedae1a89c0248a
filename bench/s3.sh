#!/usr/bin/env bash
# S3 benchmark (release build): `sluice pull` of an s3 source against the AWS CLI's
# `aws s3 cp --recursive`, in the same run, from the same loopback S3 API server (moto), onto
# the same file system.
#   bash bench/s3.sh
# Needs: pip install 'moto[server]' boto3 awscli
# Env: BENCH_DIR (default /var/tmp), BENCH_RUNS (default 3; medians are reported),
#      BENCH_BIG_MB (default 1024), BENCH_SMALL (default 2000 objects of 8 KiB),
#      BENCH_CONNECTIONS (max_connections for sluice, default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import moto.server, boto3" 2>/dev/null || { echo "needs moto and boto3: pip install 'moto[server]' boto3" >&2; exit 2; }
command -v aws >/dev/null || { echo "needs the AWS CLI: pip install awscli" >&2; exit 2; }
RUNS="${BENCH_RUNS:-3}"
BIG_MB="${BENCH_BIG_MB:-1024}"
SMALL="${BENCH_SMALL:-2000}"
CONNECTIONS="${BENCH_CONNECTIONS:-4}"
. bench/lib.sh
bench_setup s3 $(( BIG_MB * 3 + 2048 ))

start_moto

echo "file system: $(df -T "$W" | awk 'NR==2 {print $1, $2}')${LOOP:+ (fresh loop-mounted image)}; moto on $EP" >&2
echo "putting one ${BIG_MB} MiB object and $SMALL x 8 KiB objects ..." >&2
head -c $((BIG_MB << 20)) /dev/urandom > "$W/big.bin"
python3 - "$EP" "$W/big.bin" "$SMALL" <<'PY'
import concurrent.futures, os, sys
import boto3
from botocore.config import Config
ep, big, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=ep, config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
s3.create_bucket(Bucket="bench")
s3.upload_file(big, "bench", "big/big.bin")
def put(i):
    s3.put_object(Bucket="bench", Key=f"small/d{i % 20:02d}/f{i:05d}.csv", Body=os.urandom(8192))
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(n)))
PY
rm -f "$W/big.bin"

conf() { # $1 = dir, $2 = prefix
  mkdir -p "$1"
  cat > "$1/agent.conf" <<CONF
[agent]
state_dir = "state"
lake_dir = "lake"
[clients.bench.sources.bucket]
type = "s3"
endpoint = "$EP"
region = "us-east-1"
bucket = "bench"
prefix = "$2"
path_style = true
credentials_file = "$W/credentials"
max_connections = $CONNECTIONS
min_age = "0s"
CONF
}

# Each run also prints (to stderr) the CPU time moto spent serving it: moto answers on one core
# at a time (Python's GIL), so that time is a floor under any client's time.
run_sluice() { # $1 = prefix; prints seconds and peak RSS (KiB)
  local d="$W/run-sluice" c0 out
  rm -rf "$d"; conf "$d" "$1"
  c0=$(server_cpu)
  out=$(timed_pull "$d")
  echo "  sluice $1: ${out%% *} s; moto's CPU meanwhile $(server_cpu_since "$c0") s" >&2
  echo "$out"
  rm -rf "$d"
}
run_ref() { # $1 = prefix
  local d="$W/run-aws" c0 t
  rm -rf "$d"; mkdir -p "$d"; sync
  c0=$(server_cpu)
  t=$(timed aws s3 cp --recursive --only-show-errors --endpoint-url "$EP" "s3://bench/$1" "$d/")
  echo "  aws $1: $t s; moto's CPU meanwhile $(server_cpu_since "$c0") s" >&2
  echo "$t"
  rm -rf "$d"
}

SLUICE_BIG=("big/"); REF_BIG=("big/"); SLUICE_SMALL=("small/"); REF_SMALL=("small/")
bench_compare "aws s3 cp --recursive" "one ${BIG_MB} MiB object" "$SMALL x 8 KiB objects" "<= 0.7" "<= 0.7" ""
echo "sluice: max_connections = $CONNECTIONS, hashing, fsync and the manifest commit included; aws: its defaults (10 concurrent requests, no fsync)" >&2
