"""gRPC server reflection, through grpcio's reflection client: the control plane's services are
listed and described with no proto files, as grpcurl would list them. Driven by the Rust test
`integration-tests/tests/python_interop.rs`, which starts a control plane and passes its
address in FILEDROP_REFLECTION_ADDRESS."""

import os

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

EXPECTED = {
    "filedrop.v1.RunService": {"GetRun", "WatchRun", "ListRuns", "CancelRun", "RetryRun"},
    "filedrop.v1.CredentialService": {
        "CreateCredential",
        "GetCredential",
        "ListCredentials",
        "DeleteCredential",
    },
    "filedrop.v1.DestinationService": {
        "CreateDestination",
        "GetDestination",
        "ListDestinations",
        "UpdateDestination",
        "DeleteDestination",
        "TestConnection",
    },
    "grpc.health.v1.Health": {"Check", "Watch"},
}


@pytest.fixture(scope="module")
def database():
    address = os.environ.get("FILEDROP_REFLECTION_ADDRESS")
    if not address:
        pytest.fail(
            "this test needs a running control plane: run it through "
            "`cargo nextest run -p filedrop-integration-tests python_interop`"
        )
    channel = grpc.insecure_channel(address)
    yield ProtoReflectionDescriptorDatabase(channel)
    channel.close()


def test_services_are_listed_through_reflection(database):
    services = set(database.get_services())
    missing = set(EXPECTED) - services
    assert not missing, f"reflection lists {sorted(services)}"
    assert "grpc.reflection.v1alpha.ServerReflection" in services


def test_methods_and_messages_are_described_through_reflection(database):
    pool = DescriptorPool(database)
    for name, methods in EXPECTED.items():
        service = pool.FindServiceByName(name)
        assert {method.name for method in service.methods} >= methods, name
    request = pool.FindMessageTypeByName("filedrop.v1.ExportRequest")
    assert "destination" in request.fields_by_name
