"""Flight SQL bulk ingest as a query engine sends it: ADBC's Flight SQL driver (written by the
Arrow project, not here) calls `adbc_ingest` with a pyarrow table, the table name selecting a
stored destination; pyarrow reads the delivered Parquet back.

With autocommit off (DB-API's default), the ingests of a connection wait for its `commit()`;
`rollback()`, closing the connection without a commit, or a failed ingest deliver nothing. The
stack stores one destination per case, `adbc-<case>` writing under `<case>/`."""

import os
import time
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from conftest import bucket_under, s3_filesystem

ROWS = 20_000


def sample_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "label": pa.array([None if i % 11 == 0 else f"row {i} ✓" for i in range(ROWS)]),
            "amount": pa.array([i * 0.25 for i in range(ROWS)], pa.float64()),
        }
    )


def connect(stack, token, autocommit=True):
    headers = {} if token is None else {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    return flight_sql.connect(stack["flight_url"], db_kwargs=headers, autocommit=autocommit)


def ingest(stack, token, table_name, table):
    """`adbc_ingest` of `table` into `table_name` with autocommit on; returns the rows the
    server counted."""
    with connect(stack, token) as connection, connection.cursor() as cursor:
        return cursor.adbc_ingest(table_name, table, mode="append")


def wait_for_marker(stack, prefix):
    """The path of the one success marker under `prefix`, once it is there."""
    s3 = s3_filesystem(stack)
    root = f"{stack['bucket']}/{prefix}"
    deadline = time.monotonic() + 300
    while True:
        listed = s3.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
        markers = [info.path for info in listed if info.path.endswith(".DONE")]
        if markers:
            assert len(markers) == 1, markers
            return markers[0]
        assert time.monotonic() < deadline, f"no success marker under {root}"
        time.sleep(0.2)


def only_run(runs, destination):
    found = runs.of_destination(destination)
    assert len(found) == 1, found
    return found[0]


def assert_nothing_delivered(stack, prefix):
    """No object under `prefix`, and (once the take-back has run) no multipart upload open."""
    deadline = time.monotonic() + 60
    while True:
        keys, uploads = bucket_under(stack, prefix)
        assert keys == [], keys
        if not uploads:
            return
        assert time.monotonic() < deadline, f"multipart uploads left open: {uploads}"
        time.sleep(0.2)


def test_the_server_offers_transactions_so_autocommit_can_be_turned_off(stack):
    # ADBC asks GetSqlInfo whether the server supports transactions; without them it warns
    # and stays in autocommit.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with connect(stack, stack["token"], autocommit=False) as connection:
            connection.commit()


def test_with_autocommit_off_commit_delivers_what_was_ingested(stack, runs):
    table = sample_table()
    with connect(stack, stack["token"], autocommit=False) as connection:
        with connection.cursor() as cursor:
            assert cursor.adbc_ingest("adbc-commit", table, mode="append") == ROWS
        # Received, and held for the commit: the run waits, the bucket shows nothing.
        assert only_run(runs, "adbc-commit").state == runs.pb2.RUN_STATE_RECEIVING
        assert bucket_under(stack, "commit/")[0] == []
        connection.commit()
    marker = wait_for_marker(stack, "commit")
    assert runs.ended("adbc-commit").state == runs.pb2.RUN_STATE_SUCCEEDED
    delivered = pq.read_table(marker.removesuffix(".DONE"), filesystem=s3_filesystem(stack))
    assert delivered.sort_by("id").equals(table)


def test_with_autocommit_off_rollback_delivers_nothing(stack, runs):
    with connect(stack, stack["token"], autocommit=False) as connection:
        with connection.cursor() as cursor:
            assert cursor.adbc_ingest("adbc-rollback", sample_table(), mode="append") == ROWS
        connection.rollback()
    assert runs.ended("adbc-rollback").state == runs.pb2.RUN_STATE_CANCELLED
    assert_nothing_delivered(stack, "rollback/")


def test_closing_the_connection_without_a_commit_delivers_nothing(stack, runs):
    connection = connect(stack, stack["token"], autocommit=False)
    with connection.cursor() as cursor:
        assert cursor.adbc_ingest("adbc-closed", sample_table(), mode="append") == ROWS
    connection.close()
    # Failed, saying what was forgotten.
    closed = runs.ended("adbc-closed")
    assert closed.state == runs.pb2.RUN_STATE_FAILED
    assert closed.error.code == runs.pb2.ERROR_CODE_STREAM_INCOMPLETE, closed.error
    assert "connection.commit()" in closed.error.message, closed.error
    assert_nothing_delivered(stack, "closed/")


def test_a_failed_ingest_rolls_its_transaction_back(stack, runs):
    with connect(stack, stack["token"], autocommit=False) as connection:
        with connection.cursor() as cursor:
            assert cursor.adbc_ingest("adbc-doomed", sample_table(), mode="append") == ROWS
            with pytest.raises(Exception, match="there is no destination"):
                cursor.adbc_ingest("no-such-destination", sample_table(), mode="append")
        with pytest.raises(Exception, match="rolled back"):
            connection.commit()
    failed = runs.ended("adbc-doomed")
    assert failed.state == runs.pb2.RUN_STATE_FAILED
    assert "rolled back" in failed.error.message, failed.error
    assert_nothing_delivered(stack, "doomed/")


def test_adbc_ingest_of_a_pyarrow_table_delivers_it_to_the_stored_destination(stack):
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    table = sample_table()
    destination = os.environ["FILEDROP_INTEROP_DESTINATION"]

    assert ingest(stack, stack["token"], destination, table) == ROWS

    # Wait as a downstream sensor would: for the success marker, written last.
    marker = wait_for_marker(stack, "adbc")
    delivered = pq.read_table(marker.removesuffix(".DONE"), filesystem=s3_filesystem(stack))
    assert delivered.schema.equals(table.schema), delivered.schema
    assert delivered.sort_by("id").equals(table)


def test_adbc_ingest_to_an_unknown_table_or_without_a_token_is_refused(stack):
    with pytest.raises(Exception, match="there is no destination"):
        ingest(stack, stack["token"], "no-such-destination", sample_table())
    with pytest.raises(Exception, match="(?i)unauthenticated"):
        ingest(stack, None, os.environ["FILEDROP_INTEROP_DESTINATION"], sample_table())
