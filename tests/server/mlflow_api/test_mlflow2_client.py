"""The stock MLflow 2.x client against a real server: the same wire API serves both majors.

The other client tests run with the 3.x client installed in the test environment. A 2.x
client cannot live beside it, so this test builds its own virtualenv (once, cached under
``.bench/``) and runs ``_mlflow2_driver.py`` there. 2.x logs models as run artifacts
(``runs/log-model`` plus an artifact upload) instead of 3.x's logged models, and still
leans on registry stages; the driver goes through both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

import mlplane

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".bench" / "mlflow2-venv"
DRIVER = Path(__file__).with_name("_mlflow2_driver.py")
# numpy 2.2 / pandas 2.2 / scikit-learn 1.6 are the newest lines mlflow 2.22 was released
# against, and all three ship wheels for Python 3.11, so nothing builds from source.
REQUIREMENTS = (
    "mlflow-skinny==2.22.*",
    "scikit-learn==1.6.1",
    "pandas==2.2.3",
    "numpy==2.2.6",
)


def _build_venv(venv: Path) -> Path:
    """The 2.x venv's python; built once, rebuilt only when ``REQUIREMENTS`` change."""
    python = venv / "bin" / "python"
    marker = venv / ".requirements"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    venv.parent.mkdir(parents=True, exist_ok=True)
    # xdist workers share the cache: the second one waits for the first one's build.
    with FileLock(str(venv.parent / "mlflow2-venv.lock")):
        if python.is_file() and marker.is_file() and marker.read_text() == wanted:
            return python
        # A build that was interrupted, or made for other pins, is not worth repairing.
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *REQUIREMENTS], check=True)
        marker.write_text(wanted)  # last: its presence means the install finished
    return python


@pytest.fixture(scope="session")
def mlflow2_python() -> Path:
    return _build_venv(VENV)


def _run_driver(python: Path, server_url: str, name: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server_url,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }
    # The test environment's own mlflow (3.x) must not leak into the 2.x interpreter.
    for var in ("PYTHONPATH", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        env.pop(var, None)
    proc = subprocess.run(
        [str(python), str(DRIVER), name],
        capture_output=True,
        text=True,
        env=env,
        cwd=DRIVER.parent,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture
def sdk(server: Any) -> Iterator[mlplane.Client]:
    with mlplane.Client(uri=server.url) as c:
        yield c


# A cold venv build (pip downloads and installs ~50 packages) outlasts the default timeout.
@pytest.mark.timeout(900)
def test_mlflow2_client_end_to_end(mlflow2_python: Path, server: Any, sdk: mlplane.Client) -> None:
    name = f"mlflow2-{uuid.uuid4().hex[:8]}"
    out = _run_driver(mlflow2_python, server.url, name)

    assert out["mlflow_version"].startswith("2.22.")
    assert out["status"] == "FINISHED"
    assert out["params"] == {"alpha": "0.5", "solver": "lbfgs", "max_iter": "200"}
    assert out["tags"] == {"team": "risk", "stage": "dev", "owner": "mlflow2"}
    assert out["metrics"] == {"loss": pytest.approx(1 / 3), "acc": 0.9, "f1": 0.8}
    assert out["history"] == [[0, 1.0], [1, 0.5], [2, pytest.approx(1 / 3)]]
    assert out["artifacts"] == ["config", "docs", "model"]
    assert {"model/MLmodel", "model/model.pkl"} <= set(out["model_files"])
    assert out["features"] == {"features": ["a", "b"]}
    children = out["children"]
    # score > 0.75 keeps the children scoring 0.9 and 0.8, best first.
    assert out["search"] == [children[1], children[2]]
    assert out["search_frame_rows"] == 4
    assert out["model_uri"] == f"runs:/{out['parent']}/model"
    assert (out["version"], out["alias_version"], out["stage"]) == ("1", "1", "Staging")
    assert out["predictions"] == [0, 1, 1, 1]
    assert (out["deleted_stage"], out["restored_stage"]) == ("deleted", "active")

    # What the 2.x client wrote is what mlplane's own SDK reads back.
    experiment = sdk.get_experiment(out["experiment_id"])
    assert experiment.name == f"{name}-experiment"
    runs = {r.info.run_id: r for r in sdk.search_all_runs(out["experiment_id"])}
    assert set(runs) == {out["parent"], *children}
    parent = runs[out["parent"]]
    assert parent.data.params == out["params"]
    assert {runs[c].info.parent_run_id for c in children} == {out["parent"]}
    assert [(m.step, m.value) for m in sdk.get_metric_history(out["parent"], "loss")] == [
        (0, 1.0),
        (1, 0.5),
        (2, pytest.approx(1 / 3)),
    ]
    model_files = {a.path for a in sdk.list_artifacts(out["parent"], "model")}
    assert "model/MLmodel" in model_files
    assert json.loads(sdk.read_artifact(out["parent"], "config/features.json")) == {
        "features": ["a", "b"]
    }
