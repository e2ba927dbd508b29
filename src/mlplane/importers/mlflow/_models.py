"""An MLflow model folder (``MLmodel`` and its files) as one of our version folders.

Nothing in the MLflow folder is loaded: ``MLmodel`` is YAML, and the model
file is moved as bytes to where our flavor expects it. The registry then
scans every file, as for any registration, before anything is stored.

=========================================  ======================================
MLflow flavor (``MLmodel``)                our flavor / format
=========================================  ======================================
sklearn, pickle or cloudpickle             sklearn / pickle (scanned; unpickled
                                           only after a passing scan)
sklearn, skops                             sklearn / skops
lightgbm or xgboost sklearn-API, pickled   sklearn / pickle (they are estimators)
xgboost ``ubj``                            xgboost / ubj
lightgbm Booster (``model.lgb``, text)     lightgbm / txt
onnx                                       onnx / onnx
anything else (pyfunc, pytorch, …)         refused: :class:`Unsupported`
=========================================  ======================================

The rest of the MLflow folder (``MLmodel``, ``requirements.txt``, the conda
and virtualenv files, input examples) is kept under ``mlflow/`` in the version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from mlplane.errors import InvalidInput
from mlplane.registry.entities import META_FILE
from mlplane.registry.signature import Signature

_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "binary": "binary",
    "datetime": "datetime64[ns]",
}


class Unsupported(Exception):
    """The MLflow model is of a kind our registry cannot load; the message says which."""


def convert(src: Path, dest: Path, *, mlflow_ref: str) -> dict[str, Any]:
    """Write a version folder at ``dest`` from the MLflow model folder ``src``.

    Returns:
        The flavor info written to ``mlplane-model.json``.

    Raises:
        Unsupported: no flavor in ``MLmodel`` maps to one of ours.
        InvalidInput: ``src`` has no readable ``MLmodel``.
    """
    try:
        mlmodel = yaml.safe_load((src / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{mlflow_ref}: no readable MLmodel file ({exc})") from None
    flavors: dict[str, Any] = mlmodel.get("flavors") or {}
    flavor, fmt, data_file, target, extra = _choose(flavors, mlflow_ref)
    if not (src / data_file).is_file():
        raise InvalidInput(f"{mlflow_ref}: MLmodel names {data_file}, which is not in the folder")
    (dest / "model").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / data_file, dest / "model" / target)
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src).as_posix()
        if f.is_file() and rel != data_file:
            (dest / "mlflow" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest / "mlflow" / rel)
    info = {
        "flavor": flavor,
        "format": fmt,
        "files": [target],
        "library_version": extra.pop("library_version", None),
        "pickle": fmt == "pickle",
        **extra,
        "imported_from": {
            "mlflow": mlflow_ref,
            "mlflow_version": mlmodel.get("mlflow_version"),
            "flavors": sorted(flavors),
        },
    }
    signature = signature_from_mlmodel(mlmodel.get("signature"))
    meta = {
        "flavor": flavor,
        "info": info,
        "signature": signature.to_dict() if signature is not None else None,
        "onnx": None,
        "environment": _environment(src, flavors),
    }
    (dest / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return info


def _choose(flavors: dict[str, Any], ref: str) -> tuple[str, str, str, str, dict[str, Any]]:
    """(our flavor, format, MLflow's data file, our file name, extra info)."""
    sk = flavors.get("sklearn")
    if sk and sk.get("pickled_model"):
        serial = str(sk.get("serialization_format") or "cloudpickle")
        version = sk.get("sklearn_version")
        if serial == "skops":
            return (
                "sklearn",
                "skops",
                str(sk["pickled_model"]),
                "model.skops",
                {"library_version": version},
            )
        return (
            "sklearn",
            "pickle",
            str(sk["pickled_model"]),
            "model.pkl",
            {
                "library_version": version,
                "serializer": serial,
            },
        )
    xgb = flavors.get("xgboost")
    if xgb and str(xgb.get("model_format")) == "ubj":
        cls = str(xgb.get("model_class") or "")
        wrapper = cls if cls.startswith("xgboost.sklearn.") else None
        return (
            "xgboost",
            "ubj",
            str(xgb["data"]),
            "model.ubj",
            {
                "library_version": xgb.get("xgb_version"),
                "wrapper": wrapper,
            },
        )
    lgb = flavors.get("lightgbm")
    if lgb and str(lgb.get("model_class") or "").endswith(".Booster"):
        return (
            "lightgbm",
            "txt",
            str(lgb["data"]),
            "model.txt",
            {
                "library_version": lgb.get("lgb_version"),
                "wrapper": None,
                "classes": None,
            },
        )
    for name in ("xgboost", "lightgbm"):  # scikit-learn API models MLflow pickled
        fl = flavors.get(name) or {}
        if str(fl.get("data", "")).endswith(".pkl"):
            return (
                "sklearn",
                "pickle",
                str(fl["data"]),
                "model.pkl",
                {
                    "library_version": None,
                    "serializer": "cloudpickle",
                },
            )
    ox = flavors.get("onnx")
    if ox and ox.get("data"):
        return (
            "onnx",
            "onnx",
            str(ox["data"]),
            "model.onnx",
            {"library_version": ox.get("onnx_version")},
        )
    names = ", ".join(sorted(flavors)) or "none"
    raise Unsupported(
        f"{ref}: MLflow flavors {names} have no equivalent here (imported: sklearn, xgboost "
        "ubj, lightgbm Booster, onnx); a custom pyfunc model is code, which is not imported"
    )


def signature_from_mlmodel(raw: Any) -> Signature | None:
    """MLflow's column or tensor signature as ours; None when it has none or one we cannot map."""
    if not isinstance(raw, dict) or not raw.get("inputs"):
        return None
    try:
        inputs = _columns(json.loads(raw["inputs"]), "x", "input")
        outputs = (
            _columns(json.loads(raw["outputs"]), "y", "output") if raw.get("outputs") else None
        )
        return Signature.from_dict({"inputs": inputs, "outputs": outputs})
    except (ValueError, KeyError, TypeError):
        return None


def _columns(specs: list[dict[str, Any]], prefix: str, tensor_name: str) -> list[dict[str, Any]]:
    if len(specs) == 1 and specs[0].get("type") == "tensor":
        spec = specs[0]["tensor-spec"]
        dtype, shape = str(spec["dtype"]), [int(d) for d in spec["shape"]]
        if len(shape) == 1:
            return [{"name": prefix, "type": dtype}]
        if len(shape) == 2 and shape[1] > 0:
            return [{"name": f"{prefix}{i}", "type": dtype} for i in range(shape[1])]
        return [{"name": tensor_name, "type": dtype, "shape": shape}]
    if len(specs) == 1 and not specs[0].get("name"):
        return [{"name": prefix, "type": _TYPES.get(str(specs[0].get("type")), "object")}]
    return [
        {
            "name": str(s.get("name") or f"{prefix}{i}"),
            "type": _TYPES.get(str(s.get("type")), "object"),
        }
        for i, s in enumerate(specs)
    ]


def _environment(src: Path, flavors: dict[str, Any]) -> dict[str, Any]:
    """Python and pinned packages as the MLflow folder records them (not this interpreter's)."""
    packages: dict[str, str] = {}
    req = src / "requirements.txt"
    if req.is_file():
        for line in req.read_text(encoding="utf-8").splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and name and not name.startswith(("#", "-")):
                packages[name.lower()] = version.strip()
    python = (flavors.get("python_function") or {}).get("python_version")
    return {"python": python, "packages": dict(sorted(packages.items())), "source": "mlflow"}
