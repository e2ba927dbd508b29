"""``mlplane.data`` from Python, and lineage into runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

import mlplane
from mlplane.errors import InvalidInput, NotFound, QualityGateFailed


def test_dataframe_round_trip_and_lineage(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": range(1000), "amount": [i * 0.5 for i in range(1000)]})
    v = mlplane.data.add("transactions", df)
    assert v.version == 1 and v.files[0].path == "transactions.parquet"
    again = mlplane.data.add("transactions", df)
    assert again.version == 1  # same content: no new version

    ds = mlplane.data.get("transactions@latest")
    pd.testing.assert_frame_equal(ds.to_pandas(), df)
    assert ds.to_arrow().num_rows == 1000
    assert (ds.path() / "transactions.parquet").exists()

    with mlplane.start_run(capture_context=False) as run:
        mlplane.log_input(ds, context="training")
    got = mlplane.get_run(run.run_id).inputs[0]
    assert (got.name, got.version, got.digest, got.context) == (
        "transactions",
        "1",
        v.digest,
        "training",
    )
    assert [d.name for d in mlplane.data.ls()] == ["transactions"]


def test_csv_folder_and_non_tabular_versions(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n1,2\n")
    (folder / "b.csv").write_text("x,y\n3,4\n")
    mlplane.data.add("parts", folder)
    assert sorted(mlplane.data.get("parts").to_pandas()["x"]) == [1, 3]
    (folder / "notes.txt").write_text("hi")
    mlplane.data.add("parts", folder)
    with pytest.raises(InvalidInput, match="one kind of table file"):
        mlplane.data.get("parts@2").to_pandas()
    out = mlplane.data.get("parts@2").path(tmp_path / "copy")
    assert (out / "notes.txt").read_text() == "hi"
    mlplane.data.tag("parts@1", "prod")
    assert [v.version for v in mlplane.data.versions("parts")] == [2, 1]
    assert mlplane.data.get("parts@prod").version.version == 1


def test_datasets_through_a_real_server(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The whole data API over HTTP: upload with gates and masking, read, tag, lineage,
    sample, SQL and garbage collection, with errors mapped back to their classes."""
    mlplane.set_tracking_uri(server.url)
    name = f"remote-{uuid.uuid4().hex[:8]}"
    df = pd.DataFrame(
        {
            "id": range(500),
            "email": [f"user{i}@example.com" for i in range(500)],
            "amount": [float(i % 50) for i in range(500)],
        }
    )
    contract = {"columns": {"id": {"unique": True}, "amount": {"between": {"min": 0}}}}
    v = mlplane.data.add(name, df, contract=contract, pii={"email": "hash"})
    assert v.version == 1 and v.quality is not None and v.quality.passed
    assert not v.pii_unhandled and v.files[0].pii is not None
    got = mlplane.data.get(f"{name}@1").to_pandas()
    assert len(got) == 500 and not got["email"].str.contains("@").any()
    assert got["email"].nunique() == 500  # pseudonyms stay distinct
    bad = df.assign(amount=-1.0)
    with pytest.raises(QualityGateFailed, match="between"):
        mlplane.data.add(name, bad)  # the contract is inherited
    with pytest.raises(NotFound, match="versions: 1"):
        mlplane.data.get(f"{name}@7")
    mlplane.data.tag(f"{name}@1", "prod")
    assert mlplane.data.get(f"{name}@prod").version.version == 1
    assert [x.version for x in mlplane.data.versions(name)] == [1]
    with mlplane.start_run(capture_context=False) as run:
        mlplane.log_input(v, context="training")
    assert [r.run_id for r in mlplane.data.lineage(f"{name}@1").runs] == [run.run_id]
    sample = mlplane.data.sample(f"{name}@1", 0.5, seed=3)
    assert sample.derived_from == f"{name}@1"
    assert 150 < sample.files[0].profile.rows < 350  # type: ignore[union-attr]
    n = mlplane.data.sql(f"SELECT count(*) AS n FROM '{name}@1'").column("n").to_pylist()
    assert n == [500]
    report = mlplane.Client().transport.collect_garbage(grace_s=None, dry_run=True)
    assert report.dry_run and report.chunks_deleted == 0
