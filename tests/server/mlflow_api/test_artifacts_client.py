"""The stock MLflow client's artifact calls against a real ``mlplane server``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlplane import Client

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def sdk(server: Any) -> Iterator[Client]:
    c = Client(uri=server.url)
    yield c
    c.close()


def test_fluent_artifact_logging_round_trip(unique: str, tmp_path: Path, sdk: Client) -> None:
    mlflow.set_experiment(f"mlflow-client-art-{unique}")
    (tmp_path / "one.txt").write_text("first")
    folder = tmp_path / "folder"
    (folder / "nested").mkdir(parents=True)
    (folder / "top.csv").write_text("a,b\n1,2\n")
    (folder / "nested" / "deep.txt").write_text("deep")

    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "one.txt"))
        mlflow.log_artifacts(str(folder), artifact_path="data")
        mlflow.log_dict({"alpha": 0.5, "layers": [1, 2]}, "config/params.json")
        mlflow.log_text("some notes", "notes.txt")
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")

    client = mlflow.MlflowClient()
    top = {f.path: f for f in client.list_artifacts(run_id)}
    assert set(top) == {"one.txt", "data", "config", "notes.txt"}
    assert top["data"].is_dir and not top["one.txt"].is_dir and top["one.txt"].file_size == 5
    assert [f.path for f in client.list_artifacts(run_id, "data/nested")] == [
        "data/nested/deep.txt"
    ]

    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "dl")))
    assert (out / "one.txt").read_text() == "first"
    assert (out / "data" / "nested" / "deep.txt").read_text() == "deep"
    assert json.loads((out / "config" / "params.json").read_text()) == {
        "alpha": 0.5,
        "layers": [1, 2],
    }
    one = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run_id}/data/top.csv", dst_path=str(tmp_path / "single")
    )
    assert Path(one).read_text() == "a,b\n1,2\n"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "some notes"

    # The same files through mlplane's own SDK.
    ours = {a.path: a.size for a in sdk.list_artifacts(run_id, recursive=True)}
    assert ours["data/nested/deep.txt"] == 4 and ours["notes.txt"] == 10
    assert (
        sdk.read_artifact(run_id, "config/params.json")
        == (out / "config" / "params.json").read_bytes()
    )


def test_log_image_if_pillow_is_installed(unique: str) -> None:
    pytest.importorskip("PIL")
    np = pytest.importorskip("numpy")
    mlflow.set_experiment(f"mlflow-client-img-{unique}")
    with mlflow.start_run() as run:
        mlflow.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "images/black.png")
    paths = [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "images")]
    assert paths == ["images/black.png"]


def test_sdk_artifacts_are_downloadable_by_mlflow(unique: str, tmp_path: Path, sdk: Client) -> None:
    eid = sdk.create_experiment(f"mlflow-client-rev-{unique}")
    run_id = sdk.create_run(eid).info.run_id
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(70_000))
    sdk.log_artifact(run_id, src, "weights")

    got = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="weights/model.bin", dst_path=str(tmp_path / "dl")
    )
    assert Path(got).read_bytes() == src.read_bytes()


def test_stock_client_multipart_upload(
    unique: str, tmp_path: Path, sdk: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced on, the client asks for part URLs, PUTs the parts in parallel, completes."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1024")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(100_000))
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    sent: list[int] = []
    upload_part = HttpArtifactRepository._upload_part

    def counting(credential: Any, local_file: str, size: int, start_byte: int) -> Any:
        sent.append(credential.part_number)
        return upload_part(credential, local_file, size, start_byte)

    # A spy, not a stand-in: every part still goes to the server.
    monkeypatch.setattr(HttpArtifactRepository, "_upload_part", staticmethod(counting))
    mlflow.set_experiment(f"mlflow-client-mpu-{unique}")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(350_000))  # four parts
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src), artifact_path="parts")
    assert sorted(sent) == [1, 2, 3, 4]
    assert sdk.read_artifact(run.info.run_id, "parts/big.bin") == src.read_bytes()
