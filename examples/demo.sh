#!/usr/bin/env bash
# Sets up what is missing, builds sluice, and runs it on the bundled example clients.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps

echo "==> building sluice (first build takes a few minutes)"
swift build --product sluice
BIN="$(swift build --show-bin-path)/sluice"
CONF=examples/agent.conf

echo "==> fresh example drop folders in example-run/drop"
rm -rf example-run
mkdir -p example-run
cp -R examples/drop example-run/drop

run() { echo; echo "\$ sluice $*"; "$BIN" "$@" --config "$CONF"; }
run check-config
run pull acme
run pull initech
run pull hooli
echo; echo "==> a client re-sends orders with a correction: a new version appears"
printf '1003;"Correction";1,00;01.10.2026 12:00\r\n' >> example-run/drop/acme/orders_2026-10-01.csv
run pull acme
run history acme
run audit

cat <<DONE

Done. Where things are:
  lake (raw versions):  $(pwd)/example-run/lake/raw/
  typed Parquet:        $(pwd)/example-run/lake/processed/   (python3 -c "import duckdb; print(duckdb.sql(\"SELECT * FROM 'example-run/lake/processed/**/*.parquet' LIMIT 5\"))")
  manifest (SQLite):    $(pwd)/example-run/state/manifest.sqlite
  history:              $BIN history acme --config $CONF
  query it yourself:    sqlite3 example-run/state/manifest.sqlite 'SELECT client, path, version, sha256 FROM versions'
DONE
