#!/usr/bin/env bash
# Installs what the build needs on Debian 12 when it is missing: libclang (RocksDB's bindings).
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  echo "setup: installing libclang-dev (needed by RocksDB's Rust bindings)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libclang-dev
fi
# The kernel-partition chaos test (chaos-tests/tests/kernel_partition.rs) needs nft when it runs
# as root; without root it skips, so only root installs it.
if [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null 2>&1; then
  echo "setup: installing nftables (the kernel-partition chaos test uses nft as root)"
  apt-get update -qq
  apt-get install -y -qq nftables
fi
