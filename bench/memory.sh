#!/usr/bin/env bash
# Peak memory (VmHWM) of each filedrop process during one large export.
#
#   bash bench/memory.sh [ROWS] [FORMAT]     default: 30000000 rows (2.1 GB as CSV), parquet
#
# Starts the local services and a control plane with two workers (deploy/local/filedrop.sh),
# streams the sample table lazily from filedrop-sample-export (split every 10,000,000 rows),
# and prints the peak resident memory of every process. Results go in docs/BENCHMARKS.md.
source "$(dirname "$0")/../deploy/local/common.sh"
cd "$ROOT"
ROWS="${1:-30000000}"
FORMAT="${2:-parquet}"

start_local_stack
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/filedrop-sample-export" \
  --control-plane "http://127.0.0.1:$CONTROL_PLANE_PORT" --rows "$ROWS" \
  --rows-per-file 10000000 --format "$FORMAT" --prefix "bench-$FORMAT-$ROWS/"

echo
echo "peak resident memory (VmHWM) after $ROWS rows of $FORMAT:"
for name in control-plane worker-1 worker-2; do
  pid="$(cat "$STATE/$name.pid")"
  printf '  %-14s %s\n' "$name" "$(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$pid/status")"
done
bash deploy/local/filedrop.sh stop
