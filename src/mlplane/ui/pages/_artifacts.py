"""A run's files: the tree on its page, a preview page per file, and the raw bytes.

A preview reads at most :data:`TEXT_LIMIT` bytes of a text file and :data:`TABLE_ROWS` rows
of a table, whatever the file's size. The raw route serves every file under a sandboxing
policy; an SVG or HTML file (which could carry script) only ever as a download, so no
artifact can run code in the UI's origin.
"""

from __future__ import annotations

import io
import json
import mimetypes
import posixpath
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from mlplane.errors import InvalidInput, NotFound
from mlplane.server.permissions import requires
from mlplane.tracking.entities import ArtifactInfo
from mlplane.ui import render

router = APIRouter(include_in_schema=False)

TEXT_LIMIT = 256 * 1024
TABLE_ROWS = 100
MAX_LISTED = 5000
CHUNK = 1024 * 1024
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".ico", ".svg"}
TABLES = {".csv", ".tsv", ".parquet", ".jsonl", ".ndjson"}
ACTIVE = {".svg", ".svgz", ".html", ".htm", ".xhtml", ".xml", ".js", ".mjs"}
"""Files a browser would run script from if it opened them: served only as downloads."""
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
TEXT_TYPES = {"application/json", "application/x-ndjson", "application/x-yaml", "application/toml"}
RAW_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def listing(request: Request, run_id: str) -> tuple[list[ArtifactInfo], bool]:
    """Every file of the run, up to :data:`MAX_LISTED`; and whether that was all."""
    svc, me = render.services(request), render.principal(request)
    files = svc.tracking.list_artifacts(me, run_id, recursive=True)
    return files[:MAX_LISTED], len(files) <= MAX_LISTED


def tree(files: Sequence[ArtifactInfo]) -> list[dict[str, Any]]:
    """The files as nested folders: ``{"name", "path", "size", "children"}``, folders first."""
    root: dict[str, Any] = {"children": {}}
    for f in files:
        node = root
        parts = f.path.split("/")
        for i, part in enumerate(parts):
            node = node["children"].setdefault(
                part, {"name": part, "path": "/".join(parts[: i + 1]), "children": {}}
            )
        node["size"] = f.size
        node["file"] = True

    def flat(node: dict[str, Any]) -> list[dict[str, Any]]:
        kids = sorted(node["children"].values(), key=lambda n: (n.get("file", False), n["name"]))
        return [{**k, "children": flat(k)} for k in kids]

    return flat(root)


def _ext(path: str) -> str:
    return posixpath.splitext(path)[1].lower()


def _kind(path: str) -> str:
    ext = _ext(path)
    if ext in IMAGES:
        return "image"
    if ext in TABLES:
        return "table"
    if ext == ".json":
        return "json"
    return "text"  # if its first bytes decode as text; else "binary"


def _as_text(head: bytes) -> str | None:
    """``head`` as UTF-8, allowing a character cut at the end; None for binary data."""
    if b"\x00" in head[:8192]:
        return None
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _table(fh: BinaryIO, path: str) -> dict[str, Any]:
    """The first rows of a table file, as strings for the page."""
    import pandas as pd

    ext, total = _ext(path), None
    if ext == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(fh)
        total = pf.metadata.num_rows
        batch = next(pf.iter_batches(batch_size=TABLE_ROWS), None)
        frame = batch.to_pandas() if batch is not None else pd.DataFrame()
    elif ext in (".jsonl", ".ndjson"):
        lines = io.BytesIO(b"".join(_lines(fh, TABLE_ROWS)))
        frame = pd.read_json(lines, lines=True, dtype=False)
    else:
        frame = pd.read_csv(fh, sep="\t" if ext == ".tsv" else ",", nrows=TABLE_ROWS, dtype=str)
    frame = frame.head(TABLE_ROWS)
    rows = [["" if pd.isna(v) else str(v) for v in row] for row in frame.itertuples(index=False)]
    return {"columns": [str(c) for c in frame.columns], "rows": rows, "total": total}


def _lines(fh: BinaryIO, n: int) -> Iterator[bytes]:
    for i, line in enumerate(fh):
        if i >= n:
            return
        yield line


