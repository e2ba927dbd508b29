"""MLflow's proxied artifact store (``/api/2.0/mlflow-artifacts``) over the tracking service.

The stock client resolves ``mlflow-artifacts:/<path>`` against the tracking URI
and calls these routes (``mlflow/store/artifact/http_artifact_repo.py``). Paths
map onto runs' and logged models' files (:mod:`._artifact_paths`); bodies are
spooled to disk and responses streamed, so no file is ever held in memory.
Multipart uploads hand out part URLs on this server (the client PUTs each part
there with plain ``requests``), so large files go up in parallel parts.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO, Annotated, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from mlplane.errors import NotFound
from mlplane.security import Principal
from mlplane.server.deps import principal, services
from mlplane.server.mlflow_api._artifact_paths import (
    Target,
    require_file,
    resolve,
    safe_path,
)
from mlplane.server.mlflow_api._wire import MlflowError, MlflowRoute, ok
from mlplane.server.permissions import requires
from mlplane.services import Services
from mlplane.tracking.entities import ArtifactInfo

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]
_CHUNK = 1024 * 1024


class CreateUpload(BaseModel):
    path: str
    num_parts: int = Field(default=1, ge=1, le=10_000)


class UploadPart(BaseModel):
    part_number: int
    etag: str | None = None
    url: str | None = None


class CompleteUpload(BaseModel):
    path: str
    upload_id: str
    parts: list[UploadPart]


class AbortUpload(BaseModel):
    path: str
    upload_id: str


def _owned(svc: Services, who: Principal, target: Target) -> Target:
    """The target, once its run or model is known to be in the path's experiment."""
    if target.owner == "run":
        eid = svc.tracking.get_run(who, target.owner_id).info.experiment_id
    else:
        model = svc.tracking.get_logged_model(who, target.owner_id, allow_deleted=True)
        eid = model.experiment_id
    if eid != target.experiment_id:
        raise NotFound(f"experiment {target.experiment_id} has no {target.owner} {target.owner_id}")
    return target


async def _spool(request: Request, tmp: IO[bytes]) -> None:
    async for chunk in request.stream():
        tmp.write(chunk)
    tmp.flush()


def _store(svc: Services, who: Principal, target: Target, source: str) -> ArtifactInfo:
    if target.owner == "run":
        return svc.tracking.log_artifact(who, target.owner_id, target.rel, source)
    return svc.tracking.log_model_artifact(who, target.owner_id, target.rel, source)


@router.put("/artifacts/{path:path}", openapi_extra=requires("write"))
async def upload_artifact(path: str, request: Request, svc: Svc, who: Who) -> Response:
    target = require_file(path)
    # Refused before the body is read: a wrong path never costs a spooled upload.
    await run_in_threadpool(_owned, svc, who, target)
    with tempfile.NamedTemporaryFile(prefix="mlplane-mlflow-up-") as tmp:
        await _spool(request, tmp)
        await run_in_threadpool(_store, svc, who, target, tmp.name)
    return ok()


def _list(svc: Services, who: Principal, path: str) -> list[dict[str, object]]:
    target = resolve(path)
    if target is None:
        return []
    if target.owner is None:
        return [{"path": name, "is_dir": True} for name in target.children]
    _owned(svc, who, target)
    if target.owner == "run":
        infos = svc.tracking.list_artifacts(who, target.owner_id, target.rel or None)
    else:
        infos = svc.tracking.list_model_artifacts(who, target.owner_id, target.rel or None)
    # MLflow lists names relative to the folder listed.
    return [
        {"path": posixpath.basename(i.path), "is_dir": True}
        if i.is_dir
        else {"path": posixpath.basename(i.path), "is_dir": False, "file_size": i.size}
        for i in sorted(infos, key=lambda i: i.path)
    ]


@router.get("/artifacts", openapi_extra=requires("read"))
async def list_artifacts(svc: Svc, who: Who, path: str | None = None) -> Response:
    clean = safe_path(path)
    return ok({"files": await run_in_threadpool(_list, svc, who, clean)})


def _open(svc: Services, who: Principal, target: Target) -> tuple[ArtifactInfo, BinaryIO]:
    _owned(svc, who, target)
    if target.owner == "run":
        return svc.tracking.open_artifact(who, target.owner_id, target.rel)
    return svc.tracking.open_model_artifact(who, target.owner_id, target.rel)


