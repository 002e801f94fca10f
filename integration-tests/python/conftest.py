"""Fixtures of the interop tests. These tests are driven by the Rust test
`integration-tests/tests/python_interop.rs`, which starts moto, the control plane and a worker,
and passes their addresses in FILEDROP_INTEROP_* variables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack():
    names = ["FLIGHT_URL", "TOKEN", "S3_ENDPOINT", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "BUCKET"]
    missing = [n for n in names if f"FILEDROP_INTEROP_{n}" not in os.environ]
    if missing:
        pytest.fail(
            "these tests need a running stack: run them through "
            "`cargo nextest run -p filedrop-integration-tests python_interop` "
            f"(missing FILEDROP_INTEROP_{', FILEDROP_INTEROP_'.join(missing)})"
        )
    return {n.lower(): os.environ[f"FILEDROP_INTEROP_{n}"] for n in names}


@pytest.fixture(scope="session")
def filedrop_pb2(tmp_path_factory):
    """Python classes of filedrop.v1, generated from proto/ with grpcio-tools."""
    out = tmp_path_factory.mktemp("proto")
    from grpc_tools import protoc  # noqa: PLC0415 (only needed here)

    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    result = protoc.main(
        [
            "protoc",
            f"-I{REPO / 'proto'}",
            f"-I{well_known}",
            f"--python_out={out}",
            "filedrop/v1/export.proto",
            "filedrop/v1/run.proto",
        ]
    )
    assert result == 0, "protoc failed"
    for package in ["filedrop", "filedrop/v1"]:
        (out / package / "__init__.py").touch()
    sys.path.insert(0, str(out))
    from filedrop.v1 import export_pb2  # noqa: PLC0415

    return export_pb2


def s3_filesystem(stack):
    """pyarrow's S3 filesystem on the stack's moto server."""
    from pyarrow import fs  # noqa: PLC0415 (only the tests that read S3 need it)

    return fs.S3FileSystem(
        access_key=stack["access_key_id"],
        secret_key=stack["secret_access_key"],
        endpoint_override=stack["s3_endpoint"],
        scheme="http",
        region="us-east-1",
        force_virtual_addressing=False,
    )
