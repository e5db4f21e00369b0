#!/usr/bin/env bash
# The demo: a 3-replica Zhaotong city office; cases filed and handled; the leader SIGKILLed;
# nothing lost; stopped. Everything runs on 127.0.0.1 from a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/debug"
LD="$BIN/liandong"
DIR="$(mktemp -d)/federation"
trap '"$LD" --dir "$DIR" down >/dev/null 2>&1 || true' EXIT
say() { printf '\n== %s\n' "$*"; }

say "federation init: Zhaotong city office (5306), 3 replicas"
"$LD" --dir "$DIR" federation init --region 5306 --max-children 0 --replicas 3 --base-port "${LIANDONG_DEMO_PORT:-17100}"
say "up: three host processes, each with its own RocksDB"
"$LD" --dir "$DIR" up
"$LD" --dir "$DIR" status

say "file three petitions"
IDS=()
for n in 1 2 3; do
  PID_NO=$(printf '530602198001010012\n530602197503150029\n530621199006200038\n' | sed -n "${n}p")
  ID=$("$LD" --dir "$DIR" --json case file --office 5306 --channel visit --petitioner-id "$PID_NO" \
        --name "Petitioner $n" --category housing --summary "Demo petition $n" | sed 's/.*"case_id":"\([^"]*\)".*/\1/')
  echo "filed $ID"
  IDS+=("$ID")
done
say "handle the first: accept, extend, reply, evaluate"
"$LD" --dir "$DIR" case accept "${IDS[0]}" >/dev/null
"$LD" --dir "$DIR" case extend "${IDS[0]}" --days 15 --reason "site survey needed" >/dev/null
"$LD" --dir "$DIR" case reply "${IDS[0]}" --opinion support --text "Repairs ordered" >/dev/null
"$LD" --dir "$DIR" case evaluate "${IDS[0]}" --satisfaction satisfied
say "a statute violation is refused: replying before acceptance"
"$LD" --dir "$DIR" case reply "${IDS[1]}" --opinion support --text "too early" || true

say "SIGKILL the leader"
"$LD" --dir "$DIR" drill kill --office 5306 --leader
say "file two more while it is down"
for n in 4 5; do
  "$LD" --dir "$DIR" case file --office 5306 --channel phone --petitioner-id 530602198001010012 \
    --name "Petitioner $n" --category labour --summary "Filed during failover $n"
done
say "restart it; every case is still there"
"$LD" --dir "$DIR" drill restart --office 5306
for id in "${IDS[@]}"; do "$LD" --dir "$DIR" --json case show "$id" | sed 's/.*"case_id":"\([^"]*\)".*"status":"\([^"]*\)".*/\1 \2/'; done
"$LD" --dir "$DIR" case show "${IDS[0]}"
sleep 1
"$LD" --dir "$DIR" status
say "down"
"$LD" --dir "$DIR" down
trap - EXIT
echo "demo finished"
