"""Registering an MLflow model folder (one with an ``MLmodel`` file) as a version.

MLflow clients register models that MLflow wrote: a folder with ``MLmodel``, the
model's files (``model.skops``, ``model.pkl``, ``python_model.pkl``…) and its
environment files. The registry keeps such a folder as it is, under ``model/``
of the version, with a ``pyfunc`` descriptor of format ``mlflow``: nothing is
re-saved, so the bytes a client downloads are the bytes it logged. Everything
else is as for any version: every file scanned (a cloudpickled scikit-learn
model names only ``sklearn``/``numpy`` globals, which the scanner allows;
anything it cannot judge needs a project admin's ``allow_unknown``), hashed,
signed, stored as chunks.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mlplane import projects
from mlplane.errors import InvalidInput
from mlplane.registry.entities import META_FILE, ModelVersion
from mlplane.security import Principal

MLMODEL = "MLmodel"
MODEL_DIR = "model"
"""The version folder's subfolder holding the MLflow model as logged."""
_SAFE_FORMATS = {"skops"}


def describe(folder: Path) -> dict[str, Any]:
    """The descriptor (``mlplane-model.json``) of an MLflow model folder, from its MLmodel."""
    try:
        mlmodel = yaml.safe_load((folder / MLMODEL).read_text())
    except OSError:
        raise InvalidInput(
            "the source holds no MLmodel file: register the folder a log_model call wrote"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the source's MLmodel is not valid YAML: {exc}") from None
    if not isinstance(mlmodel, dict) or not isinstance(mlmodel.get("flavors"), dict):
        raise InvalidInput("the source's MLmodel lists no flavors")
    flavors: dict[str, Any] = mlmodel["flavors"]
    pyfunc = flavors.get("python_function") or {}
    sklearn = flavors.get("sklearn") or {}
    # Loading unpickles unless the only model file is a skops file (loaded by type allowlist).
    safe_only = set(flavors) <= {"python_function", "sklearn"} and (
        sklearn.get("serialization_format") in _SAFE_FORMATS
    )
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    info = {
        "flavor": "pyfunc",
        "format": "mlflow",
        "files": files,
        "library_version": mlmodel.get("mlflow_version"),
        "pickle": not safe_only,
        "mlflow_flavors": sorted(flavors),
        "loader_module": pyfunc.get("loader_module"),
    }
    return {
        "flavor": "pyfunc",
        "info": info,
        "signature": None,  # MLflow enforces its own signature (in MLmodel) when it loads
        "onnx": None,
        "environment": {
            "python": pyfunc.get("python_version"),
            "packages": _pins(folder / "requirements.txt"),
        },
    }


def _pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file; other lines carry no exact version."""
    pins: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return pins
    for line in lines:
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name and version:
            pins[name.strip().lower()] = version.strip()
    return pins


class MlflowFolderMixin:
    register_folder: Any

    def register_mlflow_folder(
        self,
        p: Principal,
        name: str,
        folder: Path,
        *,
        project: str = projects.DEFAULT_PROJECT,
        run_id: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        allow_unknown: bool = False,
        source: str | None = None,
        logged_model_id: str | None = None,
    ) -> ModelVersion:
        """Register the MLflow model in ``folder`` (with its ``MLmodel``) as the next version
        of ``name``, its files unchanged under ``model/``. Otherwise as :meth:`register_folder`.

        Raises:
            InvalidInput: the folder has no readable MLmodel.
            UnsafeArtifact: the scan found code execution, or could not tell.
        """
        meta = describe(folder)
        with tempfile.TemporaryDirectory(prefix="mlplane-mlflow-model-") as tmp:
            version_dir = Path(tmp) / "version"
            shutil.copytree(folder, version_dir / MODEL_DIR)
            (version_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            return self.register_folder(  # type: ignore[no-any-return]
                p,
                name,
                version_dir,
                project=project,
                run_id=run_id,
                description=description,
                tags=tags,
                allow_unknown=allow_unknown,
                source=source,
                logged_model_id=logged_model_id,
            )
