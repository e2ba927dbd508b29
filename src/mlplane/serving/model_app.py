"""The model server: one model version behind a small, fast HTTP API.

It serves either a version folder (``mlplane-model.json``, ``model/``, …) or a
bundle made by :func:`mlplane.registry.package.package_version` (``manifest.json``
and the version folder in ``model/``); a bundle's files are hashed and checked
against its manifest before anything is loaded, and any difference stops the
server. The model is loaded once, at start-up.

Routes: ``GET /healthz`` (the process is up), ``GET /readyz`` (the model is
loaded), ``GET /v1/models/{name}`` (what is served), and ``POST
/v1/models/{name}:predict`` or ``POST /predict`` with one of::

    {"instances": [{"col": 1.0, ...}, ...]}                  records
    {"inputs": {"col": [1.0, ...], ...}}                      columns
    {"dataframe_split": {"columns": [...], "data": [[...]]}}  split frame

answered with ``{"predictions": [...]}`` (NaN and infinities as ``null``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplane._version import __version__
from mlplane.errors import InvalidInput, NotFound, TamperedArtifact
from mlplane.registry import integrity
from mlplane.registry.entities import ModelFile
from mlplane.registry.package import MANIFEST_FILE, META_FILE
from mlplane.server import errors
from mlplane.server.bodies import read_limited

log = logging.getLogger("mlplane.serving")

MAX_BODY_BYTES = 16 * 1024 * 1024
SPEC_ENV = "MLPLANE_MODEL_SERVER_SPEC"
"""How :func:`serve` hands its arguments to each uvicorn worker's :func:`app_factory`."""

LOOPBACK_ONLY = (
    "the model server has no authentication; it listens on loopback addresses only "
    "(127.0.0.1, ::1, localhost) unless allow_remote is set, e.g. inside a container "
    "behind a gateway that authenticates"
)
FORMS = ("instances", "inputs", "dataframe_split")

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "Exactly one of instances, inputs or dataframe_split.",
                    "properties": {
                        "instances": {"type": "array", "items": {}},
                        "inputs": {"anyOf": [{"type": "object"}, {"type": "array"}]},
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}},
                            },
                            "required": ["columns", "data"],
                        },
                    },
                }
            }
        },
    }
}


@dataclass(frozen=True, slots=True)
class ServedFolder:
    """A checked folder to serve: where the version folder is, and what it says."""

    folder: Path
    """The version folder (``mlplane-model.json``, ``model/``, …)."""
    meta: dict[str, Any]
    manifest: dict[str, Any] | None
    """The bundle's manifest; None when serving a bare version folder."""


def check_folder(folder: Path) -> ServedFolder:
    """Find the version folder in ``folder`` and, for a bundle, verify every file.

    Raises:
        InvalidInput: ``folder`` is neither a version folder nor a bundle.
        TamperedArtifact: a bundle's file is missing, changed or not in its manifest.
    """
    folder = Path(folder)
    manifest = None
    if (folder / MANIFEST_FILE).is_file():
        manifest = _read_json(folder / MANIFEST_FILE)
        folder = folder / "model"
    try:
        meta = _read_json(folder / META_FILE)
        str(meta["flavor"])
    except (InvalidInput, KeyError, TypeError):
        raise InvalidInput(
            f"{folder.name or folder} is not a model version folder or bundle: "
            f"it has no readable {META_FILE}"
        ) from None
    if manifest is not None:
        _verify(folder, manifest, meta)
    return ServedFolder(folder, meta, manifest)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path.name} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path.name} must hold a JSON object")
    return data


