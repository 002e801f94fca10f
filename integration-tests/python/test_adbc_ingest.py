"""Flight SQL bulk ingest as a query engine sends it: ADBC's Flight SQL driver (written by the
Arrow project, not here) calls `adbc_ingest` with a pyarrow table, the table name selecting a
stored destination; pyarrow reads the delivered Parquet back."""

import os
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from conftest import s3_filesystem

ROWS = 20_000


def sample_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "label": pa.array([None if i % 11 == 0 else f"row {i} ✓" for i in range(ROWS)]),
            "amount": pa.array([i * 0.25 for i in range(ROWS)], pa.float64()),
        }
    )


def connect(stack, token):
    headers = {} if token is None else {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    return flight_sql.connect(stack["flight_url"], db_kwargs=headers)


def ingest(stack, token, table_name, table):
    """`adbc_ingest` of `table` into `table_name`; returns the rows the server counted."""
    with connect(stack, token) as connection, connection.cursor() as cursor:
        return cursor.adbc_ingest(table_name, table, mode="append")


def test_adbc_ingest_of_a_pyarrow_table_delivers_it_to_the_stored_destination(stack):
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    table = sample_table()
    destination = os.environ["FILEDROP_INTEROP_DESTINATION"]

    assert ingest(stack, stack["token"], destination, table) == ROWS

    s3 = s3_filesystem(stack)
    root = f"{stack['bucket']}/adbc"
    # Wait as a downstream sensor would: for the success marker, written last.
    deadline = time.monotonic() + 300
    while True:
        listed = s3.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
        markers = [info.path for info in listed if info.path.endswith(".DONE")]
        if markers:
            break
        assert time.monotonic() < deadline, f"no success marker under {root}"
        time.sleep(0.2)
    assert len(markers) == 1, markers
    delivered = pq.read_table(markers[0].removesuffix(".DONE"), filesystem=s3)
    assert delivered.schema.equals(table.schema), delivered.schema
    assert delivered.sort_by("id").equals(table)


def test_adbc_ingest_to_an_unknown_table_or_without_a_token_is_refused(stack):
    with pytest.raises(Exception, match="there is no destination"):
        ingest(stack, stack["token"], "no-such-destination", sample_table())
    with pytest.raises(Exception, match="(?i)unauthenticated"):
        ingest(stack, None, os.environ["FILEDROP_INTEROP_DESTINATION"], sample_table())
