from __future__ import annotations

import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplane.blobs import BlobStore


# One store serves every example: content addressing makes that harmless, and
# it also checks that earlier blobs never disturb later ones. No deadline, as
# the S3 round trips vary in duration.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64 * 1024))
def test_bytes_round_trip_under_their_blake3_digest(store: BlobStore, data: bytes) -> None:
    digest, size = store.put_bytes(data)

    assert digest == "b3:" + blake3.blake3(data).hexdigest()
    assert size == len(data)
    assert store.read_bytes(digest) == data
