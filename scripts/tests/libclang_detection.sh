#!/usr/bin/env bash
# Proves setup's libclang detection asks what bindgen needs: a folder holding only Debian's
# libclang-cpp (what llvm-14 ships) counts as missing; libclang.so / libclang-N.so.N count as
# present. Runs against fake library folders; installs and removes nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/libclang.sh
source "$here/libclang.sh"
export LIANDONG_SETUP_NO_DPKG=1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect present|missing DESCRIPTION FILES...
  local want="$1" what="$2"; shift 2
  local dir="$tmp/$RANDOM$RANDOM"
  mkdir -p "$dir"
  local f
  for f in "$@"; do : >"$dir/$f"; done
  local got=missing
  LIANDONG_LIBCLANG_DIRS="$dir" libclang_present && got=present
  if [ "$got" = "$want" ]; then
    echo "ok: $what -> $got"
  else
    echo "FAIL: $what -> $got, expected $want" >&2
    fail=1
  fi
}
expect missing "empty folder"
expect missing "only libclang-cpp.so.14 (Debian's llvm-14)" libclang-cpp.so.14
expect missing "libclang-cpp.so and libLLVM" libclang-cpp.so libLLVM-14.so.1
expect present "libclang-14.so.1 (Debian's libclang1-14)" libclang-cpp.so.14 libclang-14.so.1
expect present "libclang.so (a -dev symlink)" libclang.so
expect present "libclang.so.1" libclang.so.1
expect present "libclang-17.so" libclang-17.so
# Two folders: the first without, the second with.
d1="$tmp/a"; d2="$tmp/b"; mkdir -p "$d1" "$d2"; : >"$d1/libclang-cpp.so.14"; : >"$d2/libclang-14.so.1"
if LIANDONG_LIBCLANG_DIRS="$d1:$d2" libclang_present; then echo "ok: second folder searched"; else
  echo "FAIL: the second search folder was not searched" >&2; fail=1; fi
exit $fail
