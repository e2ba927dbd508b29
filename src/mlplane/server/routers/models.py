"""``/api/v1/models`` routes. Each route is one service call; semantics live in
:class:`mlplane.registry.service.RegistryService`.

A registration uploads the version folder (written by the SDK on the client) as
one tar stream; the server unpacks it with the tar "data" filter and scans every
file itself before storing anything: what the client says is never trusted.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from mlplane.errors import InvalidInput, NotFound
from mlplane.projects import DEFAULT_PROJECT
from mlplane.security import Principal
from mlplane.server.bodies import unpack_tar
from mlplane.server.deps import principal, services
from mlplane.server.permissions import requires
from mlplane.server.routers.tracking import ok
from mlplane.services import Services

router = APIRouter(prefix="/api/v1", tags=["models"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]
_OPTIONS = {"project", "metrics", "params", "run_id", "description", "tags", "allow_unknown"}


class AliasBody(BaseModel):
    version: int


class PolicyBody(BaseModel):
    policy: dict[str, Any] | None = None
    protected: list[str] | None = None


class TagBody(BaseModel):
    value: str


class KeyBody(BaseModel):
    required: bool = False


def _options(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        opts = orjson.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidInput("the Mlplane-Options header is not base64url of JSON") from None
    if not isinstance(opts, dict) or set(opts) - _OPTIONS:
        raise InvalidInput(f"registration options are a mapping of: {', '.join(sorted(_OPTIONS))}")
    return opts


@router.post("/models/{name}/versions", status_code=201, openapi_extra=requires("write"))
async def register(
    name: str,
    request: Request,
    svc: Svc,
    who: Who,
    mlplane_options: Annotated[str | None, Header()] = None,
) -> Response:
    """Body: a tar stream of a version folder (``application/x-tar``)."""
    opts = _options(mlplane_options)
    with tempfile.TemporaryDirectory(prefix="mlplane-model-upload-") as tmp:
        root = await unpack_tar(request, Path(tmp), "model")
        version = await run_in_threadpool(
            lambda: svc.registry.register_folder(who, name, root, **opts)
        )
    return ok(version, status=201)


@router.get("/models", openapi_extra=requires("read"))
def list_models(svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok({"models": svc.registry.list_models(who, project=project)})


@router.get("/models/{name}", openapi_extra=requires("read"))
def get_model(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.registry.get_model(who, name, project=project))


@router.get("/models/{name}/versions", openapi_extra=requires("read"))
def versions(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok({"versions": svc.registry.versions(who, name, project=project)})


@router.put("/models/{name}/aliases/{alias}", openapi_extra=requires("write"))
def set_alias(
    name: str, alias: str, body: AliasBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.registry.set_alias(who, name, alias, body.version, project=project))


@router.delete("/models/{name}/aliases/{alias}", status_code=204, openapi_extra=requires("write"))
def delete_alias(
    name: str, alias: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    svc.registry.delete_alias(who, name, alias, project=project)
    return Response(status_code=204)


@router.put("/models/{name}/policy", openapi_extra=requires("approve"))
def set_policy(
    name: str, body: PolicyBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(
        svc.registry.set_policy(who, name, body.policy, protected=body.protected, project=project)
    )


@router.get("/model-versions/{ref}", openapi_extra=requires("read"))
def get_version(ref: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.registry.get_version(who, ref, project=project))


@router.patch("/model-versions/{ref}/card", openapi_extra=requires("write"))
def update_card(
    ref: str, body: dict[str, str], svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.registry.update_card(who, ref, body, project=project))


@router.put("/model-versions/{ref}/tags/{key}", status_code=204, openapi_extra=requires("write"))
def set_tag(
    ref: str, key: str, body: TagBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    svc.registry.set_tag(who, ref, key, body.value, project=project)
    return Response(status_code=204)


@router.get("/model-versions/{ref}/lineage", openapi_extra=requires("read"))
def lineage(ref: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.registry.lineage(who, ref, project=project))


@router.get("/model-versions/{ref}/files/{path:path}", openapi_extra=requires("read"))
async def download_file(
    ref: str, path: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> StreamingResponse:
    """One verified file of a version (the server checks every digest before sending)."""
    version, folder, _ = await run_in_threadpool(svc.registry.fetch, who, ref, project=project)
    if path not in {f.path for f in version.files}:
        raise NotFound(f"{version.ref} has no file {path!r}")
    target = Path(folder) / path

    def chunks():  # type: ignore[no-untyped-def]
        with open(target, "rb") as fh:
            while block := fh.read(1024 * 1024):
                yield block

    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks())
    return StreamingResponse(
        body,
        media_type="application/octet-stream",
        headers={"Content-Length": str(target.stat().st_size)},
    )


@router.post("/signing-keys", status_code=201, openapi_extra=requires("admin"))
def create_key(body: KeyBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    key = svc.registry.create_signing_key(who, project=project, required=body.required)
    return ok({"key_id": key}, status=201)
