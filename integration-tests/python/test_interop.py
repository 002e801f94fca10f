"""Interop with clients nobody here wrote: pyarrow's Flight client sends the exports, and
pyarrow's S3 filesystem reads the delivered Parquet back (a partitioned export through
pyarrow's Hive partitioning)."""

import datetime
import os
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.flight as flight
import pyarrow.parquet as pq
from pyarrow import fs

from conftest import s3_filesystem

ROWS = 200_000


def sample_table() -> pa.Table:
    labels = [
        None if i % 9 == 0 else f'name, "quoted"\nline ü ✓ {i}' if i % 3 == 0 else f"plain {i}"
        for i in range(ROWS)
    ]
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "amount": pa.array([None if i % 7 == 0 else i * 0.5 for i in range(ROWS)], pa.float64()),
            "label": pa.array(labels, pa.string()),
            "created_at": pa.array(
                [None if i % 13 == 0 else start + datetime.timedelta(seconds=i) for i in range(ROWS)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def destination(stack, filedrop_pb2, prefix):
    """The moto bucket of the stack, under `prefix`."""
    return filedrop_pb2.S3Destination(
        endpoint_url=f"http://{stack['s3_endpoint']}",
        region="us-east-1",
        force_path_style=True,
        bucket=stack["bucket"],
        prefix=prefix,
        access_key=filedrop_pb2.AccessKeyCredential(
            access_key_id=stack["access_key_id"],
            secret_access_key=stack["secret_access_key"],
        ),
    )


def send(stack, filedrop_pb2, request, table, chunk_rows):
    """Streams `table` with pyarrow's Flight client; returns the ExportAccepted."""
    client = flight.connect(stack["flight_url"])
    descriptor = flight.FlightDescriptor.for_command(request.SerializeToString())
    # Every call carries the tenant's API token.
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {stack['token']}".encode())]
    )
    writer, reader = client.do_put(descriptor, table.schema, options=options)
    batches = table.to_batches(max_chunksize=chunk_rows)
    for batch in batches:
        writer.write_batch(batch)
    # The commit: the export is complete, with these counts.
    commit = filedrop_pb2.ExportCommit(rows=table.num_rows, batches=len(batches))
    writer.write_metadata(commit.SerializeToString())
    writer.done_writing()
    accepted = filedrop_pb2.ExportAccepted.FromString(reader.read().to_pybytes())
    writer.close()
    return accepted


def test_pyarrow_flight_export_reads_back_through_pyarrow_s3(stack, filedrop_pb2):
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    table = sample_table()
    request = filedrop_pb2.ExportRequest(
        destination=destination(stack, filedrop_pb2, "interop/"),
        format=filedrop_pb2.FILE_FORMAT_PARQUET,
        filename_template="{{run_id}}.parquet",
        success_file=filedrop_pb2.SuccessFile(enabled=True),
    )

    accepted = send(stack, filedrop_pb2, request, table, 50_000)
    assert accepted.rows == ROWS

    s3 = s3_filesystem(stack)
    data_path = f"{stack['bucket']}/interop/{accepted.run_id}.parquet"
    marker = f"{data_path}.DONE"
    # Wait as a downstream sensor would: for the success marker, written last.
    deadline = time.monotonic() + 300
    while s3.get_file_info(marker).type != fs.FileType.File:
        assert time.monotonic() < deadline, f"no success marker at {marker}"
        time.sleep(0.2)

    delivered = pq.read_table(data_path, filesystem=s3)
    assert delivered.schema.equals(table.schema), delivered.schema
    assert delivered.equals(table)


def test_a_partitioned_parquet_export_reads_back_with_pyarrow_hive_partitioning(
    stack, filedrop_pb2
):
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    regions = ["north", "south", "east/west", "50% off", None, ""]
    table = sample_table().append_column(
        "region", pa.array([regions[i % len(regions)] for i in range(ROWS)], pa.string())
    )
    request = filedrop_pb2.ExportRequest(
        destination=destination(stack, filedrop_pb2, "partitioned/"),
        format=filedrop_pb2.FILE_FORMAT_PARQUET,
        parquet=filedrop_pb2.ParquetOptions(
            layout=filedrop_pb2.PARQUET_LAYOUT_DIRECTORY_WITHOUT_EXTENSION
        ),
        filename_template="regions/by_region={{partition.region}}",
        partition_by=["region"],
        success_file=filedrop_pb2.SuccessFile(
            enabled=True, name=filedrop_pb2.SUCCESS_FILE_NAME_UNDERSCORE_SUCCESS
        ),
    )

    accepted = send(stack, filedrop_pb2, request, table, 30_000)
    assert accepted.rows == ROWS

    s3 = s3_filesystem(stack)
    root = f"{stack['bucket']}/partitioned"
    deadline = time.monotonic() + 300
    while s3.get_file_info(f"{root}/_SUCCESS").type != fs.FileType.File:
        assert time.monotonic() < deadline, "no success marker"
        time.sleep(0.2)

    keys = sorted(
        info.path[len(root) + 1 :]
        for info in s3.get_file_info(fs.FileSelector(f"{root}/regions", recursive=True))
        if info.type == fs.FileType.File
    )
    # One file set per distinct key: null and the empty string share Hive's default partition.
    assert keys == [
        f"regions/by_region={value}/part-00000.parquet"
        for value in ["50%25 off", "__HIVE_DEFAULT_PARTITION__", "east%2Fwest", "north", "south"]
    ], keys

    partitioning = ds.HivePartitioning(pa.schema([("by_region", pa.string())]))
    dataset = ds.dataset(
        f"{root}/regions", filesystem=s3, format="parquet", partitioning=partitioning
    )
    delivered = dataset.to_table().sort_by("id")
    # pyarrow decodes each directory back to the value of the rows in it.
    expected_keys = pc.if_else(pc.equal(table["region"], ""), None, table["region"])
    assert delivered["by_region"].combine_chunks().equals(expected_keys.combine_chunks())
    assert delivered.drop_columns(["by_region"]).equals(table)
