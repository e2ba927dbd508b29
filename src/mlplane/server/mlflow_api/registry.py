"""MLflow's model registry API over mlplane's registry.

Registered models and model versions here *are* the registry's models and
versions (:class:`mlplane.registry.service.RegistryService`): a model
registered through MLflow shows in ``mlplane models ls`` and ``/api/v1``, and
the reverse. Aliases go through the same approval rules: moving a protected
alias (``champion``) needs the approver role and a version that passes the
promotion policy, and a refusal comes back as INVALID_STATE (or
PERMISSION_DENIED) with the registry's reason. MLflow's deprecated stages are
kept per version; ``Production`` is guarded like a protected alias.

**Sources and downloads.** MLflow's registry stores a pointer (``source``); ours
stores the files. So creating a version copies the model folder the source
names (a logged model, a run's artifacts, a proxied artifact path, another
version: :mod:`._registry_source`) into the registry, where it is scanned,
hashed, signed and stored like any version, with the MLflow folder kept byte
for byte under the version's ``model/``. A plain ``mlflow.sklearn.log_model``
model registers as ``safe``: skops files are read by type allowlist, and a
(cloud)pickled scikit-learn model names only ``sklearn``/``numpy`` globals,
which the scanner allows; anything it cannot judge needs a project admin, who
can accept it with the version tag ``mlplane.allow_unknown=true`` (audited).

``get-download-uri`` does not point back at the source: run artifacts can be
deleted or overwritten, and their bytes were never checked against the
version. It verifies the version as a load does (every file hashed again, the
manifest signature checked, a ``model.load`` audit event) and returns an
``http(s)`` URI under this server,
``…/model-versions/files/<name>/<version>/mlflow-artifacts/artifacts``, which
the stock client reads with its HTTP artifact repository: listings at
``<uri minus the /mlflow-artifacts/artifacts tail>/mlflow-artifacts/artifacts
?path=…`` and files at ``<uri>/<path>``, both served here from the registry's
copy, each file's SHA-256 checked again before it is sent. So
``mlflow.pyfunc.load_model("models:/name@alias")`` loads exactly the bytes that
were scanned, and never needs the run's artifacts again. The URI's host is the
one the client called (run behind a proxy with ``--proxy-headers``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplane.errors import Conflict, NotFound
from mlplane.registry._mlflow import MODEL_DIR
from mlplane.registry.entities import ModelVersion
from mlplane.security import Principal
from mlplane.server.deps import principal, services
from mlplane.server.mlflow_api import _registry_convert as conv
from mlplane.server.mlflow_api import _registry_search as search
from mlplane.server.mlflow_api import _registry_source as sources
from mlplane.server.mlflow_api._tracking_convert import integer, query, read_json, string
from mlplane.server.mlflow_api._wire import MlflowError, MlflowRoute, ok
from mlplane.server.permissions import requires
from mlplane.services import Services

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])
Body = dict[str, Any]
Handler = Callable[[Services, Principal, Body], Any]

ALLOW_UNKNOWN_TAG = "mlplane.allow_unknown"
"""A version tag (not stored) by which a project admin accepts an ``unknown`` scan verdict."""
FILES = "/model-versions/files/{name}/{version}/mlflow-artifacts/artifacts"


def _endpoint(
    method: str, path: str, access: str, repeated: tuple[str, ...] = ()
) -> Callable[[Handler], Handler]:
    """Register a handler: it gets the request's fields (query for GET, JSON otherwise) and
    runs in the thread pool; what it returns is the response body."""

    def register(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            svc = services(request)
            if method == "GET":
                body = query(request, repeated)
            else:
                body = await read_json(request, svc.settings.max_request_bytes)
            who = principal(request)
            return ok(await run_in_threadpool(handler, svc, who, body))

        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            name=f"mlflow_{handler.__name__}",
            openapi_extra=requires(access),
        )
        return handler

    return register


def _name(body: Body, field: str = "name") -> str:
    return string(body, field, required=True) or ""


def _versions(svc: Services, who: Principal, name: str) -> list[ModelVersion]:
    return svc.registry.versions(who, name)


def _model_body(svc: Services, who: Principal, name: str) -> Body:
    return conv.model_out(svc.registry.get_model(who, name), _versions(svc, who, name))


def _ref(body: Body) -> str:
    return f"{_name(body)}@{conv.version_number(body)}"


def _refused(exc: Conflict) -> MlflowError:
    """A refused promotion keeps the registry's reason; MLflow calls it INVALID_STATE."""
    return MlflowError(exc.message, "INVALID_STATE")


# -- registered models -----------------------------------------------------------------------


@_endpoint("POST", "/registered-models/create", "write")
def create_registered_model(svc: Services, who: Principal, body: Body) -> Body:
    name = _name(body)
    model = svc.registry.create_model(
        who, name, description=string(body, "description") or "", tags=conv.tags_in(body)
    )
    return {"registered_model": conv.model_out(model, [])}


@_endpoint("GET", "/registered-models/get", "read")
def get_registered_model(svc: Services, who: Principal, body: Body) -> Body:
    return {"registered_model": _model_body(svc, who, _name(body))}


