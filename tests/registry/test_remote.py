"""The registry through a real server: upload, server-side scan, aliases, verified download."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

import mlplane
from mlplane.errors import Conflict, NotFound, UnsafeArtifact


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


class Wrapper:
    def __init__(self, payload: object) -> None:
        self.payload = payload

    def predict(self, data: object) -> list[int]:
        return [0]


def test_registry_over_http(server) -> None:  # type: ignore[no-untyped-def]
    mlplane.set_tracking_uri(server.url)
    name = f"remote-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    model = DecisionTreeClassifier(max_depth=3).fit(x, (x["a"] > 0).astype(int))
    v = mlplane.registry.register(name, model, input_example=x[:5], metrics={"acc": 0.97})
    assert v.version == 1 and v.scan_verdict == "safe"
    loaded = mlplane.registry.load(f"models:/{name}/1")
    assert (loaded.predict(x) == model.predict(x)).all()
    mlplane.registry.set_policy(name, {"rules": ["acc >= 0.99"]})
    with pytest.raises(Conflict, match=r"acc >= 0\.99 fails"):
        mlplane.registry.set_alias(name, "champion", 1)
    mlplane.registry.set_alias(name, "staging", 1)
    assert mlplane.registry.get(f"{name}@staging").version == 1
    assert [m.name for m in mlplane.registry.ls() if m.name == name] == [name]
    assert mlplane.registry.lineage(f"{name}@1").version.version == 1
    mlplane.registry.set_tag(f"{name}@1", "reviewed", "yes")
    assert mlplane.registry.get(f"{name}@1").tags == {"reviewed": "yes"}
    with pytest.raises(UnsafeArtifact, match="system"):
        mlplane.registry.register(name, Wrapper(_Evil()))
    with pytest.raises(NotFound, match="versions: 1"):
        mlplane.registry.get(f"{name}@7")
