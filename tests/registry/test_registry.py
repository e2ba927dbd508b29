"""The registry service end to end on the real store: register, scan, sign, alias, load."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sqlalchemy import select

from mlplane.config import load_settings
from mlplane.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TamperedArtifact,
    UnsafeArtifact,
)
from mlplane.registry import model_card as card_mod
from mlplane.security import Principal, local_admin
from mlplane.security.tables import AuditEventRow
from mlplane.services import Services
from mlplane.tracking.entities import RunInput

ME = local_admin("tester")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = Services.from_settings(load_settings(home=tmp_path / "home"))
    yield s
    s.close()


def _data(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "amount": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n),
            "country": rng.choice(["US", "DE", "FR"], n),
        }
    )
    y = ((x["amount"] > 50) ^ (x["country"] == "DE")).astype(int).to_numpy()
    return x, y


def _pipeline() -> tuple[Pipeline, pd.DataFrame]:
    x, y = _data()
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["amount", "age"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    ).fit(x, y)
    return pipe, x


def _audit(svc: Services) -> set[str]:
    with svc.db.read() as s:
        return set(s.scalars(select(AuditEventRow.action)))


def test_register_load_predict_with_signature(svc: Services) -> None:
    pipe, x = _pipeline()
    v = svc.registry.register(ME, "fraud", pipe, input_example=x[:5], metrics={"auc": 0.93})
    assert (v.version, v.flavor, v.scan_verdict, v.pickle) == (1, "sklearn", "safe", False)
    assert v.format == "skops" and v.metrics == {"auc": 0.93}
    assert {c["name"] for c in v.signature["inputs"]} == {"amount", "age", "country"}  # type: ignore[index]
    assert all(len(f.sha256) == 64 for f in v.files)
    m = svc.registry.load(ME, "models:/fraud/1")
    assert (m.predict(x[:50]) == pipe.predict(x[:50])).all()
    records = x[:3].to_dict(orient="records")
    assert (m.predict(records) == pipe.predict(x[:3])).all()
    with pytest.raises(InvalidInput, match="country"):
        m.predict(x[["amount", "age"]])
    assert {"model.version.create", "model.load"} <= _audit(svc)


def test_aliases_and_protected_promotion(svc: Services) -> None:
    pipe, x = _pipeline()
    svc.registry.register(ME, "fraud", pipe, input_example=x[:5], metrics={"auc": 0.91})
    svc.registry.register(ME, "fraud", pipe, input_example=x[:5], metrics={"auc": 0.85})
    svc.registry.register(ME, "fraud", pipe, input_example=x[:5], metrics={"auc": 0.95})
    svc.registry.set_alias(ME, "fraud", "challenger", 2)  # not protected: anyone who can write
    assert svc.registry.get_version(ME, "models:/fraud@challenger").version == 2
    svc.registry.set_policy(ME, "fraud", {"rules": ["auc >= 0.9"], "beat_champion": "auc"})
    svc.registry.set_alias(ME, "fraud", "champion", 1)
    with pytest.raises(Conflict, match=r"auc >= 0\.9 fails: auc is 0\.85"):
        svc.registry.set_alias(ME, "fraud", "champion", 2)
    svc.registry.set_alias(ME, "fraud", "champion", 3)
    with pytest.raises(Conflict, match="does not beat the current version 3"):
        svc.registry.set_alias(ME, "fraud", "champion", 1)
    assert "model.alias.refused" in _audit(svc)
    contributor = Principal(name="dev", roles={"default": "contributor"})
    with pytest.raises(PermissionDenied):
        svc.registry.set_alias(contributor, "fraud", "champion", 3)
    svc.registry.set_alias(contributor, "fraud", "challenger", 3)
    approver = Principal(name="lead", roles={"default": "approver"})
    svc.registry.delete_alias(approver, "fraud", "champion")
    with pytest.raises(NotFound, match="aliases: challenger"):
        svc.registry.get_version(ME, "fraud@champion")


def test_tampered_files_are_refused_on_load(svc: Services, tmp_path: Path) -> None:
    pipe, x = _pipeline()
    v = svc.registry.register(ME, "fraud", pipe, input_example=x[:5])
    _, folder, _ = svc.registry.fetch(ME, "fraud@1")
    target = next(p for p in folder.rglob("*") if p.is_file() and p.suffix == ".skops")
    target.write_bytes(target.read_bytes() + b"tampered")
    with pytest.raises(TamperedArtifact, match="SHA-256"):
        svc.registry.load(ME, "fraud@1")
    assert "model.load.refused" in _audit(svc)
    assert v.manifest_sha256


def test_signing(svc: Services) -> None:
    pipe, _ = _pipeline()
    svc.registry.register(ME, "fraud", pipe)  # before the key: unsigned
    key = svc.registry.create_signing_key(ME)
    v2 = svc.registry.register(ME, "fraud", pipe)
    assert v2.signed_by == key
    svc.registry.load(ME, "fraud@2")  # verifies
    svc.registry.load(ME, "fraud@1")  # unsigned is fine while not required
    svc.registry.create_signing_key(ME, required=True)  # a new key, now required
    with pytest.raises(TamperedArtifact, match="not signed"):
        svc.registry.load(ME, "fraud@1")
    with pytest.raises(TamperedArtifact, match="signature"):
        svc.registry.load(ME, "fraud@2")  # signed by the old key


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


class PyfuncModel:
    """A custom model class: stored with pickle, so scanned; unknown to the allowlist."""

    def __init__(self, payload: object = None) -> None:
        self.payload = payload

    def predict(self, data: object) -> list[int]:
        return [0] * len(data)  # type: ignore[arg-type]


def test_unsafe_and_unknown_models(svc: Services) -> None:
    with pytest.raises(UnsafeArtifact, match=r"os\.system|posix\.system"):
        svc.registry.register(ME, "evil", PyfuncModel(_Evil()))
    assert "model.register.refused" in _audit(svc)
    with pytest.raises(UnsafeArtifact, match="allow_unknown"):
        svc.registry.register(ME, "custom", PyfuncModel())
    contributor = Principal(name="dev", roles={"default": "contributor"})
    with pytest.raises(PermissionDenied):
        svc.registry.register(contributor, "custom", PyfuncModel(), allow_unknown=True)
    v = svc.registry.register(ME, "custom", PyfuncModel(), allow_unknown=True)
    assert v.scan_verdict == "unknown" and v.scan_override == ME.name and v.pickle
    svc.registry.set_policy(ME, "custom", {})
    with pytest.raises(Conflict, match="scan verdict is 'unknown'"):
        svc.registry.set_alias(ME, "custom", "champion", 1)
    with pytest.raises(InvalidInput, match=r"builtins\.dict"):
        svc.registry.register(ME, "nothing", {"not": "a model"})
    assert pickle  # keeps the import for the payload class


def test_versions_by_runs_finds_what_runs_trained_in_one_project(svc: Services) -> None:
    pipe, x = _pipeline()
    exp = svc.tracking.create_experiment(ME, "by-runs")
    a, b, c = (svc.tracking.create_run(ME, exp).info.run_id for _ in range(3))
    svc.registry.register(ME, "zeta", pipe, input_example=x[:5], run_id=a)
    svc.registry.register(ME, "alpha", pipe, input_example=x[:5], run_id=b)
    svc.registry.register(ME, "alpha", pipe, input_example=x[:5], run_id=a)
    svc.registry.register(ME, "alpha", pipe, input_example=x[:5])  # no run
    svc.registry.register(ME, "other", pipe, input_example=x[:5], run_id=a, project="elsewhere")
    found = svc.registry.versions_by_runs(ME, [a, b, c, a])
    assert [v.ref for v in found] == ["alpha@1", "alpha@2", "zeta@1"]
    assert [v.ref for v in svc.registry.versions_by_runs(ME, [c])] == []
    assert [v.ref for v in svc.registry.versions_by_runs(ME, [a], project="elsewhere")] == [
        "other@1"
    ]
    assert svc.registry.versions_by_runs(ME, [a], project="never-used") == []
    outsider = Principal(name="olga", roles={"elsewhere": "viewer"})
    with pytest.raises(PermissionDenied):
        svc.registry.versions_by_runs(outsider, [a])


def test_lineage_and_card(svc: Services) -> None:
    pipe, x = _pipeline()
    exp = svc.tracking.create_experiment(ME, "e")
    run = svc.tracking.create_run(ME, exp, tags={"mlplane.git.commit": "abc123def4567"})
    svc.tracking.log_batch(ME, run.info.run_id, params={"C": "1.0"})
    svc.tracking.log_inputs(
        ME, run.info.run_id, [RunInput(kind="dataset", name="transactions", version="3")]
    )
    v = svc.registry.register(
        ME, "fraud", pipe, input_example=x[:5], run_id=run.info.run_id, metrics={"auc": 0.9}
    )
    lin = svc.registry.lineage(ME, v.ref)
    assert lin.datasets == ["transactions@3"] and lin.git_commit == "abc123def4567"
    assert lin.params == {"C": "1.0"}
    svc.registry.update_card(ME, v.ref, {"intended_use": "Score card payments for review."})
    with pytest.raises(InvalidInput, match="editable"):
        svc.registry.update_card(ME, v.ref, {"colour": "blue"})
    text = card_mod.markdown(svc.registry.get_version(ME, v.ref), lin)
    assert "Score card payments for review." in text and "transactions@3" in text
    assert "| auc | 0.9 |" in text and "Scan verdict | safe" in text
    page = card_mod.to_html(svc.registry.get_version(ME, v.ref), lin)
    assert page.startswith("<!doctype html>") and "<script" not in page
