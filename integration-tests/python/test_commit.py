"""The commit protocol as a pyarrow client meets it: only a stream that ends with its
ExportCommit is delivered. A script whose source raises mid-stream, one that closes without a
commit, and one whose commit counts wrong each leave a run failed with STREAM_INCOMPLETE and
nothing in the bucket: no object, no marker, no open multipart upload."""

import gc

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import bucket_under

BATCH_ROWS = 50_000


def batches(count):
    for index in range(count):
        start = index * BATCH_ROWS
        yield pa.record_batch(
            {
                "id": pa.array(range(start, start + BATCH_ROWS), pa.int64()),
                "label": pa.array([f"row {i}" for i in range(start, start + BATCH_ROWS)]),
            }
        )


SCHEMA = next(batches(1)).schema


def request(stack, filedrop_pb2, name):
    """An export of CSV files of 60,000 rows each to `<name>/`, its destination named `name`."""
    return filedrop_pb2.ExportRequest(
        destination=filedrop_pb2.S3Destination(
            name=name,
            endpoint_url=f"http://{stack['s3_endpoint']}",
            region="us-east-1",
            force_path_style=True,
            bucket=stack["bucket"],
            prefix=f"{name}/",
            access_key=filedrop_pb2.AccessKeyCredential(
                access_key_id=stack["access_key_id"],
                secret_access_key=stack["secret_access_key"],
            ),
        ),
        format=filedrop_pb2.FILE_FORMAT_CSV,
        csv=filedrop_pb2.CsvOptions(header=True),
        filename_template="orders-{{file_number}}.csv",
        split=filedrop_pb2.Split(rows_per_file=60_000),
        success_file=filedrop_pb2.SuccessFile(enabled=True),
    )


def open_put(stack, export):
    client = flight.connect(stack["flight_url"])
    descriptor = flight.FlightDescriptor.for_command(export.SerializeToString())
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {stack['token']}".encode())]
    )
    return client.do_put(descriptor, SCHEMA, options=options)


def assert_nothing_delivered(stack, runs, name):
    run = runs.ended(name)
    assert run.state == runs.pb2.RUN_STATE_FAILED, run
    assert run.error.code == runs.pb2.ERROR_CODE_STREAM_INCOMPLETE, run
    assert "not committed" in run.error.message, run
    assert run.error.resolutions == [runs.pb2.RESOLUTION_SEND_AGAIN], run
    assert bucket_under(stack, f"{name}/") == ([], []), "what the bucket owner sees"
    return run


def test_a_source_that_raises_mid_stream_delivers_nothing(stack, filedrop_pb2, runs):
    name = "raised-mid-stream"

    def export_from_a_failing_cursor():
        writer, _ = open_put(stack, request(stack, filedrop_pb2, name))
        for index, batch in enumerate(batches(6)):
            if index == 3:
                raise RuntimeError("the query cursor failed")
            writer.write_batch(batch)

    with pytest.raises(RuntimeError):
        export_from_a_failing_cursor()
    # The writer was never closed by the script: the garbage collector ends its stream.
    gc.collect()
    run = assert_nothing_delivered(stack, runs, name)
    assert "without an ExportCommit" in run.error.message, run


def test_a_stream_closed_without_a_commit_is_refused_and_delivers_nothing(
    stack, filedrop_pb2, runs
):
    name = "closed-uncommitted"
    writer, reader = open_put(stack, request(stack, filedrop_pb2, name))
    for batch in batches(3):
        writer.write_batch(batch)
    writer.done_writing()
    # pyarrow raises the refusal (INVALID_ARGUMENT: ArrowInvalid) when the call is closed.
    with pytest.raises(pa.ArrowInvalid, match="not committed.*without an ExportCommit"):
        reader.read()
        writer.close()
    assert_nothing_delivered(stack, runs, name)


def test_a_commit_with_wrong_counts_is_refused_and_delivers_nothing(stack, filedrop_pb2, runs):
    name = "miscounted"
    writer, reader = open_put(stack, request(stack, filedrop_pb2, name))
    for batch in batches(3):
        writer.write_batch(batch)
    commit = filedrop_pb2.ExportCommit(rows=6 * BATCH_ROWS, batches=6)
    writer.write_metadata(commit.SerializeToString())
    writer.done_writing()
    with pytest.raises(pa.ArrowInvalid, match="counts 300000 rows in 6 record batches"):
        reader.read()
        writer.close()
    run = assert_nothing_delivered(stack, runs, name)
    assert "150000 rows in 3 record batches arrived" in run.error.message, run


def test_a_commit_riding_on_the_last_batch_delivers_the_whole_export(stack, filedrop_pb2, runs):
    name = "committed"
    writer, reader = open_put(stack, request(stack, filedrop_pb2, name))
    sent = list(batches(3))
    for batch in sent[:-1]:
        writer.write_batch(batch)
    commit = filedrop_pb2.ExportCommit(rows=3 * BATCH_ROWS, batches=3)
    writer.write_with_metadata(sent[-1], pa.py_buffer(commit.SerializeToString()))
    writer.done_writing()
    accepted = filedrop_pb2.ExportAccepted.FromString(reader.read().to_pybytes())
    writer.close()
    assert accepted.rows == 3 * BATCH_ROWS
    run = runs.ended(name)
    assert run.state == runs.pb2.RUN_STATE_SUCCEEDED, run
    objects, uploads = bucket_under(stack, f"{name}/")
    assert uploads == []
    assert [key for key in objects if key.endswith(".csv")] == [
        f"{name}/orders-{number:07}.csv" for number in (1, 2, 3)
    ], objects
    assert f"{name}/orders-.csv.DONE" in objects, objects
