"""Batch inference input: which files, their identity, how they split into parts.

Parquet files are split by their row groups: small groups are merged into
parts of at least ``batch_rows`` rows, large ones cut into parts of
``batch_rows`` rows. Workers read Parquet parts themselves. CSV and JSON Lines
files are streamed by the parent (only one reader can find where rows start)
and sent to workers ``batch_rows`` rows at a time. Either way, a part's rows
depend only on the input and ``batch_rows``, so a resumed job finds the same
parts as the run that crashed.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlplane.errors import InvalidInput, NotFound
from mlplane.serving._batch_worker import DataTask, Key, PartRange, ReadTask, open_parquet

KINDS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
}
_COMPRESSED = (".gz", ".bz2", ".zst", ".xz", ".lz4")


def file_kind(path: str) -> str | None:
    """``parquet``, ``csv`` or ``json`` by the file's suffix (before a compression suffix)."""
    name = path.rsplit("/", 1)[-1].lower()
    for ext in _COMPRESSED:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return KINDS.get(os.path.splitext(name)[1])


@dataclass(frozen=True, slots=True)
class InputFile:
    url: str
    """A local path, or an fsspec URL (``s3://bucket/key``) that workers open."""
    kind: str
    label: str
    """How messages name it."""
    options: Mapping[str, Any] | None = None
    """fsspec storage options for ``url`` (credentials, endpoint); never in the manifest."""


@dataclass(frozen=True, slots=True)
class InputSource:
    """What to predict on: table files in order, and what identifies their content.

    Build one with :func:`open_input` (a path or URL) or :func:`input_from_files`
    (files whose identity the caller knows, e.g. a dataset version's digest).
    """

    files: tuple[InputFile, ...]
    identity: Mapping[str, Any]
    """Compared when a job resumes: a different value means different input."""
    label: str


def open_input(
    location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> InputSource:
    """A Parquet, CSV or JSON Lines file, or a folder of Parquet files, by local path or
    fsspec URL; its identity is every file's path, size and modification stamp.

    ``storage_options`` go to the URL's fsspec file system here and in every worker
    (without them, fsspec's own configuration and the environment apply, such as
    ``AWS_ACCESS_KEY_ID`` or ``FSSPEC_S3_ENDPOINT_URL``).

    Raises:
        NotFound: Nothing is at ``location``.
        InvalidInput: It is a file of another kind, or a folder without Parquet files.
    """
    import fsspec

    text = os.fspath(location)
    remote = "://" in text and not text.startswith("file://")
    options = dict(storage_options or {}) if remote else None
    fs, path = fsspec.core.url_to_fs(
        text if remote else os.path.abspath(text.removeprefix("file://")), **(options or {})
    )
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise NotFound(f"input {text} does not exist") from None
    if info.get("type") == "directory":
        found = sorted(p for p in fs.find(path) if _visible(p[len(path) :]))
        paths = [p for p in found if file_kind(p) == "parquet"]
        if not paths:
            raise InvalidInput(f"input folder {text} has no Parquet files (*.parquet)")
        infos = [fs.info(p) for p in paths]
    else:
        if file_kind(path) is None:
            raise InvalidInput(
                f"input {text}: not a Parquet (.parquet), CSV (.csv) or JSON Lines (.jsonl) file"
            )
        paths, infos = [path], [info]
    files = []
    stamps = []
    for p, i in zip(paths, infos, strict=True):
        url = fs.unstrip_protocol(p) if remote else p
        files.append(InputFile(url, str(file_kind(p)), url, options))
        stamp = i.get("mtime") or i.get("LastModified") or i.get("ETag") or i.get("created")
        stamps.append({"path": url, "size": int(i.get("size") or 0), "stamp": str(stamp)})
    return InputSource(tuple(files), {"files": stamps}, text)


def _visible(rel: str) -> bool:
    # Spark and Hadoop leave _SUCCESS, _metadata and .crc files beside the data.
    return not any(part.startswith((".", "_")) for part in rel.split("/") if part)


def input_from_files(
    files: Sequence[str | os.PathLike[str]], *, identity: Mapping[str, Any], label: str
) -> InputSource:
    """Table files (Parquet, CSV or JSON Lines) whose content ``identity`` names, such as
    the files of a dataset version and its digest; other files are skipped.

    Raises:
        InvalidInput: None of the files is a table file.
    """
    found = [os.fspath(f) for f in files]
    tables = [
        InputFile(f, kind, f"{label}:{Path(f).name}") for f in found if (kind := file_kind(f))
    ]
    if not tables:
        raise InvalidInput(f"{label} has no Parquet, CSV or JSON Lines files")
    return InputSource(tuple(tables), dict(identity), label)


# -- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    key: Key
    row_groups: tuple[int, ...]
    start: int
    stop: int


@dataclass(slots=True)
class FilePlan:
    """One input file: its schema and, for Parquet, its parts (others: found by streaming)."""

    index: int
    file: InputFile
    schema: pa.Schema
    parts: list[Part] | None = None
    rows: int | None = None
    head: pa.Table | None = None
    """A streamed file's first rows (its schema, and whether it has any)."""


@dataclass(slots=True)
class Plan:
    files: list[FilePlan]
    counts: dict[int, int] = field(default_factory=dict)
    """Parts per file, as known: Parquet's at once, a streamed file's once it is read."""

    @property
    def rows(self) -> int | None:
        """Input rows, when every file says how many it has (Parquet)."""
        if any(f.rows is None for f in self.files):
            return None
        return sum(f.rows or 0 for f in self.files)


def plan(source: InputSource, batch_rows: int) -> Plan:
    """Read each file's schema and split the Parquet ones into parts."""
    files = []
    counts = {}
    for index, f in enumerate(source.files):
        if f.kind == "parquet":
            fp = _plan_parquet(index, f, batch_rows)
            counts[index] = len(fp.parts or [])
        else:
            reader = open_stream(f)
            try:
                first = reader.read_next_batch()
                head = pa.Table.from_batches([first])
            except StopIteration:
                head = reader.schema.empty_table()
            except (OSError, pa.ArrowException) as exc:
                raise InvalidInput(f"cannot read {f.label}: {exc}") from None
            finally:
                reader.close()
            fp = FilePlan(index, f, head.schema, head=head)
        files.append(fp)
    return Plan(files, counts)


def _plan_parquet(index: int, f: InputFile, batch_rows: int) -> FilePlan:
    try:
        pf = open_parquet(f.url, f.options)
        meta, schema = pf.metadata, pf.schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"cannot read {f.label} as Parquet: {exc}") from None
    parts: list[Part] = []
    run: list[int] = []
    run_rows = 0

    def flush() -> None:
        nonlocal run, run_rows
        if run:
            parts.append(Part((index, len(parts)), tuple(run), 0, run_rows))
        run, run_rows = [], 0

    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        if rows == 0:
            continue
        if rows >= batch_rows:
            flush()
            for start in range(0, rows, batch_rows):
                parts.append(Part((index, len(parts)), (g,), start, min(rows, start + batch_rows)))
            continue
        run.append(g)
        run_rows += rows
        if run_rows >= batch_rows:
            flush()
    flush()
    return FilePlan(index, f, schema, parts, meta.num_rows)


