"""The format matrix, read back by readers nobody here wrote.

`integration-tests/tests/format_matrix.rs` encodes the matrix table in every format and option
(in several blocks, assembled as the workers do) into FILEDROP_MATRIX_DIR, with `cases.json`
describing each file. Every file is checked here:

- compressed files: `gzip -t`, `zstd -t`, `bzip2 -t`, then decompressed by the same tools;
- encrypted files: `gpg --decrypt` first (GNUPGHOME holds the private key), then as above;
- archives: `unzip -t` and Python's `zipfile` (one entry, its CRC checked; one archive over
  4 GiB must carry Zip64 records), `tar` and Python's `tarfile` (one entry, named as expected);
- delimited files: Python's `csv` module with the matching dialect, cell by cell; with a NULL
  literal (where nulls and empty strings are told apart), pyarrow's and DuckDB's CSV readers too;
- JSON and NDJSON: Python's `json` module, DuckDB's `read_json`, and pyarrow's NDJSON reader;
- Parquet: pyarrow (the table must be equal, nested types included) and DuckDB.

A file of a split run is checked as above against the rows it holds (`first_row`, `rows`), row
numbers included; each split run's files together must hold the whole table in order, every
file but the last full (by rows) or every delivered file at or under the limit (by size).
"""

import csv
import datetime
import decimal
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

MATRIX = os.environ.get("FILEDROP_MATRIX_DIR")
DIR = Path(MATRIX) if MATRIX else None
CASES = json.loads((DIR / "cases.json").read_text()) if DIR else []

DUCKDB_TYPES = {
    "id": "BIGINT",
    "row_number": "BIGINT",
    "row-no": "BIGINT",
    "text": "VARCHAR",
    "amount": "DECIMAL(12,3)",
    "ratio": "DOUBLE",
    "flag": "BOOLEAN",
    "at": "TIMESTAMPTZ",
    "day": "DATE",
    "tags": "INTEGER[]",
    "point": "STRUCT(x DOUBLE, label VARCHAR)",
}


@pytest.mark.skipif(DIR is not None, reason="the matrix directory is given")
def test_the_matrix_directory_is_given():
    pytest.fail(
        "run through `cargo nextest run -p filedrop-integration-tests format_matrix`, which "
        "writes the matrix files and sets FILEDROP_MATRIX_DIR"
    )


def expected_table(case) -> pa.Table:
    with ipc.open_file(DIR / case["input"]) as reader:
        table = reader.read_all()
    first_row = case.get("first_row", 0)
    if case.get("rows") is not None:
        table = table.slice(first_row, case["rows"])
    name = case["row_number"]
    if name:
        numbers = pa.array(range(first_row + 1, first_row + table.num_rows + 1), pa.int64())
        table = table.add_column(0, pa.field(name, pa.int64(), nullable=False), numbers)
    return table


def run(*command) -> bytes:
    return subprocess.run(command, check=True, capture_output=True).stdout


def unzipped(path: Path, entry: str) -> bytes:
    """The one entry of a zip archive, tested by `unzip -t` and read by `zipfile`."""
    run("unzip", "-t", str(path))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [entry], archive.namelist()
        assert archive.testzip() is None, "every CRC matches"
        assert archive.infolist()[0].compress_type == zipfile.ZIP_DEFLATED
        data = archive.read(entry)
    assert run("unzip", "-p", str(path), entry) == data
    return data


def untarred(path: Path, entry: str, gzipped: bool) -> bytes:
    """The one entry of a tar archive, listed and extracted by `tar` and read by `tarfile`."""
    flags = "z" if gzipped else ""
    if gzipped:
        run("gzip", "-t", str(path))
    assert run("tar", f"-t{flags}f", str(path)).decode().splitlines() == [entry]
    data = run("tar", f"-x{flags}Of", str(path), entry)
    with tarfile.open(path, "r:gz" if gzipped else "r:") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [entry], members
        assert members[0].isfile() and members[0].mode == 0o644
        assert archive.extractfile(members[0]).read() == data
    return data


