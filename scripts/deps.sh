# Sourced by examples/demo.sh, scripts/test.sh and .ci/run: Debian packages the build and tests need.
SLUICE_APT_PACKAGES=(libsqlite3-dev sqlite3 openssl util-linux procps libssh2-1-dev pkg-config openssh-server openssh-client)

install_deps() {
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
