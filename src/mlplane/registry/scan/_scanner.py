"""The scan itself: files and folders in, a :class:`ScanReport` out."""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from mlplane.registry.scan import _formats as fmt
from mlplane.registry.scan._pickle import PickleScan, walk
from mlplane.registry.scan._policy import judge, judge_partial
from mlplane.registry.scan._report import Finding, ScanReport, Verdict, worst
from mlplane.registry.scan._source import Source

MAX_DEPTH = 4  # archives inside archives, decompressed streams included
_HEAD = 512  # enough for a tar header
_SMALL = 1 << 20  # files and compressed members up to this size are read into memory
_NPY_HEAD = 1 << 16
_SCHEMA_CAP = 256 << 20
_KERAS_LAMBDA = (b'"class_name": "Lambda"', b'"class_name":"Lambda"')


@dataclass
class _Unit:
    """One stream of bytes to judge: a file, an archive member, a decompressed stream.

    Either ``buf[start:end]`` (bytes or an mmap) or ``opener()``, a fresh file
    object positioned at the start of the stream.
    """

    label: str
    name: str
    buf: Any = None
    start: int = 0
    end: int = 0
    opener: Callable[[], Any] | None = None  # a readable binary file object
    size: int | None = None
    cached: bytes | None = None  # the first bytes of a stream, read once
    asked: int = 0  # how many were asked for: fewer cached means the stream is shorter

    def head(self, count: int = _HEAD) -> bytes:
        if self.buf is not None:
            return bytes(self.buf[self.start : min(self.end, self.start + count)])
        # read again only when more is wanted and the last read was not cut short by the end
        if self.cached is None or count > len(self.cached) == self.asked:
            assert self.opener is not None
            self.asked = max(count, _HEAD)
            with self.opener() as f:
                self.cached = _read_exactly(f, self.asked)
        return self.cached[:count]

    @contextlib.contextmanager
    def source(self, offset: int = 0) -> Iterator[Source]:
        if self.buf is not None:
            yield Source(self.buf, start=self.start + offset, end=self.end)
            return
        assert self.opener is not None
        with self.opener() as f:
            if offset:
                _read_exactly(f, offset)
            yield Source(file=f)


def _read_exactly(f: IO[bytes], count: int) -> bytes:
    parts, have = [], 0
    while have < count:
        chunk = f.read(count - have)
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


