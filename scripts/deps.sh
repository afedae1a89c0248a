# Sourced by examples/demo.sh, scripts/test.sh, scripts/build.sh and .ci/run: what the build
# and the tests need. Debian packages, Python packages, and libssh2 1.11 built from Debian's
# source package with Sluice's patch (patches/libssh2-decrypt-path.patch), linked statically.
SLUICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build and tests need. libssh2 is not among them: Sluice builds its own
# (build-essential, pkg-config, libssl-dev, zlib1g-dev and dpkg-dev are what that takes).
# postgresql gives initdb and pg_ctl: the PostgreSQL manifest tests start a server of their own.
SLUICE_APT_PACKAGES=(libsqlite3-dev sqlite3 openssl curl util-linux procps pkg-config openssh-server openssh-client libzstd-dev
                     libsnappy-dev systemd chromium chromium-driver libxml2 build-essential libssl-dev zlib1g-dev dpkg-dev patch
                     libarchive-dev gzip bzip2 xz-utils zstd zip unzip p7zip-full libgpgme-dev gnupg tar libcurl4-openssl-dev
                     postgresql)
# Python packages the tests use: pyarrow and DuckDB read every Parquet file Sluice writes;
# selenium drives chromium through the web console; moto's server is the S3 API the s3 source
# is tested against, and boto3 puts the test objects into it; aiosmtpd is the SMTP server
# (STARTTLS, AUTH) that email alerts are tested against; openlineage-python's models of the
# OpenLineage spec check every lineage event the tests see.
SLUICE_PIP_PACKAGES=(pyarrow duckdb selenium "moto[server]" boto3 aiosmtpd openlineage-python)

# Where libssh2 is built and installed: an ignored folder of the checkout unless
# SLUICE_DEPS_DIR names another (a cache shared between checkouts, say).
SLUICE_DEPS_DIR="${SLUICE_DEPS_DIR:-$SLUICE_ROOT/.deps}"
# The debian release whose libssh2 source package is built (1.11.x); the archive keeps only the
# current revision of a package, so none is pinned.
SLUICE_LIBSSH2_SUITE="${SLUICE_LIBSSH2_SUITE:-trixie}"
SLUICE_LIBSSH2_PATCH="$SLUICE_ROOT/patches/libssh2-decrypt-path.patch"
# swift build finds the patched libssh2 through this pkg-config file (Package.swift: sluice-libssh2).
export PKG_CONFIG_PATH="$SLUICE_DEPS_DIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

install_pip_deps() {
  python3 -c "import pyarrow, duckdb, selenium, moto.server, flask, boto3, aiosmtpd, openlineage.client" 2>/dev/null && return 0
  echo "==> pip installing: ${SLUICE_PIP_PACKAGES[*]}"
  python3 -m pip install --quiet "${SLUICE_PIP_PACKAGES[@]}"
}

install_deps() {
  install_pip_deps
  local missing=()
  for p in "${SLUICE_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "==> installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y "${missing[@]}"
  fi
  build_libssh2
}

# The build folder of the current libssh2 build: one per patch, so a changed patch builds anew.
libssh2_build_key() {
  local patch_sha
  patch_sha=$(sha256sum "$SLUICE_LIBSSH2_PATCH" | cut -c1-12)
  echo "libssh2-$SLUICE_LIBSSH2_SUITE-$patch_sha"
}

