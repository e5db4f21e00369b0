#!/usr/bin/env bash
# Benchmarks, release build: Liandong beside etcd 3.4 (3 members) and PostgreSQL (a primary and
# a synchronous standby), all on this machine's loopback and disk, in one run: the same clients,
# the same case documents, the same duration. Prints the table with the ratios and writes an
# HTML report with the latency plots. Figures are printed, never asserted.
#
#   scripts/bench.sh                      # 20 s per run, 64 clients for the loaded runs
#   BENCH_SECONDS=5 scripts/bench.sh      # a quick pass
#   BENCH_RESULTS=DIR scripts/bench.sh    # where the run reports and report.html go
#   BENCH_QUERY_CASES=N scripts/bench.sh  # cases in the query benchmark's provincial index
#                                         # (its fresh mode brings up Zhaotong, 162 offices)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN="${BENCH_SECONDS:-20}"
LOADED_CLIENTS="${BENCH_CLIENTS:-64}"
HANDOFF_CLIENTS="${BENCH_HANDOFF_CLIENTS:-4}"
TARGET="${CARGO_TARGET_DIR:-target}"
RESULTS="${BENCH_RESULTS:-$TARGET/bench/$(date +%Y%m%d-%H%M%S)}"
BIN="$TARGET/release"

scripts/setup.sh

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# Installs Debian packages for an anchor; says so and returns non-zero when it cannot.
install_anchor() {
  local what="$1"
  shift
  echo "bench: $what is missing: installing $* (apt)"
  if command -v apt-get >/dev/null 2>&1 &&
    $SUDO apt-get update -qq &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; then
    return 0
  fi
  echo "bench: could not install $*: the $what runs are skipped and their columns stay empty" >&2
  return 1
}

have_etcd=1
command -v etcd >/dev/null 2>&1 || install_anchor etcd etcd-server etcd-client || have_etcd=0
have_postgres=1
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null ||
  install_anchor PostgreSQL postgresql || have_postgres=0

cargo build --release -p liandong-benches -p liandong-node --bins
mkdir -p "$RESULTS"

# A run that fails leaves its row empty; the set goes on. Ctrl-C stops the set (the benchmark
# being run stops everything it started first).
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM
failed=()
run() {
  local name="$1"
  shift
  echo
  echo "== $name: $*"
  if ! "$BIN/$1" "${@:2}" --json-out "$RESULTS/$name.json"; then
    echo "bench: $name failed; its figures stay empty" >&2
    failed+=("$name")
  fi
}

documents="$RESULTS/case-documents.sample"
for clients in 1 "$LOADED_CLIENTS"; do
  run "file-$clients-liandong" intake --system liandong --clients "$clients" \
    --seconds "$SECONDS_PER_RUN" --documents-out "$documents"
  if [ ! -f "$documents" ]; then
    echo "bench: no case documents from Liandong: the anchors cannot run" >&2
    continue
  fi
  if [ "$have_etcd" = 1 ]; then
    run "file-$clients-etcd" intake --system etcd --clients "$clients" \
      --seconds "$SECONDS_PER_RUN" --documents "$documents"
  fi
  if [ "$have_postgres" = 1 ]; then
    run "file-$clients-postgres" intake --system postgres --clients "$clients" \
      --seconds "$SECONDS_PER_RUN" --documents "$documents"
  fi
done
run update intake --workload update --clients 1 --seconds "$SECONDS_PER_RUN"
run handoff federation --workload handoff --clients "$HANDOFF_CLIENTS" --seconds "$SECONDS_PER_RUN"
run query query --cases "${BENCH_QUERY_CASES:-1000000}"
# The query benchmark's other mode: fresh (scatter-gather) queries beside index queries on
# Zhaotong's 162 offices brought up as a real federation.
run query-fresh query --fresh-region 5306

echo
"$BIN/bench-report" --results "$RESULTS" \
  --heading "Liandong beside etcd and PostgreSQL, $(date '+%Y-%m-%d %H:%M'), $(nproc) cores"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "bench: these runs failed: ${failed[*]}" >&2
fi
