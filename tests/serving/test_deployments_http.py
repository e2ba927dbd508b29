"""The deployment calls through a real server: the HTTP transport gives what the embedded
one gives, and the server's errors arrive as the same error classes."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

import mlplane
from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.errors import Conflict, InvalidInput, NotFound
from mlplane.serving.entities import Deployment


def test_deployments_over_http(server) -> None:  # type: ignore[no-untyped-def]
    mlplane.set_tracking_uri(server.url)
    name = f"dep-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    for depth in (2, 3):
        model = DecisionTreeClassifier(max_depth=depth).fit(x, (x["a"] > 0).astype(int))
        mlplane.registry.register(name, model, input_example=x[:5])
    c = Client(settings=load_settings(uri=server.url, retry_max_s=2))
    t = c.transport
    try:
        d = t.create_deployment(name, f"{name}@1", config={"capture_percent": 2}, project="default")
        assert isinstance(d, Deployment) and d.routing.percents() == {1: 100.0}
        assert d.config.capture_percent == 2
        assert name in [x.name for x in t.list_deployments(project="default")]
        d = t.start_canary(
            name,
            f"{name}@2",
            steps=[25, 100],
            interval="10m",
            thresholds={"max_error_rate": 0.01},
            failure_limit=1,
            promote=False,
            project="default",
        )
        assert d.rollout is not None and d.rollout.steps == [25.0, 100.0]
        assert d.routing.percents() == {1: 75.0, 2: 25.0}
        with pytest.raises(Conflict, match="canary"):
            t.start_ab(
                name, [(f"{name}@1", 50), (f"{name}@2", 50)], sticky_header=None, project="default"
            )
        d = t.rollback_deployment(name, project="default")
        assert d.rollout.status == "rolled_back"
        d = t.set_shadow(name, f"{name}@2", 30, project="default")
        assert d.routing.shadow is not None and d.routing.shadow.percent == 30
        d = t.start_ab(
            name, [(f"{name}@1", 30), (f"{name}@2", 70)], sticky_header="X-User", project="default"
        )
        assert d.routing.sticky_header == "X-User" and d.routing.shadow is None
        st = t.deployment_status(name, window_s=60, project="default")
        assert st.deployment.generation == d.generation and st.traffic == []
        assert t.deployment_timeline(name, since_s=60, bucket_s=10, project="default") == []
        t.record_feedback(name, "r2-abcdef", 1, project="default")
        report = t.ab_report(name, since_s=None, alpha=0.05, project="default")
        assert [v["feedback"] for v in report["variants"]] == [0, 1]
        d = t.configure_deployment(name, {"max_wait_ms": 7}, project="default")
        assert d.config.max_wait_ms == 7
        assert d.generation == t.get_deployment(name, project="default").generation
        hist = t.deployment_history(name, project="default")
        assert [e.action for e in hist][-3:] == ["shadow", "ab", "configure"]
        with pytest.raises(InvalidInput, match="max_wiat_ms"):
            t.configure_deployment(name, {"max_wiat_ms": 7}, project="default")
        assert mlplane.deployments.history(name)[0].action == "create"
        assert mlplane.deployments.route(name, f"{name}@2").routing.percents() == {2: 100.0}
        assert mlplane.deployments.get(name).routing.stable == 2
        t.delete_deployment(name, project="default")
        with pytest.raises(NotFound):
            t.get_deployment(name, project="default")
    finally:
        c.close()
