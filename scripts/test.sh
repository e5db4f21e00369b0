#!/usr/bin/env bash
# The test command: every unit, conformance, golden, integration and chaos test, on real
# processes, RocksDB and loopback sockets. Lints first, so a red lint fails fast.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# setup's own detection, against fake library folders (installs nothing).
scripts/tests/libclang_detection.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The host binaries the integration tests start as real processes.
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${LIANDONG_TEST_THREADS:-2}"
