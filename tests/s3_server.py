"""A real S3 API server for the object-storage tests: moto's server mode (what s3fs's own test suite runs
against) on 127.0.0.1, started by the test process itself, never a mocked client. `s3_env` is what a
process needs in its environment to reach it (s3fs and boto3 read AWS_ENDPOINT_URL)."""
from __future__ import annotations

import contextlib
import socket

import pytest


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint URL of a moto S3 server running for this test session (one per xdist worker)."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] (the test extra) is not installed")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process's environment pointed at the server (fake credentials, region, endpoint); the returned
    dict is the same settings for a subprocess's `env`. The filesystem cache of fsspec is cleared so no
    client made for another endpoint is reused."""
    settings = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    return settings


@pytest.fixture
def s3_bucket(s3_env, request):
    """A new, empty bucket named after the test; yields its `s3://` URL."""
    import boto3

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
