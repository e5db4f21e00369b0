#!/usr/bin/env bash
# Idle cost of a running federation: CPU (share of one core) and resident memory of every host
# process, measured over a window. Usage: scripts/idle-cost.sh [DIR] [SECONDS]
# DIR is the federation folder (default ./federation); reads the pid files under DIR/run/.
set -euo pipefail
dir="${1:-./federation}"
seconds="${2:-60}"
ticks=$(getconf CLK_TCK)
pids=()
for file in "$dir"/run/*.pid; do
    pid=$(cat "$file")
    [ -d "/proc/$pid" ] && pids+=("$pid")
done
if [ "${#pids[@]}" -eq 0 ]; then
    echo "no running host under $dir/run" >&2
    exit 1
fi
cpu_ticks() {
    local total=0 pid fields
    for pid in "${pids[@]}"; do
        # utime and stime: fields 14 and 15, counted after the parenthesised command name.
        fields=$(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
before=$(cpu_ticks)
sleep "$seconds"
after=$(cpu_ticks)
rss_kib=0
for pid in "${pids[@]}"; do
    rss_kib=$((rss_kib + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
done
awk -v used=$((after - before)) -v ticks="$ticks" -v seconds="$seconds" -v hosts="${#pids[@]}" \
    -v rss="$rss_kib" 'BEGIN {
        printf "%d hosts over %d s: %.1f %% of one core, %.0f MiB resident\n",
            hosts, seconds, 100 * used / ticks / seconds, rss / 1024 }'