@router.get("/artifacts/{path:path}", openapi_extra=requires("read"))
async def download_artifact(path: str, svc: Svc, who: Who) -> StreamingResponse:
    target = require_file(path)
    info, fh = await run_in_threadpool(_open, svc, who, target)

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(_CHUNK):
                yield chunk

    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks())
    name = posixpath.basename(target.rel)
    headers = {"Content-Disposition": f'attachment; filename="{_header_safe(name)}"'}
    if info.size is not None:
        headers["Content-Length"] = str(info.size)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return StreamingResponse(body, media_type=media, headers=headers)


def _header_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._ -]", "_", name)


def _delete(svc: Services, who: Principal, path: str) -> None:
    target = resolve(path)
    if target is None or target.owner is None:
        raise MlflowError(
            f"artifact path {path!r} is not inside a run's or a logged model's artifacts"
        )
    _owned(svc, who, target)
    if target.owner == "run":
        svc.tracking.delete_artifacts(who, target.owner_id, target.rel or None)
    else:
        svc.tracking.delete_model_artifacts(who, target.owner_id, target.rel or None)


@router.delete("/artifacts/{path:path}", openapi_extra=requires("write"))
async def delete_artifact(path: str, svc: Svc, who: Who) -> Response:
    await run_in_threadpool(_delete, svc, who, safe_path(path))
    return ok()


# -- multipart uploads -----------------------------------------------------------------------


def _destination(folder: str, local_file: str) -> Target:
    # The client sends its own local path; the file keeps that name, as MLflow's server does.
    name = re.split(r"[\\/]", local_file)[-1]
    if not name:
        raise MlflowError(f"path {local_file!r} names no file")
    return require_file(posixpath.join(safe_path(folder), safe_path(name)))


def _create(svc: Services, who: Principal, target: Target, num_parts: int) -> str:
    _owned(svc, who, target)
    assert target.owner is not None
    return svc.tracking.create_upload(who, target.owner, target.owner_id, target.rel, num_parts)


@router.post("/mpu/create/{path:path}", openapi_extra=requires("write"))
async def create_multipart_upload(
    path: str, body: CreateUpload, request: Request, svc: Svc, who: Who
) -> Response:
    target = _destination(path, body.path)
    upload_id = await run_in_threadpool(_create, svc, who, target, body.num_parts)
    credentials = [
        {
            "url": str(request.url_for("mlflow_upload_part", upload_id=upload_id, part_number=n)),
            "part_number": n,
            "headers": {},
        }
        for n in range(1, body.num_parts + 1)
    ]
    return ok({"upload_id": upload_id, "credentials": credentials})


@router.put(
    "/mpu/parts/{upload_id}/{part_number}",
    name="mlflow_upload_part",
    openapi_extra=requires("capability"),
)
async def upload_part(upload_id: str, part_number: int, request: Request, svc: Svc) -> Response:
    # Checked before the body is read: this route takes no credentials (see server/auth.py).
    await run_in_threadpool(svc.tracking.check_upload_part, upload_id, part_number)
    with tempfile.NamedTemporaryFile(prefix="mlplane-mlflow-part-") as tmp:
        await _spool(request, tmp)
        digest = await run_in_threadpool(
            svc.tracking.put_upload_part, upload_id, part_number, tmp.name
        )
    response = ok()
    response.headers["ETag"] = f'"{digest}"'
    return response


@router.post("/mpu/complete/{path:path}", openapi_extra=requires("write"))
async def complete_multipart_upload(
    path: str, body: CompleteUpload, svc: Svc, who: Who
) -> Response:
    _destination(path, body.path)
    parts = [(p.part_number, p.etag or "") for p in body.parts]
    await run_in_threadpool(svc.tracking.complete_upload, who, body.upload_id, parts)
    return ok()


@router.post("/mpu/abort/{path:path}", openapi_extra=requires("write"))
async def abort_multipart_upload(path: str, body: AbortUpload, svc: Svc, who: Who) -> Response:
    _destination(path, body.path)
    await run_in_threadpool(svc.tracking.abort_upload, who, body.upload_id)
    return ok()
