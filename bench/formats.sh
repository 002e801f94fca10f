#!/usr/bin/env bash
# Encoding speed per format and compression, on one core: filedrop's encoders beside the Rust
# writers they are built on (`cargo bench --bench encode`), then pyarrow and DuckDB writing the
# very same table (bench/formats.py). Results go in docs/BENCHMARKS.md.
#
#   bash bench/formats.sh          FILEDROP_BENCH_ROWS=200000 for a quick look
source "$(dirname "$0")/../deploy/local/common.sh"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[ -x "$VENV/bin/python" ] || bash deploy/local/services.sh install
cargo bench -p filedrop-formats --bench encode
"$VENV/bin/python" bench/formats.py "$CARGO_TARGET_DIR/bench-table.arrow"
