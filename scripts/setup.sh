#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12 when it is missing: libclang (RocksDB's
# bindings), python3 with venv (the Open311 test runs a client from PyPI), and, as root, nftables
# (the kernel-partition chaos test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/libclang.sh
source "$here/libclang.sh"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: $1 is missing and this is not a Debian/Ubuntu machine: install $1 by hand" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! libclang_present; then
  echo "setup: installing libclang-dev (RocksDB's Rust bindings load libclang at build time)"
  apt_install libclang-dev
  if ! libclang_present; then
    echo "setup: libclang-dev was installed but no libclang.so was found; set LIBCLANG_PATH" >&2
    exit 1
  fi
fi

# The kernel-partition chaos test (chaos-tests/tests/kernel_partition.rs) needs nft when it runs
# as root; without root it skips, so only root installs it.
if [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null 2>&1; then
  echo "setup: installing nftables (the kernel-partition chaos test uses nft as root)"
  apt_install nftables
fi

# The public surface's test (ops/tests/public.rs) runs an Open311 client from PyPI in a venv:
# Debian's python3 makes one only with python3-venv (ensurepip).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup: installing python3 and python3-venv (the Open311 test runs a PyPI client in a venv)"
  apt_install python3 python3-venv
fi