def delivered_path(case) -> Path:
    """The delivered file, decrypted by `gpg` when it is encrypted."""
    path = DIR / case["file"]
    if not case.get("pgp"):
        return path
    decrypted = path.with_suffix(".decrypted")
    if not decrypted.exists():
        encrypted = path.read_bytes()
        assert encrypted[0] & 0x80, "a binary OpenPGP message"
        decrypted.write_bytes(run("gpg", "--batch", "--quiet", "--decrypt", str(path)))
    return decrypted


def plain_bytes(case) -> bytes:
    """The file's bytes, checked and unpacked by the standard tool of its compression."""
    path = delivered_path(case)
    tool = case["compression"]
    if tool == "none":
        return path.read_bytes()
    if tool == "zip":
        return unzipped(path, case["entry"])
    if tool in ("tar", "tgz"):
        return untarred(path, case["entry"], gzipped=tool == "tgz")
    run(tool, "-t", str(path))
    return run(tool, "-dc", str(path))


def plain_path(case, tmp_path) -> Path:
    path = tmp_path / "plain"
    path.write_bytes(plain_bytes(case))
    return path


def same_values(got: list, want: list, what: str):
    assert len(got) == len(want), f"{what}: {len(got)} rows, expected {len(want)}"
    for row, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"{what}, row {row}: {g!r} != {w!r}"


def same_table(got: pa.Table, want: pa.Table, what: str):
    assert got.column_names == want.column_names, what
    for name in want.column_names:
        same_values(got.column(name).to_pylist(), want.column(name).to_pylist(), f"{what} {name}")


def duckdb_table(relation) -> pa.Table:
    result = relation.arrow()
    return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


def duckdb_connection():
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    return connection


# Delimited -------------------------------------------------------------------------------------


def text_of(value, data_type) -> str:
    """How a value reads in a delimited file, for the types whose text is unambiguous."""
    if pa.types.is_boolean(data_type):
        return "true" if value else "false"
    return str(value)


def check_cell(cell, value, data_type, case, what):
    if value is None:
        want = case.get("null_value") or ""
        assert cell == want, f"{what}: null read as {cell!r}"
    elif isinstance(cell, float):  # QUOTE_NONNUMERIC turns bare fields into floats
        assert cell == float(value), f"{what}: {cell!r} != {value!r}"
    elif pa.types.is_string(data_type):
        want = value
        if value == "" and case.get("empty_value") is not None:
            want = "" if case["empty_value"] == '""' else case["empty_value"]
        assert cell == want, f"{what}: {cell!r} != {want!r}"
    elif pa.types.is_integer(data_type):
        assert int(cell) == value, f"{what}: {cell!r} != {value!r}"
    elif pa.types.is_decimal(data_type):
        assert decimal.Decimal(cell) == value, f"{what}: {cell!r} != {value!r}"
    elif pa.types.is_floating(data_type):
        assert float(cell) == value, f"{what}: {cell!r} != {value!r}"
    elif pa.types.is_timestamp(data_type):
        assert datetime.datetime.fromisoformat(cell) == value, f"{what}: {cell!r} != {value!r}"
    elif pa.types.is_date(data_type):
        assert datetime.date.fromisoformat(cell) == value, f"{what}: {cell!r} != {value!r}"
    else:
        assert cell == text_of(value, data_type), f"{what}: {cell!r} != {value!r}"


def check_delimited_with_csv_module(case, table: pa.Table, text=None):
    if text is None:
        text = plain_bytes(case).decode("utf-8")
    line_ending = "\r\n" if case["line_ending"] == "crlf" else "\n"
    assert text.endswith(line_ending), "every row ends with the line ending"
    mode = case["quote_mode"]
    quoting = {"NonNumeric": csv.QUOTE_NONNUMERIC, "None": csv.QUOTE_NONE}.get(
        mode, csv.QUOTE_MINIMAL
    )
    if mode == "NonNumeric" and case.get("null_value") is not None:
        # Python's QUOTE_NONNUMERIC reader makes every bare field a float, and a bare NULL
        # literal is not one: read such files with the minimal dialect.
        quoting = csv.QUOTE_MINIMAL
    escape = case["escape"]
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=case["delimiter"],
        quotechar='"',
        doublequote=escape is None,
        escapechar=escape,
        quoting=quoting,
        strict=True,
    )
    rows = list(reader)
    names = table.column_names
    if case["header"]:
        assert rows[0] == names, rows[0]
        rows = rows[1:]
    assert len(rows) == table.num_rows, f"{len(rows)} rows, expected {table.num_rows}"
    for number, (row, expected) in enumerate(zip(rows, table.to_pylist())):
        assert len(row) == len(names), f"row {number}: {row!r}"
        for cell, name in zip(row, names):
            data_type = table.schema.field(name).type
            check_cell(cell, expected[name], data_type, case, f"row {number} {name}")


