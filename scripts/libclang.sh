#!/usr/bin/env bash
# Does this machine have the libclang that RocksDB's Rust bindings (bindgen, through clang-sys)
# load at build time? Sourced by scripts/setup.sh; tested by scripts/tests/libclang_detection.sh.
#
# clang-sys looks, in order, in $LIBCLANG_PATH, in `llvm-config --libdir`, and in the usual
# library folders, for a file named libclang.so, libclang-N.so, libclang.so.N or libclang-N.so.N.
# libclang-cpp.so (Debian's llvm packages ship it) is a different library: bindgen cannot use it,
# so it must never count.

# The folders clang-sys searches, one per line. LIANDONG_LIBCLANG_DIRS (colon-separated) replaces
# them, so a test can point the detection at a folder of fake libraries.
libclang_search_dirs() {
  if [ -n "${LIANDONG_LIBCLANG_DIRS:-}" ]; then
    tr ':' '\n' <<<"$LIANDONG_LIBCLANG_DIRS"
    return
  fi
  [ -n "${LIBCLANG_PATH:-}" ] && echo "$LIBCLANG_PATH"
  if command -v llvm-config >/dev/null 2>&1; then llvm-config --libdir 2>/dev/null || true; fi
  local d
  for d in /usr/lib/llvm-*/lib /usr/local/lib /usr/lib /usr/lib64 /lib /lib64 \
    /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
    [ -d "$d" ] && echo "$d"
  done
}

# True when $1 (a file name, no folder) is a library bindgen can load.
is_bindgen_libclang() {
  case "$1" in
    libclang-cpp*) return 1 ;;
    libclang.so | libclang.so.* | libclang-[0-9]*.so | libclang-[0-9]*.so.*) return 0 ;;
    *) return 1 ;;
  esac
}

# Prints the first usable libclang found and returns 0, or returns 1 when there is none.
find_libclang() {
  local dir file
  while IFS= read -r dir; do
    [ -n "$dir" ] && [ -d "$dir" ] || continue
    for file in "$dir"/libclang*; do
      [ -e "$file" ] || continue
      if is_bindgen_libclang "$(basename "$file")"; then
        echo "$file"
        return 0
      fi
    done
  done < <(libclang_search_dirs)
  return 1
}

# True when the build can find libclang: Debian's libclang-dev is installed (it brings the library
# and the clang headers bindgen parses with), or a usable library is found where clang-sys looks.
# LIANDONG_SETUP_NO_DPKG=1 skips the package check (tests of the file search).
libclang_present() {
  if [ -z "${LIANDONG_SETUP_NO_DPKG:-}" ] && command -v dpkg >/dev/null 2>&1; then
    if dpkg -s libclang-dev >/dev/null 2>&1; then return 0; fi
    # On Debian the headers come with the -dev package: a bare libclang1-N is not enough.
    if [ -z "${LIBCLANG_PATH:-}" ]; then return 1; fi
  fi
  find_libclang >/dev/null
}