def _verify(folder: Path, manifest: dict[str, Any], meta: dict[str, Any]) -> None:
    ref = f"{manifest.get('name', 'model')}@{manifest.get('version', '?')}"
    try:
        files = [
            ModelFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in manifest["files"]
        ]
    except (KeyError, TypeError, ValueError):
        raise TamperedArtifact(f"{ref}: {MANIFEST_FILE} does not list the files") from None
    integrity.verify_files(folder, files, ref)
    listed = {f.path for f in files}
    extra = [f.path for f in integrity.list_files(folder) if f.path not in listed]
    if extra:
        raise TamperedArtifact(f"{ref}: files not in {MANIFEST_FILE}: {', '.join(extra[:5])}")
    recorded = manifest.get("manifest_sha256")
    if recorded is not None and recorded != integrity.manifest_digest(
        files, str(meta["flavor"]), dict(meta.get("info") or {})
    ):
        raise TamperedArtifact(f"{ref}: {MANIFEST_FILE} does not hash to its manifest_sha256")


def load_model(served: ServedFolder) -> Any:
    """The version's model as a :class:`~mlplane.registry.flavors.PyFuncModel`."""
    from mlplane.registry.flavors import PyFuncModel, get
    from mlplane.registry.signature import Signature

    meta = served.meta
    flavor = get(str(meta["flavor"]))
    native = flavor.load(served.folder / "model", dict(meta.get("info") or {}))
    sig = meta.get("signature")
    signature = Signature.from_json(json.dumps(sig)) if sig else None
    return PyFuncModel(flavor, native, signature)


def create_model_app(
    folder: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the model server for ``folder``; the model loads when the app starts.

    Args:
        folder: A version folder, or a bundle from :func:`package_version`.
        name: The name in the routes; default the bundle's, else ``"model"``.
        version: The version reported; default the bundle's, else ``""``.
        max_body_bytes: Larger request bodies are answered with 413.
    """
    folder = Path(folder)
    state: dict[str, Any] = {"name": name or "model", "model": None}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A bundle that fails its digests must not serve at all: the error stops start-up.
        served = await run_in_threadpool(check_folder, folder)
        model = await run_in_threadpool(load_model, served)
        manifest = served.manifest or {}
        state.update(
            name=name or str(manifest.get("name") or "model"),
            version=version if version is not None else str(manifest.get("version", "")),
            flavor=str(served.meta["flavor"]),
            signature=served.meta.get("signature"),
            manifest_sha256=manifest.get("manifest_sha256"),
            model=model,
        )
        log.info("serving %s version %s", state["name"], state["version"] or "-")
        yield

    app = FastAPI(
        title="mlplane model server",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.model_server = state
    errors.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The model is loaded and can predict."""
        if state["model"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "name": state["name"]})

    @app.get("/v1/models/{name}", tags=["models"])
    def metadata(name: str) -> Response:
        """What is served: name, version, flavor, signature."""
        _check_name(state, name)
        keys = ("name", "version", "flavor", "signature", "manifest_sha256")
        return _json({k: state.get(k) for k in keys})

    async def predict(request: Request) -> Response:
        if state["model"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        raw = await read_limited(request, max_body_bytes)
        data = parse_body(raw)
        out = await run_in_threadpool(_predict, state["model"], data)
        return _json({"predictions": out})

    @app.post("/v1/models/{name}:predict", tags=["models"], openapi_extra=_PREDICT_BODY)
    async def predict_named(name: str, request: Request) -> Response:
        """Predict; see the module documentation for the body forms."""
        _check_name(state, name)
        return await predict(request)

    @app.post("/predict", tags=["models"], openapi_extra=_PREDICT_BODY)
    async def predict_default(request: Request) -> Response:
        """Predict with the served model; the same as ``/v1/models/{name}:predict``."""
        return await predict(request)

    return app


def _check_name(state: dict[str, Any], name: str) -> None:
    if name != state["name"]:
        raise NotFound(f"this server serves model {state['name']!r}, not {name!r}")


def parse_body(raw: bytes) -> Any:
    """The model input in a predict body (see the module docs), as ``PyFuncModel.predict``
    takes it: a list of records, a DataFrame or a NumPy array.

    Raises:
        InvalidInput: The body is not JSON, has none or several of the forms, or a form
            is malformed.
    """
    import numpy as np
    import pandas as pd

    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    forms = [k for k in FORMS if isinstance(body, dict) and k in body]
    if len(forms) != 1:
        raise InvalidInput(
            "the body must be a JSON object with exactly one of 'instances' (a list of "
            "records), 'inputs' (columns) or 'dataframe_split' ({columns, data})"
        )
    form = forms[0]
    value = body[form]
    try:
        if form == "instances":
            if not isinstance(value, list) or not value:
                raise InvalidInput("'instances' must be a non-empty list of records")
            if all(isinstance(r, dict) for r in value):
                return value
            if any(isinstance(r, dict) for r in value):
                raise InvalidInput("'instances' mixes records with other values")
            return np.asarray(value)
        if form == "inputs":
            if isinstance(value, dict):
                if not value:
                    raise InvalidInput("'inputs' has no columns")
                if all(np.ndim(v) == 0 for v in value.values()):
                    return pd.DataFrame([value])
                return pd.DataFrame(value)
            if isinstance(value, list) and value:
                return np.asarray(value)
            raise InvalidInput("'inputs' must be an object of columns or a non-empty list")
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list):
            raise InvalidInput("'dataframe_split' must be an object with 'columns' and 'data'")
        data = value.get("data")
        if not isinstance(data, list) or not data:
            raise InvalidInput("'dataframe_split.data' must be a non-empty list of rows")
        return pd.DataFrame(data, columns=value["columns"])
    except (ValueError, TypeError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"'{form}' is malformed: {exc}") from None


