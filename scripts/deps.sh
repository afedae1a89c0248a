# Sourced by examples/demo.sh, scripts/test.sh and .ci/run: Debian packages the build and tests need.
SLUICE_APT_PACKAGES=(libsqlite3-dev sqlite3 openssl curl util-linux procps libssh2-1-dev pkg-config openssh-server openssh-client libzstd-dev libsnappy-dev systemd chromium chromium-driver libxml2)
# Python packages the tests use: pyarrow and DuckDB read every Parquet file Sluice writes;
# selenium drives chromium through the web console; moto's server is the S3 API the s3 source
# is tested against, and boto3 puts the test objects into it.
SLUICE_PIP_PACKAGES=(pyarrow duckdb selenium "moto[server]" boto3)

install_pip_deps() {
  python3 -c "import pyarrow, duckdb, selenium, moto.server, flask, boto3" 2>/dev/null && return 0
  echo "==> pip installing: ${SLUICE_PIP_PACKAGES[*]}"
  python3 -m pip install --quiet "${SLUICE_PIP_PACKAGES[@]}"
}

install_deps() {
  install_pip_deps
  local missing=()
  for p in "${SLUICE_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "==> installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y "${missing[@]}"
}
