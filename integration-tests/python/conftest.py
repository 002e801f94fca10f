"""Fixtures of the interop tests. These tests are driven by the Rust test
`integration-tests/tests/python_interop.rs`, which starts moto, the control plane and a worker,
and passes their addresses in FILEDROP_INTEROP_* variables."""

import os
import subprocess
import sys
import time
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
            f"--grpc_python_out={out}",
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


@pytest.fixture(scope="session")
def runs(stack, filedrop_pb2):
    """RunService of the stack's control plane, called with the tenant's token."""
    import grpc  # noqa: PLC0415 (only the tests that follow runs need it)
    from filedrop.v1 import run_pb2, run_pb2_grpc  # noqa: PLC0415 (generated above)

    class Runs:
        pb2 = run_pb2

        def __init__(self):
            target = stack["flight_url"].removeprefix("grpc://")
            self.channel = grpc.insecure_channel(target)
            self.stub = run_pb2_grpc.RunServiceStub(self.channel)
            self.metadata = [("authorization", f"Bearer {stack['token']}")]

        def of_destination(self, name):
            """The runs whose destination is named `name`, newest first."""
            request = run_pb2.ListRunsRequest(page_size=100, destination_name=name)
            return list(self.stub.ListRuns(request, metadata=self.metadata).runs)

        def ended(self, name, timeout=120):
            """The one run of destination `name`, once it has ended."""
            ended = (
                run_pb2.RUN_STATE_SUCCEEDED,
                run_pb2.RUN_STATE_FAILED,
                run_pb2.RUN_STATE_CANCELLED,
            )
            deadline = time.monotonic() + timeout
            while True:
                found = self.of_destination(name)
                if len(found) == 1 and found[0].state in ended:
                    return found[0]
                assert time.monotonic() < deadline, f"runs of {name!r} did not end: {found}"
                time.sleep(0.2)

    runs = Runs()
    yield runs
    runs.channel.close()


def s3_client(stack):
    """boto3's S3 client on the stack's moto server."""
    import boto3  # noqa: PLC0415 (only the tests that list the bucket need it)

    return boto3.client(
        "s3",
        endpoint_url=f"http://{stack['s3_endpoint']}",
        aws_access_key_id=stack["access_key_id"],
        aws_secret_access_key=stack["secret_access_key"],
        region_name="us-east-1",
    )


def bucket_under(stack, prefix):
    """The keys under `prefix` and the multipart uploads open there: what a bucket owner sees."""
    s3 = s3_client(stack)
    listed = s3.list_objects_v2(Bucket=stack["bucket"], Prefix=prefix)
    uploads = s3.list_multipart_uploads(Bucket=stack["bucket"], Prefix=prefix)
    return (
        sorted(item["Key"] for item in listed.get("Contents", [])),
        sorted(item["Key"] for item in uploads.get("Uploads", [])),
    )