# Fetches Debian's libssh2 source package, applies Sluice's patch, builds a static library with
# OpenSSL and installs it under $SLUICE_DEPS_DIR/<key>, with a pkg-config file in
# $SLUICE_DEPS_DIR/pkgconfig. A finished build is kept and reused (a second run costs nothing).
# Fails, saying why, rather than falling back to the system's libssh2.
build_libssh2() {
  local key dir stamp
  key=$(libssh2_build_key)
  dir="$SLUICE_DEPS_DIR/$key"
  stamp="$dir/.built"
  if [ -f "$stamp" ] && [ -f "$SLUICE_DEPS_DIR/pkgconfig/sluice-libssh2.pc" ] && grep -q "$key" "$SLUICE_DEPS_DIR/pkgconfig/sluice-libssh2.pc"; then
    return 0
  fi
  echo "==> building libssh2 from Debian's $SLUICE_LIBSSH2_SUITE source package, with patches/$(basename "$SLUICE_LIBSSH2_PATCH")"
  ( set -euo pipefail
    fail() { echo "deps.sh: libssh2: $*" >&2; exit 1; }
    rm -rf "$dir"
    mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/apt/sources" "$dir/src"
    # A private apt state that knows only the deb-src entry: the machine's own lists are untouched.
    cat > "$dir/apt/sources/sluice-src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SLUICE_LIBSSH2_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local apt=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$dir/apt/sources" -o "Dir::State::Lists=$dir/apt/lists"
               -o "Dir::Cache=$dir/apt/cache" -o APT::Sandbox::User=root)
    apt-get "${apt[@]}" update > "$dir/apt.log" 2>&1 || fail "apt-get update of the $SLUICE_LIBSSH2_SUITE deb-src entry failed (see $dir/apt.log)"
    (cd "$dir/src" && apt-get "${apt[@]}" source --download-only libssh2 >> "$dir/apt.log" 2>&1) \
      || fail "apt-get source libssh2 ($SLUICE_LIBSSH2_SUITE) failed (see $dir/apt.log)"
    local dsc
    dsc=$(ls "$dir"/src/libssh2_*.dsc 2>/dev/null | head -1)
    [ -n "$dsc" ] || fail "no libssh2 .dsc was downloaded (see $dir/apt.log)"
    (cd "$dir/src" && dpkg-source -x "$(basename "$dsc")" libssh2 > "$dir/dpkg-source.log" 2>&1) || fail "dpkg-source -x $(basename "$dsc") failed"
    local version
    version=$(sed -n 's/^Version: //p' "$dsc")
    case "$version" in 1.11.*) ;; *) fail "Debian's $SLUICE_LIBSSH2_SUITE has libssh2 $version, not 1.11.x: set SLUICE_LIBSSH2_SUITE to a release that has 1.11";; esac
    (cd "$dir/src/libssh2" && patch -p1 --forward < "$SLUICE_LIBSSH2_PATCH" > "$dir/patch.log") \
      || fail "patches/$(basename "$SLUICE_LIBSSH2_PATCH") does not apply to libssh2 $version (see $dir/patch.log)"
    (cd "$dir/src/libssh2" && CFLAGS="-O2 -fPIC" ./configure --prefix="$dir/install" --disable-shared --enable-static --with-crypto=openssl \
        --with-libz --disable-examples-build --disable-docker-tests --disable-sshd-tests > "$dir/configure.log" 2>&1) \
      || fail "configure failed (see $dir/configure.log; it needs build-essential, libssl-dev and zlib1g-dev)"
    (cd "$dir/src/libssh2" && make -j"$(nproc)" > "$dir/make.log" 2>&1 && make install >> "$dir/make.log" 2>&1) \
      || fail "make failed (see $dir/make.log)"
    # What `sluice version` reports, and the mark Sources/CLibSSH2/shim.h requires.
    cat > "$dir/install/include/sluice_libssh2_build.h" <<EOF
/* Written by Sluice's scripts/deps.sh: this libssh2 is the one Sluice builds. */
#define SLUICE_LIBSSH2_PATCHED 1
#define SLUICE_LIBSSH2_PATCH "decrypt path"
#define SLUICE_LIBSSH2_SOURCE "Debian $SLUICE_LIBSSH2_SUITE source package $version"
EOF
    mkdir -p "$SLUICE_DEPS_DIR/pkgconfig"
    # The static library under a name of its own: a system libssh2 (libssh2-1-dev has a .so
    # and a .a) in a -L folder searched before this one can never be linked instead.
    mv "$dir/install/lib/libssh2.a" "$dir/install/lib/libsluice_ssh2.a"
    rm -f "$dir/install/lib/libssh2.la"
    cat > "$SLUICE_DEPS_DIR/pkgconfig/sluice-libssh2.pc.tmp" <<EOF
# $key: libssh2 $version (Debian source package) with patches/$(basename "$SLUICE_LIBSSH2_PATCH"), static
prefix=$dir/install
Name: sluice-libssh2
Description: libssh2 $version built by Sluice's scripts/deps.sh (patched: decrypt path)
Version: $version
Cflags: -I\${prefix}/include
Libs: -L\${prefix}/lib -lsluice_ssh2 -lssl -lcrypto -lz
EOF
    mv "$SLUICE_DEPS_DIR/pkgconfig/sluice-libssh2.pc.tmp" "$SLUICE_DEPS_DIR/pkgconfig/sluice-libssh2.pc"
    echo "$version" > "$stamp"
    # SwiftPM keeps the flags it read from pkg-config until the manifest changes.
    touch "$SLUICE_ROOT/Package.swift"
    echo "==> libssh2 $version built in $dir"
  ) || return 1
}

# libssh2's own tests that need no docker and no sshd, against the patched build.
check_libssh2() {
  local dir="$SLUICE_DEPS_DIR/$(libssh2_build_key)"
  echo "==> libssh2's own tests (make check) on the patched build"
  (cd "$dir/src/libssh2" && make -j"$(nproc)" check > "$dir/check.log" 2>&1) || {
    echo "deps.sh: libssh2's make check failed (see $dir/check.log):" >&2
    tail -30 "$dir/check.log" >&2
    return 1
  }
  grep -E "^# (TOTAL|PASS|FAIL|ERROR)" "$dir/src/libssh2/tests/test-suite.log" 2>/dev/null | tr '\n' ' '; echo
}