@_endpoint("PATCH", "/registered-models/update", "write")
def update_registered_model(svc: Services, who: Principal, body: Body) -> Body:
    name = _name(body)
    svc.registry.update_model(who, name, description=string(body, "description") or "")
    return {"registered_model": _model_body(svc, who, name)}


@_endpoint("POST", "/registered-models/rename", "write")
def rename_registered_model(svc: Services, who: Principal, body: Body) -> Body:
    new_name = _name(body, "new_name")
    svc.registry.rename_model(who, _name(body), new_name)
    return {"registered_model": _model_body(svc, who, new_name)}


@_endpoint("DELETE", "/registered-models/delete", "write")
def delete_registered_model(svc: Services, who: Principal, body: Body) -> None:
    svc.registry.delete_model(who, _name(body))


@_endpoint("GET", "/registered-models/search", "read", repeated=("order_by",))
def search_registered_models(svc: Services, who: Principal, body: Body) -> Body:
    clauses = search.parse_filter(string(body, "filter"), search.MODELS)
    order = search.parse_order(conv.string_list(body, "order_by"), search.MODELS)
    size = search.max_results(integer(body, "max_results"), 100, 1000)
    found = [
        m for m in svc.registry.list_models(who) if search.matches(clauses, m, conv.model_attr)
    ]
    chunk, token = search.page(
        search.sort(found, order, conv.model_attr), string(body, "page_token"), size
    )
    out: Body = {
        "registered_models": [conv.model_out(m, _versions(svc, who, m.name)) for m in chunk]
    }
    if token:
        out["next_page_token"] = token
    return out


@_endpoint("POST", "/registered-models/set-tag", "write")
def set_registered_model_tag(svc: Services, who: Principal, body: Body) -> None:
    value = body.get("value")
    svc.registry.set_model_tag(
        who, _name(body), _name(body, "key"), "" if value is None else str(value)
    )


@_endpoint("DELETE", "/registered-models/delete-tag", "write")
def delete_registered_model_tag(svc: Services, who: Principal, body: Body) -> None:
    svc.registry.delete_model_tag(who, _name(body), _name(body, "key"))


@_endpoint("POST", "/registered-models/get-latest-versions", "read")
def get_latest_versions(svc: Services, who: Principal, body: Body) -> Body:
    versions = _versions(svc, who, _name(body))
    latest = conv.latest_per_stage(versions, conv.string_list(body, "stages") or None)
    return {"model_versions": [conv.version_out(v) for v in latest]}


@_endpoint("POST", "/registered-models/alias", "write")
def set_registered_model_alias(svc: Services, who: Principal, body: Body) -> None:
    try:
        svc.registry.set_alias(who, _name(body), _name(body, "alias"), conv.version_number(body))
    except Conflict as exc:
        raise _refused(exc) from None


@_endpoint("DELETE", "/registered-models/alias", "write")
def delete_registered_model_alias(svc: Services, who: Principal, body: Body) -> None:
    name, alias = _name(body), _name(body, "alias")
    try:  # the service checks the caller's role before it looks for the alias
        svc.registry.delete_alias(who, name, alias)
    except NotFound:
        # MLflow deletes a missing alias without complaint; a missing model is still an error.
        svc.registry.get_model(who, name)


@_endpoint("GET", "/registered-models/alias", "read")
def get_model_version_by_alias(svc: Services, who: Principal, body: Body) -> Body:
    name, alias = _name(body), _name(body, "alias")
    number = svc.registry.get_model(who, name).aliases.get(alias)
    if number is None:
        raise NotFound(f"registered model {name!r} has no alias {alias!r}")
    return {"model_version": conv.version_out(svc.registry.get_version(who, f"{name}@{number}"))}


# -- model versions --------------------------------------------------------------------------


@_endpoint("POST", "/model-versions/create", "write")
def create_model_version(svc: Services, who: Principal, body: Body) -> Body:
    name = _name(body)
    source = _name(body, "source")
    model_id = string(body, "model_id") or None
    tags = conv.tags_in(body)
    allow_unknown = tags.pop(ALLOW_UNKNOWN_TAG, "").lower() == "true"
    svc.registry.get_model(who, name)  # MLflow adds versions only to an existing model
    origin = sources.locate(source, model_id)
    with tempfile.TemporaryDirectory(prefix="mlplane-mlflow-source-") as tmp:
        folder = Path(tmp) / "model"
        source_run = sources.copy_files(svc, who, origin, folder)
        version = svc.registry.register_mlflow_folder(
            who,
            name,
            folder,
            run_id=string(body, "run_id") or source_run,
            description=string(body, "description") or "",
            tags=tags,
            allow_unknown=allow_unknown,
            source=source,
            logged_model_id=model_id or (origin.owner if origin.kind == "model" else None),
        )
    return {"model_version": conv.version_out(version)}


@_endpoint("GET", "/model-versions/get", "read")
def get_model_version(svc: Services, who: Principal, body: Body) -> Body:
    return {"model_version": conv.version_out(svc.registry.get_version(who, _ref(body)))}


