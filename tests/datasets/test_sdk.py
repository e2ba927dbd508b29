"""``mlplane.data`` from Python, and lineage into runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import mlplane
from mlplane.errors import InvalidInput


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


def test_remote_store_says_datasets_are_embedded_only(server) -> None:  # type: ignore[no-untyped-def]
    mlplane.set_tracking_uri(server.url)
    with pytest.raises(InvalidInput, match="embedded-only"):
        mlplane.data.ls()
