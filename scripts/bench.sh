#!/usr/bin/env bash
# Benchmarks (figures printed, never asserted): intake throughput and latency, then failover.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/debug"
"$BIN/intake" --clients 1 --seconds 10
"$BIN/intake" --clients 64 --seconds 20
"$BIN/intake" --clients 16 --seconds 10 --kill-leader-at 5
