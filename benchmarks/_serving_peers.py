"""The serving benchmark's peers: their virtualenvs, the model, and the files they serve.

Two lives, like ``_common.py``: ``benchmarks/serving.py`` imports it to build the peers'
virtualenvs and write their service files, and each peer's interpreter runs it as a driver
(``python _serving_peers.py train FLAVOR OUT``) to train the benchmark's model in its own
environment. Only the standard library is imported at module level. Every environment trains
the same model from the same seeded data with the same scikit-learn version, so every server
answers with the same predictions (``serving.py`` checks they do); a pickle would tie the
peers to our environment instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FEATURES = 20
TRAIN_ROWS = 5_000
SEED = 7
COLUMNS = [f"f{i}" for i in range(FEATURES)]

# What each peer's virtualenv installs; scikit-learn is pinned to ours at run time. Changing a
# spec (or our scikit-learn) builds that virtualenv again.
MLFLOW_SPECS = ["mlflow>=3,<4"]
BENTOML_SPECS = ["bentoml>=1.4,<1.5"]
STARLETTE_SPECS = ["starlette>=0.40,<2", "uvicorn[standard]>=0.30,<1"]


def features(rows: int, seed: int) -> list[list[float]]:
    """``rows`` seeded rows of 20 features, rounded so a JSON body stays a plain size."""
    import random

    rng = random.Random(seed)
    return [[round(rng.gauss(0.0, 1.0), 5) for _ in range(FEATURES)] for _ in range(rows)]


def make_model(frame: bool) -> tuple[Any, Any]:
    """The benchmark's model and its training data: fitted on a DataFrame with columns
    ``f0..f19`` when ``frame`` (MLflow and ours get column names), on an array otherwise.
    The trees are the same either way."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier

    x = np.asarray(features(TRAIN_ROWS, SEED))
    y = ((x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] ** 2) > 0).astype(int)
    if frame:
        import pandas as pd

        x = pd.DataFrame(x, columns=COLUMNS)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)
    return model.fit(x, y), x


# -- virtualenvs -----------------------------------------------------------------------------------


def ensure_venv(venv: Path, specs: list[str], log: Any) -> tuple[Path, float | None]:
    """The virtualenv's python, created once (cached); also how long building it took, or
    None when it was already there. Its ``.installed`` marker holds the specs it was built
    with and what got installed."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = " ".join(specs)
    if marker.is_file() and python.is_file():
        if marker.read_text().splitlines()[0] == wanted:
            return python, None
        log(f"  {venv.name}: specs changed, building it again")
        shutil.rmtree(venv)
    log(f"  building {venv.name}: pip install {wanted} (once; cached afterwards)")
    t0 = time.perf_counter()
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, *specs], capture_output=True, text=True)
    if done.returncode != 0:  # pip's own output only when it failed: it is long
        shutil.rmtree(venv, ignore_errors=True)
        raise RuntimeError(f"pip install {wanted} failed:\n{done.stderr[-3000:]}")
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True
    ).stdout
    marker.write_text(wanted + "\n" + freeze)
    return python, time.perf_counter() - t0


def installed(venv: Path, package: str) -> str:
    """The version of ``package`` in the virtualenv (from its marker), or '?'."""
    marker = venv / ".installed"
    if marker.is_file():
        for line in marker.read_text().splitlines()[1:]:
            name, _, version = line.partition("==")
            if name.lower().replace("_", "-") == package:
                return version
    return "?"


# -- the servers' files ----------------------------------------------------------------------------

BENTO_SERVICE = '''\
"""The benchmark's model behind BentoML 1.4's own service API, 2 workers."""
import bentoml
import joblib
import numpy as np

MODEL_PATH = {model_path!r}


@bentoml.service(workers=2)
class GBC:
    def __init__(self) -> None:
        self.model = joblib.load(MODEL_PATH)

    @bentoml.api
    def predict(self, data: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(data, dtype=float)).tolist()
'''

STARLETTE_APP = '''\
"""The limit: a bare Starlette endpoint that reads the body and returns a constant."""
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

ANSWER = {"predictions": [0]}


async def predict(request):
    await request.body()
    return JSONResponse(ANSWER)


async def ping(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/invocations", predict, methods=["POST"]),
                        Route("/ping", ping)])
'''


def write_bento_service(folder: Path, model_path: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.py").write_text(BENTO_SERVICE.format(model_path=str(model_path)))
    return folder


def write_starlette_app(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(STARLETTE_APP)
    return folder


# -- the driver (runs inside a peer's virtualenv, or ours) -----------------------------------------


def _train(flavor: str, out: str) -> dict[str, Any]:
    """Train the model here and save it the way ``flavor`` serves it."""
    import sklearn

    if flavor == "mlflow":
        import mlflow.sklearn

        model, x = make_model(frame=True)
        # MLflow 3's default format is skops, which refuses to load tree models unless their
        # node storage is named as trusted (its own error message says so).
        mlflow.sklearn.save_model(
            model, out, input_example=x[:5], skops_trusted_types=["sklearn.tree._tree.Tree"]
        )
    elif flavor == "joblib":
        import joblib

        model, x = make_model(frame=False)
        joblib.dump(model, out)
    elif flavor == "mlplane":
        import mlplane

        model, x = make_model(frame=True)
        mv = mlplane.registry.register("bench", model, input_example=x[:5])
        return {"sklearn": sklearn.__version__, "version": mv.version}
    else:
        raise SystemExit(f"unknown flavor {flavor}")
    return {"sklearn": sklearn.__version__}


def _predict(payload: str) -> dict[str, Any]:
    """The reference predictions: the model trained here, on the request rows."""
    model, _ = make_model(frame=False)
    import numpy as np

    rows = json.loads(payload)
    return {"predictions": model.predict(np.asarray(rows, dtype=float)).tolist()}


if __name__ == "__main__":
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    if sys.argv[1] == "train":
        result = _train(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "predict":
        result = _predict(sys.argv[2])
    else:
        raise SystemExit(f"unknown op {sys.argv[1]}")
    sys.stdout.write(json.dumps(result) + "\n")