class _Scan:
    """Findings of one ``scan_path`` or ``scan_bytes`` call, as they are made."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.findings: list[Finding] = []
        self.seen: set[tuple[str, str, str, str]] = set()
        self.imports: dict[str, list[str]] = {}
        self.files = 0
        self.bytes = 0

    def add(self, label: str, module: str, name: str, verdict: Verdict, reason: str) -> None:
        if verdict == "unknown" and self.strict:
            verdict, reason = "unsafe", f"{reason} [strict mode: unknown is unsafe]"
        key = (label, module, name, reason)
        if key not in self.seen:
            self.seen.add(key)
            self.findings.append(Finding(label, module, name, verdict, reason))

    def report(self) -> ScanReport:
        return ScanReport(
            verdict=worst(f.verdict for f in self.findings),
            findings=self.findings,
            files=self.files,
            bytes=self.bytes,
            imports=self.imports,
        )

    # -- dispatch ---------------------------------------------------------------------------------

    def unit(self, u: _Unit, depth: int) -> None:
        try:
            self.dispatch(u, depth)
        except Exception as exc:  # fail closed: what cannot be read is not passed as safe
            self.add(u.label, "", "", "unknown", f"could not be scanned: {exc!r}")

    def dispatch(self, u: _Unit, depth: int) -> None:
        if u.size == 0:
            self.add(u.label, "", "", "safe", f"empty file: {fmt.NOT_CODE}")
            return
        head = u.head()
        kind = fmt.sniff(head, u.name, u.size)
        if kind == fmt.ZIP:
            self.archive(u, depth)
        elif kind == fmt.TAR:
            self.tar(u, depth)
        elif kind == fmt.NPY:
            self.npy(u)
        elif kind in fmt.SAFE_NOTES:
            self.add(u.label, "", "", "safe", fmt.SAFE_NOTES[kind])
        elif kind == fmt.LZ4:
            self.add(u.label, "", "", "unknown", "lz4-compressed stream: not decompressed here")
        elif kind in (fmt.ZLIB, fmt.GZIP, fmt.BZ2, fmt.XZ):
            self.compressed(u, kind, depth)
        else:
            sure = fmt.is_pickle_name(u.name) or (head[:1] == b"\x80" and head[1:2] <= b"\x05")
            self.pickle(u, sure=sure)

    def pickle(self, u: _Unit, *, sure: bool, offset: int = 0, what: str = "pickle") -> None:
        try:
            with u.source(offset) as src:
                res = walk(src)
        except fmt.DECOMPRESS_ERRORS as exc:
            res = PickleScan(error=f"the stream does not decompress: {exc}")
        called = any(res.imports.values())
        denied = any(judge(m, n)[0] == "unsafe" for m, n in res.imports)
        if not (sure or res.pickles or called or denied or res.partial):
            self.add(u.label, "", "", "safe", fmt.NOT_CODE)
            return
        self.record_pickle(u.label, res, what)

    def record_pickle(self, label: str, res: PickleScan, what: str) -> None:
        self.imports[label] = sorted(f"{m}.{n}" for m, n in res.imports)
        before = len(self.findings)
        for (module, name), ops in res.imports.items():
            verdict, reason = judge(module, name)
            if verdict != "safe":
                how = ", ".join(sorted(ops))
                reason += f" (called by {how})" if how else " (imported, not called here)"
            self.add(label, module, name, verdict, reason)
        for module_or_none, name_or_none in res.partial:
            verdict, reason = judge_partial(module_or_none, name_or_none)
            self.add(label, module_or_none or "?", name_or_none or "?", verdict, reason)
        for module, name in res.shadow:
            verdict, reason = judge(module, name)
            if verdict == "unsafe":  # benign array bytes never spell a denied import
                self.imports[label] = sorted({*self.imports[label], f"{module}.{name}"})
                reason += (
                    " (hidden in joblib array data: runs when the file is read with pickle.load"
                    " instead of joblib.load)"
                )
                self.add(label, module, name, verdict, reason)
        for module, name, verdict, reason in res.issues:
            self.add(label, module, name, verdict, reason)
        if res.error is not None:
            self.add(label, "", "", "unknown", f"{what} does not parse to the end: {res.error}")
        elif res.trailing_at is not None:
            self.add(
                label,
                "",
                "",
                "safe",
                f"{what}: {res.pickles} pickle(s), then data that is not a pickle from byte "
                f"{res.trailing_at} (not parsed)",
            )
        if all(f.verdict == "safe" for f in self.findings[before:]):
            count = len(res.imports)
            self.add(label, "", "", "safe", f"{what}: all {count} of its imports are allowed")

    # -- formats ----------------------------------------------------------------------------------

    def npy(self, u: _Unit) -> None:
        head = u.head()
        end = fmt.npy_header_end(head)
        if end is not None and end > len(head):
            head = u.head(min(end, _NPY_HEAD))
        parsed = fmt.npy_header(head)
        if parsed is None:
            self.add(u.label, "", "", "unknown", "NumPy file with an unreadable header")
            return
        header, data_at = parsed
        if not fmt.descr_has_object(header["descr"]):
            self.add(u.label, "", "", "safe", f"NumPy array ({header['descr']!r}): plain data")
            return
        self.pickle(u, sure=True, offset=data_at, what="NumPy object array (pickled)")

    def compressed(self, u: _Unit, kind: str, depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.add(u.label, "", "", "unknown", f"{kind} stream nested too deep to scan")
            return
        opener = u.opener
        if u.buf is not None:
            buf, start, end = u.buf, u.start, u.end
            opener = lambda: fmt.BufferFile(buf, start, end)  # noqa: E731
        assert opener is not None
        inner_opener = opener

        def open_inner() -> Any:
            return fmt.decompressed(kind, inner_opener())

        inner = _Unit(u.label, _strip_ext(u.name), opener=open_inner)
        try:
            inner.head()
        except fmt.DECOMPRESS_ERRORS:  # not really compressed: read as it is
            self.pickle(u, sure=fmt.is_pickle_name(u.name))
            return
        self.unit(inner, depth + 1)

    def tar(self, u: _Unit, depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.add(u.label, "", "", "unknown", "archive nested too deep to scan")
            return
        with contextlib.ExitStack() as stack:
            if u.buf is not None:  # members are read in place
                raw = fmt.BufferFile(u.buf, u.start, u.end)
                tf = stack.enter_context(tarfile.open(fileobj=raw, mode="r:"))
            else:
                assert u.opener is not None
                tf = stack.enter_context(
                    tarfile.open(fileobj=stack.enter_context(u.opener()), mode="r|")
                )
            for member in tf:
                if not member.isfile():
                    continue
                label = f"{u.label}::{member.name}"
                if u.buf is not None:
                    start = u.start + member.offset_data
                    self.unit(
                        _Unit(
                            label,
                            member.name,
                            buf=u.buf,
                            start=start,
                            end=start + member.size,
                            size=member.size,
                        ),
                        depth + 1,
                    )
                    continue
                f = tf.extractfile(member)
                assert f is not None
                with contextlib.ExitStack() as member_stack:
                    buf = _load(f, member_stack)
                    self.unit(
                        _Unit(label, member.name, buf=buf, end=len(buf), size=len(buf)), depth + 1
                    )

    def archive(self, u: _Unit, depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.add(u.label, "", "", "unknown", "archive nested too deep to scan")
            return
        with contextlib.ExitStack() as stack:
            if u.buf is not None:
                buf, start = u.buf, u.start
                raw = fmt.BufferFile(u.buf, u.start, u.end)
            else:  # a compressed member: in memory when small, else spooled to disk
                assert u.opener is not None
                with u.opener() as f:
                    buf = _load(f, stack)
                start = 0
                raw = fmt.BufferFile(buf, 0, len(buf))
            try:
                zf = stack.enter_context(zipfile.ZipFile(raw))
                infos = zf.infolist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                self.add(u.label, "", "", "unknown", f"zip archive that does not open: {exc}")
                return
            self.members(u, zf, infos, buf, start, depth)

    def members(
        self,
        u: _Unit,
        zf: zipfile.ZipFile,
        infos: list[zipfile.ZipInfo],
        buf: Any,
        start: int,
        depth: int,
    ) -> None:
        names = [i.filename for i in infos]
        if "schema.json" in names:
            self.skops(u, zf)
        storages = 0
        torchscript = False
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            label = f"{u.label}::{name}"
            if fmt.is_torch_storage(name):
                storages += 1
                continue
            if fmt.is_torch_meta(name) or (name == "schema.json" and "schema.json" in names):
                continue
            if "/code/" in f"/{name}" and name.endswith(".py"):
                torchscript = True
                continue
            if name.endswith("config.json") and info.file_size < _SCHEMA_CAP:
                self.keras_config(label, zf.read(info))
            if info.flag_bits & 0x1:
                self.add(label, "", "", "unknown", "encrypted archive member: not scanned")
                continue
            member = _Unit(label, name, size=info.file_size)
            offset = fmt.zip_data_offset(buf, start, info.header_offset)
            if info.compress_type == zipfile.ZIP_STORED and offset is not None:
                member.buf, member.start = buf, start + offset
                member.end = member.start + info.file_size
            else:
                member.opener = lambda info=info: zf.open(info)
            self.unit(member, depth + 1)
        if torchscript:
            self.add(
                u.label,
                "",
                "",
                "safe",
                "TorchScript archive: its code/ is compiled by torch.jit.load, a restricted "
                "language without Python imports; its pickles are scanned",
            )
        if storages:
            self.add(u.label, "", "", "safe", f"{storages} raw tensor storage(s), never parsed")

    def skops(self, u: _Unit, zf: zipfile.ZipFile) -> None:
        label = f"{u.label}::schema.json"
        info = zf.getinfo("schema.json")
        if info.file_size > _SCHEMA_CAP:
            self.add(label, "", "", "unknown", "skops schema too large to read")
            return
        try:
            schema = fmt.load_json(zf.read(info))
        except (ValueError, RecursionError) as exc:
            self.add(label, "", "", "unknown", f"skops schema that does not parse: {exc}")
            return
        types = fmt.skops_types(schema)
        self.imports[label] = sorted(f"{m}.{c}" for m, c in types)
        for module, cls in types:
            verdict, reason = judge(module, cls)
            if verdict != "safe":
                reason += " (skops would instantiate it when told to trust it)"
            self.add(label, module, cls, verdict, reason)
        self.add(label, "", "", "safe", f"skops schema: {len(types)} types referenced")

    def keras_config(self, label: str, raw: bytes) -> None:
        if any(marker in raw for marker in _KERAS_LAMBDA):
            self.add(
                label,
                "",
                "",
                "unknown",
                "Keras Lambda layer: Python bytecode that runs when loaded with safe_mode=False",
            )


def _load(f: Any, stack: contextlib.ExitStack) -> Any:
    """All of a stream, in memory when small, else spooled to a temporary file and mapped."""
    data = f.read(_SMALL + 1)
    if len(data) <= _SMALL:
        return data
    spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - closed by ``stack``
    spool.write(data)
    shutil.copyfileobj(f, spool, 1 << 20)
    spool.flush()
    return stack.enter_context(mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ))


def _strip_ext(name: str) -> str:
    for ext in (".gz", ".tgz", ".z", ".bz2", ".xz", ".lzma", ".zlib"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


# -- entry points ---------------------------------------------------------------------------------


def _scan_file(scan: _Scan, path: str, label: str) -> None:
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        scan.files += 1
        scan.bytes += size
        if size <= _SMALL:  # cheaper to read than to map
            data = f.readall()
            scan.unit(_Unit(label, path, buf=data, start=0, end=len(data), size=len(data)), 0)
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            scan.unit(_Unit(label, path, buf=mm, start=0, end=size, size=size), 0)


def scan_path(path: str | os.PathLike[str], *, strict: bool = False) -> ScanReport:
    """Scan a model file, or every file of a folder, recursively.

    Nothing in the files is imported or run: pickles are read opcode by
    opcode, archives member by member, and every import is judged against the
    allowlist and the denylist.

    Args:
        path: A file or a folder.
        strict: Judge what is neither allowed nor denied as ``unsafe`` instead
            of ``unknown``.

    Returns:
        The report: the worst verdict, every finding, and the imports of each pickle.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    root = os.fspath(path)
    scan = _Scan(strict)
    if os.path.isdir(root):
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(folder, name)
                if os.path.isfile(full):
                    _scan_file(scan, full, os.path.relpath(full, root))
    else:
        _scan_file(scan, root, os.path.basename(root))
    return scan.report()


def scan_bytes(data: bytes, *, name: str = "<bytes>", strict: bool = False) -> ScanReport:
    """Scan one file held in memory; ``name`` (its file name) is used to guess its format.

    Args:
        data: The file's bytes.
        name: The file name, for the report and for the extension (``.pkl``, ``.onnx``).
        strict: Judge what is neither allowed nor denied as ``unsafe``.

    Returns:
        The report, as :func:`scan_path` returns it.
    """
    scan = _Scan(strict)
    scan.files, scan.bytes = 1, len(data)
    scan.unit(_Unit(name, name, buf=data, start=0, end=len(data), size=len(data)), 0)
    return scan.report()
