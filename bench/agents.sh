#!/usr/bin/env bash
# Many agents (release build): the time from start until every object of an S3 source of
# BENCH_OBJECTS (default 4000) small CSVs is ingested and transformed, with one `sluice run`
# agent and with two, alternating, on one PostgreSQL manifest and a lake in a bucket, all on
# one loopback moto server. One agent polls the source at a time (its lease); the agents share
# the transforms (claims). Prints the medians, their ratio and the CPU moto used.
#   bash bench/agents.sh
# Needs: apt-get install postgresql; pip install 'moto[server]' boto3
# Env: BENCH_DIR (default /var/tmp), BENCH_OBJECTS, BENCH_RUNS (default 3), BENCH_WORKERS
#      (transform_workers per agent, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import moto.server, boto3" 2>/dev/null || { echo "needs moto and boto3: pip install 'moto[server]' boto3" >&2; exit 2; }
OBJECTS="${BENCH_OBJECTS:-4000}"; RUNS="${BENCH_RUNS:-3}"; WORKERS="${BENCH_WORKERS:-2}"
. bench/lib.sh
BENCH_LOOP=0 bench_setup agents 0
start_postgres

start_moto
python3 - "$EP" "$OBJECTS" <<'PY'
import concurrent.futures, sys
import boto3
from botocore.config import Config
ep, n = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
s3.create_bucket(Bucket="exports")
def put(i): s3.put_object(Bucket="exports", Key="in/%05d.csv" % i, Body=("id,amount\n%d,%d.50\n" % (i, i)).encode())
with concurrent.futures.ThreadPoolExecutor(16) as pool: list(pool.map(put, range(n)))
PY
echo "$OBJECTS objects in moto on $EP; $PGVER; transform_workers = $WORKERS per agent" >&2

run_case() {  # $1 agents, $2 run number; prints "seconds moto_cpu_seconds"
  local db="a$1r$2" lake="lake-$1-$2" pids=() manifest
  manifest=$(pg_database "$db")
  python3 -c "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='b', aws_secret_access_key='b', region_name='us-east-1').create_bucket(Bucket=sys.argv[2])" "$EP" "$lake"
  for a in $(seq "$1"); do
    local d="$W/$db-$a"; mkdir -p "$d/mappings"
    cat > "$d/mappings/acme.toml" <<'MAP'
[datasets.orders]
match = ["**/*.csv"]
format = "csv"
fields = [ { name = "id", source = "id", type = "int64", required = true }, { name = "amount", source = "amount", type = "decimal(12,2)" } ]
MAP
    cat > "$d/agent.conf" <<CONF
[agent]
name = "agent-$a"
state_dir = "state"
lake_dir = "lake"
log_level = "warning"
http_listen = ""
transform_workers = $WORKERS
lease_ttl = "10s"
$manifest
[lake]
url = "s3://$lake/prod"
endpoint = "$EP"
region = "us-east-1"
path_style = true
credentials_file = "$W/credentials"
[clients.acme.sources.bucket]
type = "s3"
endpoint = "$EP"
region = "us-east-1"
bucket = "exports"
prefix = "in/"
path_style = true
credentials_file = "$W/credentials"
min_age = "0s"
poll_interval = "1h"
max_connections = 8
CONF
  done
  local cpu0 t0 t1; cpu0=$(server_cpu); t0=$(now)
  for a in $(seq "$1"); do "$BIN" run --config "$W/$db-$a/agent.conf" 2>"$W/$db-$a/run.log" & pids+=($!); done
  until [ "$(pg_query "$db" "SELECT count(DISTINCT version_id) FROM transform" 2>/dev/null || echo 0)" -ge "$OBJECTS" ]; do sleep 0.1; done
  t1=$(now)
  local cpu; cpu=$(server_cpu_since "$cpu0")
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  local twice; twice=$(pg_query "$db" "SELECT count(*) - count(DISTINCT version_id) FROM transform")
  [ "$twice" = 0 ] || { echo "a version was transformed twice ($twice)" >&2; exit 1; }
  echo "$(calc "round($t1 - $t0, 2)") $cpu"
}

one=(); two=(); cpu1=(); cpu2=()
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS ..." >&2
  read -r s c < <(run_case 1 "$r"); one+=("$s"); cpu1+=("$c")
  read -r s c < <(run_case 2 "$r"); two+=("$s"); cpu2+=("$c")
done
m1=$(printf '%s\n' "${one[@]}" | median); m2=$(printf '%s\n' "${two[@]}" | median)
c1=$(printf '%s\n' "${cpu1[@]}" | median); c2=$(printf '%s\n' "${cpu2[@]}" | median)
printf '\n%s objects ingested and transformed, median of %s\n' "$OBJECTS" "$RUNS"
printf '%-10s %8.2f s  %7.0f objects/s  moto CPU %6.2f s (%3.0f%% of the wall time)\n' "1 agent" "$m1" "$(calc "$OBJECTS / $m1")" "$c1" "$(calc "100 * $c1 / $m1")"
printf '%-10s %8.2f s  %7.0f objects/s  moto CPU %6.2f s (%3.0f%% of the wall time)\n' "2 agents" "$m2" "$(calc "$OBJECTS / $m2")" "$c2" "$(calc "100 * $c2 / $m2")"
printf 'throughput of 2 agents / 1 agent: %.2f\n' "$(calc "$m1 / $m2")"
echo "runs: 1 agent ${one[*]}; 2 agents ${two[*]}" >&2