def preview(fh: BinaryIO, info: ArtifactInfo) -> dict[str, Any]:
    """What the preview page shows of a file: its kind and the part of it to show."""
    kind = _kind(info.path)
    if kind == "image":
        return {"kind": "image"}
    if kind == "table":
        try:
            return {"kind": "table", "table": _table(fh, info.path)}
        except Exception as exc:  # a malformed file is worth a note, not a failed page
            fh.seek(0)
            out = preview_text(fh)
            out["problem"] = f"not readable as a table ({type(exc).__name__}: {exc})"
            return out
    out = preview_text(fh)
    if kind == "json" and out["kind"] == "text" and not out["cut"]:
        try:
            out["text"] = json.dumps(json.loads(out["text"]), indent=2, ensure_ascii=False)
            out["kind"] = "json"
        except ValueError as exc:
            out["problem"] = f"not valid JSON ({exc})"
    return out


def preview_text(fh: BinaryIO) -> dict[str, Any]:
    head = fh.read(TEXT_LIMIT + 1)
    text = _as_text(head[:TEXT_LIMIT])
    if text is None:
        return {"kind": "binary"}
    return {"kind": "text", "text": text, "cut": len(head) > TEXT_LIMIT}


def _open(request: Request, run_id: str, path: str) -> tuple[ArtifactInfo, BinaryIO]:
    svc, me = render.services(request), render.principal(request)
    if any(part == ".." for part in path.split("/")):
        raise InvalidInput(f"artifact path {path!r} may not contain '..'")
    return svc.tracking.open_artifact(me, run_id, path)


@router.get("/runs/{run_id}/artifacts/{path:path}", openapi_extra=requires("read"))
async def artifact_page(request: Request, run_id: str, path: str) -> HTMLResponse:
    return await run_in_threadpool(_artifact_page, request, run_id, path)


def _artifact_page(request: Request, run_id: str, path: str) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    run = svc.tracking.get_run(me, run_id)
    try:
        info, fh = _open(request, run_id, path)
    except NotFound:
        inside = svc.tracking.list_artifacts(me, run_id, path)  # a folder's link shows it
        if not inside:
            raise
        return render.page(
            request,
            "experiments/artifact.html",
            section="experiments",
            run=run,
            path=path.strip("/"),
            info=None,
            shown={"kind": "folder"},
            tree=tree(svc.tracking.list_artifacts(me, run_id, path, recursive=True)),
        )
    with fh:
        shown = preview(fh, info)
    return render.page(
        request,
        "experiments/artifact.html",
        section="experiments",
        run=run,
        path=info.path,
        info=info,
        shown=shown,
        tree=[],
        raw=f"/ui/runs/{run_id}/raw/{quote(info.path)}",
        limit=TEXT_LIMIT,
        rows=TABLE_ROWS,
    )


def _media(name: str) -> tuple[str, bool]:
    """The type a file is served as, and whether a browser may show it in place. Text goes
    as ``text/plain`` whatever it holds; an SVG keeps its type (an ``<img>`` shows it, and
    no image runs script) but opened directly it is a download, like HTML."""
    ext, guessed = _ext(name), mimetypes.guess_type(name)[0] or ""
    if ext in ACTIVE:
        return (guessed if ext in IMAGES else "application/octet-stream"), False
    if guessed in INLINE_TYPES:
        return guessed, True
    if guessed.startswith("text/") or guessed in TEXT_TYPES or ext in TABLES - {".parquet"}:
        return "text/plain; charset=utf-8", True
    return "application/octet-stream", False


def _disposition(kind: str, name: str) -> str:
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name) or "artifact"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@router.get("/runs/{run_id}/raw/{path:path}", openapi_extra=requires("read"))
async def raw(request: Request, run_id: str, path: str, download: str = "") -> StreamingResponse:
    info, fh = await run_in_threadpool(_open, request, run_id, path)

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    name = posixpath.basename(info.path)
    media, inline = _media(name)
    shown = "inline" if inline and not download else "attachment"
    headers = {
        "Content-Disposition": _disposition(shown, name),
        "Content-Security-Policy": RAW_POLICY,
        "Cache-Control": "private, max-age=300",
    }
    if info.size is not None:
        headers["Content-Length"] = str(info.size)
    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks())
    return StreamingResponse(body, media_type=media, headers=headers)
