"""The model registry: versioned, scanned, signed models with aliases and approval.

From Python::

    mv = mlplane.registry.register("fraud", model, input_example=X[:5], metrics={"auc": 0.93})
    mlplane.registry.set_alias("fraud", "challenger", mv.version)
    m = mlplane.registry.load("models:/fraud@champion"); m.predict(df)

The functions here are the SDK's face (like :mod:`mlplane.data`): each is one
call through the client's transport, embedded or HTTP; the rules live in
:class:`mlplane.registry.service.RegistryService`. The ML libraries are
imported on first use, so ``import mlplane`` stays light. ``bundle``,
``export_onnx`` and ``scan_path`` are named apart from the ``package``,
``export`` and ``scan`` modules they use, which would otherwise shadow them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlplane.projects import DEFAULT_PROJECT
from mlplane.registry.entities import ModelLineage, ModelVersion, RegisteredModel


def _transport() -> Any:
    from mlplane import fluent

    return fluent.client().transport


def _active_run_id() -> str | None:
    from mlplane import fluent

    run = fluent.active_run()
    return run.info.run_id if run is not None else None


def register(
    name: str,
    model: Any,
    *,
    input_example: Any = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    allow_unknown: bool = False,
    sensitive: Sequence[str] | None = None,
    project: str = DEFAULT_PROJECT,
) -> ModelVersion:
    """Register ``model`` as the next version of ``name``.

    The model is saved in its flavor's safe format (skops, native boosters,
    TorchScript, ONNX; pickle only as a scanned fallback), its signature inferred
    from ``input_example``, converted to ONNX with a parity check where possible,
    then scanned: an unsafe file refuses the version. Inside ``start_run`` the
    version links to the active run (params, metrics, dataset inputs, commit).
    ``sensitive`` names signature columns (e.g. ``["email"]``) that serving masks
    before it captures payloads.
    """
    from mlplane.registry._build import write_folder

    run_id = run_id if run_id is not None else _active_run_id()
    with tempfile.TemporaryDirectory(prefix="mlplane-model-") as tmp:
        folder = Path(tmp) / "model"
        write_folder(model, folder, input_example, sensitive=sensitive)
        return _transport().register_model(  # type: ignore[no-any-return]
            name,
            folder,
            project=project,
            metrics=dict(metrics or {}),
            params={k: str(v) for k, v in (params or {}).items()},
            run_id=run_id,
            description=description,
            tags=dict(tags or {}),
            allow_unknown=allow_unknown,
        )


def load(ref: str, *, project: str = DEFAULT_PROJECT) -> Any:
    """A registered model, integrity-checked, with ``predict`` over pandas, NumPy, Arrow or
    a list of dicts: ``models:/fraud@champion``, ``models:/fraud/3``, ``fraud@3``."""
    import json

    from mlplane.registry.flavors import PyFuncModel
    from mlplane.registry.flavors import get as get_flavor
    from mlplane.registry.signature import Signature

    version, folder, info = _transport().fetch_model(ref, project=project)
    flavor = get_flavor(version.flavor)
    native = flavor.load(Path(folder) / "model", info)
    sig = Signature.from_json(json.dumps(version.signature)) if version.signature else None
    return PyFuncModel(flavor, native, sig)


def get(ref: str, *, project: str = DEFAULT_PROJECT) -> ModelVersion:
    return _transport().get_model_version(ref, project=project)  # type: ignore[no-any-return]


def versions(name: str, *, project: str = DEFAULT_PROJECT) -> list[ModelVersion]:
    return _transport().model_versions(name, project=project)  # type: ignore[no-any-return]


def ls(*, project: str = DEFAULT_PROJECT) -> list[RegisteredModel]:
    return _transport().list_models(project=project)  # type: ignore[no-any-return]


def set_alias(
    name: str, alias: str, version: int, *, project: str = DEFAULT_PROJECT
) -> ModelVersion:
    """Point an alias at a version; protected aliases need approval and the policy."""
    return _transport().set_model_alias(name, alias, version, project=project)  # type: ignore[no-any-return]


def delete_alias(name: str, alias: str, *, project: str = DEFAULT_PROJECT) -> None:
    _transport().delete_model_alias(name, alias, project=project)


def set_policy(
    name: str,
    policy: Mapping[str, Any] | None,
    *,
    protected: list[str] | None = None,
    project: str = DEFAULT_PROJECT,
) -> RegisteredModel:
    """E.g. ``{"rules": ["auc >= 0.9"], "beat_champion": "auc"}``; needs the approver role."""
    return _transport().set_model_policy(name, policy, protected, project=project)  # type: ignore[no-any-return]


def update_card(ref: str, *, project: str = DEFAULT_PROJECT, **fields: str) -> ModelVersion:
    """Edit card fields: purpose, intended_use, limitations, ethical_considerations,
    owner_contact."""
    return _transport().update_model_card(ref, fields, project=project)  # type: ignore[no-any-return]


def set_tag(ref: str, key: str, value: str, *, project: str = DEFAULT_PROJECT) -> None:
    """Tag a version (``key=value``); tags are shown with the version and in its card."""
    _transport().set_model_tag(ref, key, str(value), project=project)


def lineage(ref: str, *, project: str = DEFAULT_PROJECT) -> ModelLineage:
    return _transport().model_lineage(ref, project=project)  # type: ignore[no-any-return]


def card(ref: str, *, fmt: str = "markdown", project: str = DEFAULT_PROJECT) -> str:
    """The version's model card as ``markdown`` or ``html``."""
    from mlplane.errors import InvalidInput
    from mlplane.registry import model_card as card_mod

    if fmt not in ("markdown", "html"):
        raise InvalidInput("fmt is 'markdown' or 'html'")
    lin = lineage(ref, project=project)
    render = card_mod.markdown if fmt == "markdown" else card_mod.to_html
    return render(lin.version, lin)