def check_delimited_with_pyarrow(case, table: pa.Table, tmp_path):
    escape = case["escape"]
    parse = pacsv.ParseOptions(
        delimiter=case["delimiter"],
        quote_char='"',
        double_quote=escape is None,
        escape_char=escape or False,
        newlines_in_values=True,
    )
    read = pacsv.ReadOptions(column_names=None if case["header"] else table.column_names)
    convert = pacsv.ConvertOptions(
        column_types={field.name: field.type for field in table.schema},
        null_values=["NULL"],
        strings_can_be_null=True,
    )
    got = pacsv.read_csv(
        plain_path(case, tmp_path), read_options=read, parse_options=parse, convert_options=convert
    )
    same_table(got, table, "pyarrow")


def check_delimited_with_duckdb(case, table: pa.Table, tmp_path):
    relation = duckdb_connection().read_csv(
        str(plain_path(case, tmp_path)),
        header=case["header"],
        sep=case["delimiter"],
        quotechar='"',
        escapechar=case["escape"] or '"',
        na_values="NULL",
        names=table.column_names,
        dtype={name: DUCKDB_TYPES[name] for name in table.column_names},
    )
    same_table(duckdb_table(relation), table, "duckdb")


# JSON ------------------------------------------------------------------------------------------


def same_json(got, want, what):
    """A value parsed by `json` (numbers as Decimal) against the Arrow value."""
    if isinstance(want, datetime.datetime):
        assert datetime.datetime.fromisoformat(got) == want, f"{what}: {got!r} != {want!r}"
    elif isinstance(want, datetime.date):
        assert datetime.date.fromisoformat(got) == want, f"{what}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{what}: {got!r} != {want!r}"
        for key in want:
            same_json(got[key], want[key], f"{what}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{what}: {got!r} != {want!r}"
        for index, (g, w) in enumerate(zip(got, want)):
            same_json(g, w, f"{what}[{index}]")
    else:
        assert got == want, f"{what}: {got!r} != {want!r}"


def check_json(case, table: pa.Table, tmp_path):
    text = plain_bytes(case).decode("utf-8")
    line_ending = "\r\n" if case["line_ending"] == "crlf" else "\n"
    assert text.endswith(line_ending), repr(text)
    if case["format"] == "json":
        rows = json.loads(text, parse_float=decimal.Decimal)
    else:
        lines = text.split(line_ending)
        assert lines.pop() == ""
        rows = [json.loads(line, parse_float=decimal.Decimal) for line in lines]
    assert "\n" not in text.replace(line_ending, ""), "no other line break"
    expected = table.to_pylist()
    assert len(rows) == len(expected)
    for number, (row, want) in enumerate(zip(rows, expected)):
        assert list(row) == table.column_names, "every key, nulls included, in column order"
        same_json(row, want, f"row {number}")

    path = plain_path(case, tmp_path)
    layout = "array" if case["format"] == "json" else "newline_delimited"
    relation = duckdb_connection().read_json(
        str(path),
        format=layout,
        columns={name: DUCKDB_TYPES[name] for name in table.column_names},
    )
    same_table(duckdb_table(relation), table, "duckdb")

    if case["format"] == "ndjson":
        # pyarrow reads NDJSON only. It reads JSON numbers into decimals as floats, and dates
        # only from numbers (days), so those two columns are compared as floats and as text.
        read_as = {"amount": pa.float64(), "day": pa.string()}
        schema = pa.schema([pa.field(f.name, read_as.get(f.name, f.type)) for f in table.schema])
        got = pajson.read_json(path, parse_options=pajson.ParseOptions(explicit_schema=schema))
        as_read = {
            # The nearest float to the decimal's text, as a JSON parser reads it.
            "amount": pa.array(
                [None if v is None else float(v) for v in table["amount"].to_pylist()]
            ),
            "day": table["day"].cast(pa.string()),
        }
        want = table
        for name, column in as_read.items():
            want = want.set_column(want.column_names.index(name), name, column)
        same_table(got, want, "pyarrow")


# Parquet ---------------------------------------------------------------------------------------


def check_parquet(case, table: pa.Table):
    path = delivered_path(case)
    got = pq.read_table(path)
    assert got.schema.equals(table.schema), f"{got.schema} != {table.schema}"
    assert got.equals(table)
    codecs = {pq.ParquetFile(path).metadata.row_group(0).column(0).compression}
    # pyarrow names the LZ4_RAW codec "LZ4" (and the deprecated Hadoop one "LZ4_HADOOP").
    want = {"Lz4": "LZ4", "None": "UNCOMPRESSED"}.get(case["codec"], case["codec"].upper())
    assert codecs == {want}, codecs
    same_table(duckdb_table(duckdb_connection().read_parquet(str(path))), table, "duckdb")


# Zip64 --------------------------------------------------------------------------------------


def check_zip64(case, table: pa.Table):
    """A CSV file over 4 GiB (a header, then one block of the table repeated) in a zip."""
    path = DIR / case["file"]
    with path.open("rb") as file:
        file.seek(-200, os.SEEK_END)
        tail = file.read()
    assert b"PK\x06\x06" in tail and b"PK\x06\x07" in tail, "Zip64 end records"
    run("unzip", "-t", str(path))
    with zipfile.ZipFile(path) as archive:
        (info,) = archive.infolist()
        assert info.filename == case["entry"]
        assert info.file_size > 0xFFFFFFFF, info.file_size
        assert archive.testzip() is None, "the CRC of all 4 GiB matches"
        with archive.open(info) as entry:
            header = entry.readline()
            block_length, rest = divmod(info.file_size - len(header), case["repeats"])
            assert rest == 0, "a header and whole blocks"
            start = header + entry.read(2 * block_length)
    doubled = pa.concat_tables([table, table])
    check_delimited_with_csv_module(case, doubled, start.decode("utf-8"))


SPLIT_RUNS = {}
for _case in CASES:
    if "split" in _case:
        SPLIT_RUNS.setdefault(_case["split"]["group"], []).append(_case)


@pytest.mark.parametrize("group", sorted(SPLIT_RUNS), ids=lambda group: f"split-run-{group}")
def test_a_split_runs_files_hold_the_table_in_order_within_the_limit(group):
    files = sorted(SPLIT_RUNS[group], key=lambda case: case["split"]["index"])
    split = files[0]["split"]
    assert len(files) == split["files"] > 1, "the run was cut into several files"
    with ipc.open_file(DIR / files[0]["input"]) as reader:
        total = reader.read_all().num_rows
    # Each file was checked against its rows (test_case): together they cover the table.
    next_row = 0
    for case in files:
        assert case["first_row"] == next_row, f"{case['file']} starts at row {case['first_row']}"
        assert case["rows"] > 0
        next_row += case["rows"]
    assert next_row == total
    if split["mode"] == "rows":
        assert [case["rows"] for case in files[:-1]] == [split["limit"]] * (len(files) - 1)
        assert files[-1]["rows"] <= split["limit"]
    else:
        sizes = [(DIR / case["file"]).stat().st_size for case in files]
        assert max(sizes) <= split["limit"], f"{sizes} over {split['limit']} bytes"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["file"])
def test_case(case, tmp_path):
    table = expected_table(case)
    if case.get("zip64"):
        check_zip64(case, table)
    elif case["format"] == "delimited":
        check_delimited_with_csv_module(case, table)
        if case.get("null_value") == "NULL" and case["quote_mode"] != "None":
            check_delimited_with_pyarrow(case, table, tmp_path)
            check_delimited_with_duckdb(case, table, tmp_path)
    elif case["format"] in ("json", "ndjson"):
        check_json(case, table, tmp_path)
    else:
        check_parquet(case, table)
