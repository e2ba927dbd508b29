"""``/api/v1/datasets`` routes. Each route is one service call; semantics live in
:class:`mlplane.datasets.service.DataService`.

An add uploads the files as one tar stream, spooled to a private temporary
folder and unpacked with the tar "data" filter (no absolute paths, no links
out, no devices); the service then runs the same checks, masking and storing
as an embedded add. Downloads stream each file decrypted, chunk by chunk.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from mlplane.errors import InvalidInput
from mlplane.gc import MAX_GRACE_S, collect_garbage
from mlplane.projects import DEFAULT_PROJECT
from mlplane.security import Principal
from mlplane.server.bodies import unpack_tar
from mlplane.server.deps import principal, services
from mlplane.server.permissions import requires
from mlplane.server.routers.tracking import ok
from mlplane.services import Services

router = APIRouter(prefix="/api/v1", tags=["datasets"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]


class TagBody(BaseModel):
    tag: str


class SampleBody(BaseModel):
    fraction: float = Field(gt=0, le=1)
    seed: int = 0
    into: str | None = None


class GcBody(BaseModel):
    grace_s: float | None = Field(default=None, ge=0, le=MAX_GRACE_S)
    dry_run: bool = False


def _header_json(value: str | None, what: str) -> object:
    if not value:
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidInput(f"the {what} header is not base64url of JSON") from None


@router.get("/datasets", openapi_extra=requires("read"))
def list_datasets(svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok({"datasets": svc.data.list_datasets(who, project=project)})


@router.get("/datasets/{name}/versions", openapi_extra=requires("read"))
def dataset_versions(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok({"versions": svc.data.versions(who, name, project=project)})


@router.post("/datasets/{name}/versions", status_code=201, openapi_extra=requires("write"))
async def add_dataset(
    name: str,
    request: Request,
    svc: Svc,
    who: Who,
    project: str = DEFAULT_PROJECT,
    mlplane_contract: Annotated[str | None, Header()] = None,
    mlplane_pii: Annotated[str | None, Header()] = None,
) -> Response:
    """Body: a tar stream of the files (``application/x-tar``)."""
    contract = _header_json(mlplane_contract, "Mlplane-Contract")
    pii = _header_json(mlplane_pii, "Mlplane-Pii")
    with tempfile.TemporaryDirectory(prefix="mlplane-upload-") as tmp:
        root = await unpack_tar(request, Path(tmp), "files")
        result = await run_in_threadpool(
            lambda: svc.data.add(
                who,
                name,
                root,
                project=project,
                contract=orjson.dumps(contract).decode() if contract is not None else None,
                pii=pii,  # type: ignore[arg-type]
            )
        )
    return ok(result, status=201 if result.created else 200)


@router.get("/datasets/{ref}", openapi_extra=requires("read"))
def get_dataset(ref: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.data.get(who, ref, project=project))


@router.post("/datasets/{ref}/tags", openapi_extra=requires("write"))
def tag_dataset(
    ref: str, body: TagBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.data.tag(who, ref, body.tag, project=project))


@router.get("/datasets/{ref}/lineage", openapi_extra=requires("read"))
def dataset_lineage(ref: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.dataset_lineage(who, ref, project=project))


@router.post("/datasets/{ref}/samples", status_code=201, openapi_extra=requires("write"))
def sample_dataset(
    ref: str, body: SampleBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    result = svc.data.sample(
        who, ref, fraction=body.fraction, seed=body.seed, into=body.into, project=project
    )
    return ok(result, status=201 if result.created else 200)


@router.get("/datasets/{ref}/files/{path:path}", openapi_extra=requires("read"))
async def download_file(
    ref: str, path: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> StreamingResponse:
    size, chunks = await run_in_threadpool(svc.data.open_file, who, ref, path, project=project)
    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks)
    return StreamingResponse(
        body, media_type="application/octet-stream", headers={"Content-Length": str(size)}
    )


@router.post("/gc", openapi_extra=requires("platform"))
def gc(body: GcBody, svc: Svc, who: Who) -> Response:
    return ok(collect_garbage(svc, who, grace_s=body.grace_s, dry_run=body.dry_run))
