"""The bench table of `cargo bench --bench encode`, written by pyarrow and DuckDB alone, on one
thread, for docs/BENCHMARKS.md.

    python bench/formats.py [path/to/bench-table.arrow]

Reads the Arrow IPC file the Rust bench wrote (the very same rows), and reports the best of
five runs per case in rows/s and MB/s of the written file, as the Rust bench does. pyarrow
writes to memory; DuckDB's COPY writes to a file in a temporary directory.
"""

import os
import sys
import tempfile
import time

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

RUNS = 5
SEGMENT_ROWS = 131_072


def best(run):
    fastest, size = float("inf"), 0
    for _ in range(RUNS):
        started = time.perf_counter()
        size = run()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, size


def pyarrow_csv(table, compression=None):
    def run():
        sink = pa.BufferOutputStream()
        out = pa.CompressedOutputStream(sink, compression) if compression else sink
        pacsv.write_csv(table, out)
        if compression:
            out.close()
        return sink.getvalue().size

    return run


def pyarrow_parquet(table, codec):
    def run():
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=codec, row_group_size=SEGMENT_ROWS)
        return sink.getvalue().size

    return run


def duckdb_copy(connection, directory, name, options):
    path = os.path.join(directory, name)

    def run():
        connection.execute(f"COPY bench TO '{path}' ({options})")
        return os.path.getsize(path)

    return run


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "bench-table.arrow"
    )
    table = pa.ipc.open_file(path).read_all()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.register("bench_arrow", table)
    connection.execute("CREATE TABLE bench AS SELECT * FROM bench_arrow")

    with tempfile.TemporaryDirectory() as directory:
        cases = [
            ("pyarrow CSV", pyarrow_csv(table)),
            ("pyarrow CSV + gzip", pyarrow_csv(table, "gzip")),
            ("pyarrow CSV + zstd", pyarrow_csv(table, "zstd")),
            ("pyarrow CSV + bzip2", pyarrow_csv(table, "bz2")),
        ]
        cases += [
            (f"pyarrow Parquet {codec}", pyarrow_parquet(table, codec))
            for codec in ["snappy", "zstd", "gzip", "lz4", "none"]
        ]
        duck = [
            ("CSV", "bench.csv", "FORMAT csv, HEADER"),
            ("CSV + gzip", "bench.csv.gz", "FORMAT csv, HEADER, COMPRESSION gzip"),
            ("CSV + zstd", "bench.csv.zst", "FORMAT csv, HEADER, COMPRESSION zstd"),
            ("NDJSON", "bench.ndjson", "FORMAT json"),
            ("JSON array", "bench.json", "FORMAT json, ARRAY true"),
        ] + [
            (f"Parquet {codec}", f"bench-{codec}.parquet",
             f"FORMAT parquet, COMPRESSION {codec}, ROW_GROUP_SIZE {SEGMENT_ROWS}")
            for codec in ["snappy", "zstd", "gzip", "lz4", "uncompressed"]
        ]
        cases += [
            (f"DuckDB {name}", duckdb_copy(connection, directory, file, options))
            for name, file, options in duck
        ]

        rows = table.num_rows
        print(f"rows: {rows}, best of {RUNS} runs, one thread "
              f"(pyarrow {pa.__version__}, DuckDB {duckdb.__version__})")
        print("| case | seconds | rows/s | file MB | MB/s |")
        print("|---|---|---|---|---|")
        for name, run in cases:
            seconds, size = best(run)
            print(f"| {name} | {seconds:.3f} | {rows / seconds:.0f} | {size / 1e6:.1f} "
                  f"| {size / 1e6 / seconds:.0f} |")


if __name__ == "__main__":
    main()