def bundle(
    ref: str,
    out: str | os.PathLike[str],
    *,
    k8s: bool = False,
    project: str = DEFAULT_PROJECT,
    **options: Any,
) -> dict[str, Any]:
    """A self-contained bundle of a version: the model, exact requirements, a Dockerfile
    running the model server, a CycloneDX SBOM and, with ``k8s``, Kubernetes manifests.
    ``options``: image, replicas, max_replicas, cpu, memory, port."""
    from mlplane.registry.package import package_version

    version, folder, _ = _transport().fetch_model(ref, project=project)
    manifest = {
        "name": version.name,
        "version": version.version,
        "flavor": version.flavor,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in version.files],
        "manifest_sha256": version.manifest_sha256,
        "signed_by": version.signed_by,
        "scan_verdict": version.scan_verdict,
        "created_at": version.created_at,
        "created_by": version.created_by,
    }
    return package_version(  # type: ignore[no-any-return]
        Path(folder),
        Path(out),
        name=version.name,
        version=version.version,
        manifest=manifest,
        k8s=k8s,
        **options,
    )


def export_onnx(
    ref: str,
    out: str | os.PathLike[str],
    *,
    quantize: bool = False,
    data: str | None = None,
    target: str | None = None,
    project: str = DEFAULT_PROJECT,
) -> dict[str, Any]:
    """Write the version's ONNX model to ``out``, optionally int8-quantized, reporting the
    size change and the largest output change on the input example or, with ``data``
    (a dataset version such as ``"holdout@2"``) and its ``target`` column, the accuracy
    of the float and the quantized model on it."""
    import shutil

    import numpy as np
    import pandas as pd

    from mlplane.errors import InvalidInput
    from mlplane.registry import export as export_mod

    version, folder, _ = _transport().fetch_model(ref, project=project)
    onnx = version.onnx or {}
    src = Path(folder) / "onnx" / str(onnx.get("file") or "model.onnx")
    if version.flavor == "onnx":
        src = next(Path(folder, "model").glob("*.onnx"), src)
    if not src.is_file():
        why = onnx.get("reason", "register it with an input example")
        raise InvalidInput(f"{version.ref} has no ONNX form: {why}")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not quantize:
        shutil.copyfile(src, out_path)
        return {"file": str(out_path), "size": out_path.stat().st_size, **onnx}
    example_file = Path(folder) / "input_example.parquet"
    example = pd.read_parquet(example_file) if example_file.is_file() else None
    labels = None
    if data is not None:
        from mlplane import data as data_sdk

        example = data_sdk.get(data, project=project).to_pandas()
        if target is not None:
            if target not in example.columns:
                raise InvalidInput(f"{data} has no column {target!r}: {', '.join(example.columns)}")
            labels = example.pop(target).to_numpy()
    report = export_mod.quantize(src, out_path, example=example)
    if labels is not None and example is not None:
        from mlplane.registry.flavors import get as get_flavor
        from mlplane.registry.flavors.onnx import session as onnx_session

        onnx_flavor = get_flavor("onnx")
        before = onnx_flavor.predict(onnx_session(src), example)
        after = onnx_flavor.predict(onnx_session(out_path), example)
        report["accuracy_before"] = float((np.asarray(before).ravel() == labels).mean())
        report["accuracy_after"] = float((np.asarray(after).ravel() == labels).mean())
        report["evaluated_on"] = data
    return {**report, "file": str(out_path)}


def scan_path(path: str | os.PathLike[str], *, strict: bool = False) -> Any:
    """Scan a model file or folder for code that would run on load; a ``ScanReport``."""
    from mlplane.registry.scan import scan_path as scan

    return scan(path, strict=strict)


def create_signing_key(*, required: bool = False, project: str = DEFAULT_PROJECT) -> str:
    """Give the project an Ed25519 key: new versions are signed, loads verify."""
    return _transport().create_signing_key(project=project, required=required)  # type: ignore[no-any-return]


__all__ = [
    "ModelLineage",
    "ModelVersion",
    "RegisteredModel",
    "bundle",
    "card",
    "create_signing_key",
    "delete_alias",
    "export_onnx",
    "get",
    "lineage",
    "load",
    "ls",
    "register",
    "scan_path",
    "set_alias",
    "set_policy",
    "set_tag",
    "update_card",
    "versions",
]