def _predict(model: Any, data: Any) -> Any:
    import pandas as pd

    try:
        out = model.predict(data)
    except InvalidInput:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        # Without a signature the model itself is the first to see bad input.
        raise InvalidInput(f"the model could not predict on this input: {exc}"[:1000]) from None
    if isinstance(out, pd.DataFrame):
        return out.to_dict(orient="records")
    return out


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


def _json(content: Any) -> Response:
    # orjson writes NaN and infinities as null, NumPy arrays natively.
    body = orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    folder: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    *,
    allow_remote: bool = False,
    name: str | None = None,
    version: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    log_level: str = "info",
) -> None:
    """Run the model server with uvicorn until it is stopped.

    The folder is checked (and a bundle's digests verified) before uvicorn
    starts, so a bad folder fails here with a clear error.

    Args:
        folder: A version folder, or a bundle from :func:`package_version`.
        host: Address to listen on; loopback only unless ``allow_remote``.
        port: Port to listen on.
        workers: Worker processes; each loads the model.
        allow_remote: Listen on a non-loopback address although the server
            has no authentication (inside a container behind a gateway).
        name: The name in the routes; default the bundle's, else ``"model"``.
        version: The version reported; default the bundle's, else ``""``.
        max_body_bytes: Larger request bodies are answered with 413.
        log_level: uvicorn's log level.

    Raises:
        InvalidInput: a non-loopback host without ``allow_remote``, or not a model folder.
        TamperedArtifact: a bundle's file does not match its manifest.
    """
    if not is_loopback(host) and not allow_remote:
        raise InvalidInput(LOOPBACK_ONLY)
    if workers < 1:
        raise InvalidInput(f"workers must be at least 1, not {workers}")
    folder = Path(folder).resolve()
    check_folder(folder)
    import uvicorn

    spec = {"folder": str(folder), "name": name, "version": version, "max": max_body_bytes}
    os.environ[SPEC_ENV] = json.dumps(spec)
    uvicorn.run(
        "mlplane.serving.model_app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory``: each worker builds its app from what
    :func:`serve` put in ``MLPLANE_MODEL_SERVER_SPEC``."""
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise InvalidInput(f"{SPEC_ENV} is not set; start the model server with serve()")
    spec = json.loads(raw)
    return create_model_app(
        Path(spec["folder"]),
        name=spec.get("name"),
        version=spec.get("version"),
        max_body_bytes=int(spec.get("max") or MAX_BODY_BYTES),
    )
