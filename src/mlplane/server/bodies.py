"""Request bodies the routes read themselves: bounded in memory, or spooled and unpacked."""

from __future__ import annotations

import tarfile
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from mlplane.errors import InvalidInput, PayloadTooLarge


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def unpack_tar(request: Request, work: Path, folder: str) -> Path:
    """Spool a tar stream body to disk under ``work`` (never held in memory) and unpack
    it into ``work/folder`` with the tar "data" filter: no absolute paths, no links out,
    no devices. Returns the unpacked folder."""
    spool = work / "upload.tar"
    with open(spool, "wb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)
    root = work / folder
    root.mkdir()
    await run_in_threadpool(_unpack, spool, root)
    spool.unlink()
    return root


def _unpack(spool: Path, root: Path) -> None:
    try:
        with tarfile.open(spool, "r|") as tar:
            tar.extractall(root, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"the upload is not a readable tar stream: {exc}") from None