# -- tasks ------------------------------------------------------------------------------------


def tasks(
    the_plan: Plan, done: set[Key], batch_rows: int, workers: int, columns: Sequence[str] | None
) -> Iterator[ReadTask | DataTask]:
    """The work for the parts not in ``done``, in input order.

    A Parquet row group cut into several parts is one task (read once, each part written
    as its rows pass), unless there are fewer such groups than workers: then it is shared
    among ``workers // groups`` tasks, each reading the group from its start, so every
    worker has something to do even for a file with a single large row group.
    """
    units: dict[tuple[int, tuple[int, ...]], list[Part]] = defaultdict(list)
    for fp in the_plan.files:
        for p in fp.parts or []:
            if p.key not in done:
                units[(fp.index, p.row_groups)].append(p)
    share = max(1, math.ceil(workers / len(units))) if units else 1
    for fp in the_plan.files:
        if fp.parts is None:
            yield from _stream(the_plan, fp, done, batch_rows, columns)
            continue
        for (index, groups), parts in units.items():
            if index != fp.index:
                continue
            step = math.ceil(len(parts) / min(share, len(parts)))
            for i in range(0, len(parts), step):
                chunk = parts[i : i + step]
                ranges = tuple(PartRange(p.key, p.start, p.stop) for p in chunk)
                yield ReadTask(fp.file.url, fp.file.label, groups, ranges, fp.file.options)


def _stream(
    the_plan: Plan, fp: FilePlan, done: set[Key], batch_rows: int, columns: Sequence[str] | None
) -> Iterator[DataTask]:
    """A CSV or JSON Lines file, ``batch_rows`` rows per part (done parts read, not sent)."""
    reader = open_stream(fp.file)
    pending: list[pa.RecordBatch] = []
    held = number = 0
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            if columns is not None:
                batch = batch.select(list(columns))
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_rows:
                table = pa.Table.from_batches(pending)
                key = (fp.index, number)
                if key not in done:
                    yield DataTask(fp.file.label, key, table.slice(0, batch_rows).combine_chunks())
                rest = table.slice(batch_rows)
                pending, held, number = rest.to_batches(), rest.num_rows, number + 1
        if held:
            key = (fp.index, number)
            if key not in done:
                yield DataTask(fp.file.label, key, pa.Table.from_batches(pending).combine_chunks())
            number += 1
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"cannot read {fp.file.label} after part {number}: {exc}") from None
    finally:
        reader.close()
    the_plan.counts[fp.index] = number


def open_stream(f: InputFile) -> Any:
    """A record batch reader over a CSV or JSON Lines file (compressed ones too)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    opener = pacsv.open_csv if f.kind == "csv" else pajson.open_json
    try:
        if "://" in f.url and not f.url.startswith("file://"):
            import fsspec

            handle = fsspec.open(f.url, "rb", compression="infer", **(f.options or {}))
            return opener(handle.open())
        return opener(f.url.removeprefix("file://"))
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"cannot read {f.label}: {exc}") from None


def part_rows(path: Path) -> int | None:
    """Rows in a part file written before, or None when it cannot be read (it is redone)."""
    try:
        return int(pq.read_metadata(path).num_rows)
    except (OSError, pa.ArrowException):
        return None