@_endpoint("PATCH", "/model-versions/update", "write")
def update_model_version(svc: Services, who: Principal, body: Body) -> Body:
    version = svc.registry.update_version(
        who, _ref(body), description=string(body, "description") or ""
    )
    return {"model_version": conv.version_out(version)}


@_endpoint("DELETE", "/model-versions/delete", "write")
def delete_model_version(svc: Services, who: Principal, body: Body) -> None:
    svc.registry.delete_version(who, _ref(body))


@_endpoint("POST", "/model-versions/transition-stage", "write")
def transition_model_version_stage(svc: Services, who: Principal, body: Body) -> Body:
    try:
        version = svc.registry.set_stage(
            who,
            _ref(body),
            _name(body, "stage"),
            archive_existing=conv.flag(body, "archive_existing_versions"),
        )
    except Conflict as exc:
        raise _refused(exc) from None
    return {"model_version": conv.version_out(version)}


@_endpoint("GET", "/model-versions/search", "read", repeated=("order_by",))
def search_model_versions(svc: Services, who: Principal, body: Body) -> Body:
    clauses = search.parse_filter(string(body, "filter"), search.VERSIONS)
    order = search.parse_order(
        conv.string_list(body, "order_by") or search.VERSIONS_DEFAULT_ORDER, search.VERSIONS
    )
    size = search.max_results(integer(body, "max_results"), 10_000, 200_000)
    only = conv.exact_name(clauses)
    if only is not None:
        try:
            candidates = _versions(svc, who, only)
        except NotFound:
            candidates = []
    else:
        candidates = [v for m in svc.registry.list_models(who) for v in _versions(svc, who, m.name)]
    found = [v for v in candidates if search.matches(clauses, v, conv.version_attr)]
    ordered = search.sort(found, order, conv.version_attr)
    chunk, token = search.page(ordered, string(body, "page_token"), size)
    out: Body = {"model_versions": [conv.version_out(v) for v in chunk]}
    if token:
        out["next_page_token"] = token
    return out


@router.get(
    "/model-versions/get-download-uri",
    name="mlflow_get_model_version_download_uri",
    openapi_extra=requires("read"),
)
async def get_model_version_download_uri(request: Request) -> Response:
    svc, who, ref = services(request), principal(request), _ref(query(request))
    # Verified (every file hashed, the signature checked) and audited like any load.
    version, _, _ = await run_in_threadpool(svc.registry.fetch, who, ref)
    base = str(request.url).split("/model-versions/get-download-uri", 1)[0]
    path = FILES.format(name=version.name, version=version.version)
    return ok({"artifact_uri": base + path})


@_endpoint("POST", "/model-versions/set-tag", "write")
def set_model_version_tag(svc: Services, who: Principal, body: Body) -> None:
    value = body.get("value")
    svc.registry.set_tag(who, _ref(body), _name(body, "key"), "" if value is None else str(value))


@_endpoint("DELETE", "/model-versions/delete-tag", "write")
def delete_model_version_tag(svc: Services, who: Principal, body: Body) -> None:
    svc.registry.delete_tag(who, _ref(body), _name(body, "key"))


# -- a version's files, for the URI get-download-uri hands out -------------------------------


def _root(version: ModelVersion) -> str:
    """What a client downloads: the MLflow folder as logged, or the whole version folder for
    a version registered through mlplane's own API."""
    return f"{MODEL_DIR}/" if version.format == "mlflow" else ""


@router.get(FILES, name="mlflow_list_version_files", openapi_extra=requires("read"))
async def list_version_files(name: str, version: str, request: Request) -> Response:
    svc, who = services(request), principal(request)
    found = await run_in_threadpool(svc.registry.get_version, who, _file_ref(name, version))
    return ok(_listing(found, string(query(request), "path") or ""))


def _listing(version: ModelVersion, path: str) -> Body:
    """MLflow's listing of a folder: entries directly under it, by base name; nothing for a
    file or a missing path (as MLflow's artifact server answers)."""
    root = _root(version)
    folder = path.strip("/")
    prefix = root + (folder + "/" if folder else "")
    entries: dict[str, Body] = {}
    for f in version.files:
        if not f.path.startswith(prefix):
            continue
        head, sep, _ = f.path[len(prefix) :].partition("/")
        if sep:
            entries.setdefault(head, {"path": head, "is_dir": True})
        else:
            entries[head] = {"path": head, "is_dir": False, "file_size": f.size}
    return {"files": sorted(entries.values(), key=lambda e: e["path"])} if entries else {}


@router.get(
    FILES + "/{path:path}", name="mlflow_download_version_file", openapi_extra=requires("read")
)
async def download_version_file(name: str, version: str, path: str, request: Request) -> Response:
    svc, who, ref = services(request), principal(request), _file_ref(name, version)

    def open_file() -> Path:
        found = svc.registry.get_version(who, ref)
        _, local = svc.registry.open_file(who, ref, _root(found) + path)
        return local

    local = await run_in_threadpool(open_file)
    return FileResponse(local, media_type="application/octet-stream")


def _file_ref(name: str, version: str) -> str:
    if not version.isdigit():
        raise MlflowError(f"Invalid value {version!r} for parameter 'version'")
    return f"{name}@{version}"
