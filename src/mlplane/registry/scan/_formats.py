"""Recognising model file formats from their first bytes, and the small parsers they need.

Nothing here imports or runs anything a file names: headers are parsed with
``struct``, ``ast.literal_eval`` and ``json``.
"""

from __future__ import annotations

import ast
import bz2
import gzip
import io
import json
import lzma
import re
import struct
import zipfile
import zlib
from typing import IO, Any

# Extensions whose files are pickles whatever their first bytes look like.
PICKLE_EXTS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".p", ".sav", ".pck", ".pcl")

# -- first-bytes recognition ---------------------------------------------------------------------

ZIP = "zip"
TAR = "tar"
NPY = "npy"
SAFETENSORS = "safetensors"
ONNX = "onnx"
GGUF = "gguf"
HDF5 = "hdf5"
ZLIB = "zlib"
GZIP = "gzip"
BZ2 = "bz2"
XZ = "xz"
LZ4 = "lz4"
OTHER = "other"

SAFE_NOTES = {
    SAFETENSORS: "safetensors: raw tensors and a JSON header, no code runs on load",
    ONNX: "ONNX protobuf: a graph of standard operators, no Python code runs on load",
    GGUF: "GGUF: raw tensors and metadata, no code runs on load",
    HDF5: "HDF5: arrays and attributes, no code runs on load",
}
NOT_CODE = "not a code-carrying format"


def sniff(head: bytes, name: str, size: int | None) -> str:
    """The format of a file from its first 512 bytes (and, for ONNX, its name)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    if head[:6] == b"\x93NUMPY":
        return NPY
    if head[257:262] == b"ustar":
        return TAR
    if len(head) >= 9 and head[8:9] == b"{":
        (header,) = struct.unpack_from("<Q", head)
        if header >= 2 and (size is None or header <= size - 8):
            return SAFETENSORS
    if head[:4] == b"GGUF":
        return GGUF
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return HDF5
    if name.lower().endswith(".onnx") and head[:1] == b"\x08":
        return ONNX
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return ZLIB
    if head[:2] == b"\x1f\x8b":
        return GZIP
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return BZ2
    if head[:6] == b"\xfd7zXZ\x00":
        return XZ
    if head[:4] == b"\x04\x22\x4d\x18":
        return LZ4
    return OTHER


def is_pickle_name(name: str) -> bool:
    return name.lower().endswith(PICKLE_EXTS)


# -- compressed streams (joblib's compressors) ---------------------------------------------------


class _Inflate(io.RawIOBase):
    """A zlib stream, decompressed as it is read (joblib's ``compress=`` default)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.z = zlib.decompressobj()
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.pending:
            if self.z.eof:
                return 0
            data = self.z.unconsumed_tail or self.raw.read(1 << 18)
            if not data:
                raise zlib.error("truncated zlib stream")
            self.pending = self.z.decompress(data, max(len(b), 1 << 16))
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def decompressed(kind: str, raw: Any) -> io.BufferedIOBase:
    """A file object that reads ``raw`` decompressed."""
    if kind == ZLIB:
        return io.BufferedReader(_Inflate(raw), 1 << 16)
    if kind == GZIP:
        return gzip.GzipFile(fileobj=raw)
    if kind == BZ2:
        return bz2.BZ2File(raw)
    if kind == XZ:
        return lzma.LZMAFile(raw)
    raise ValueError(kind)  # pragma: no cover


DECOMPRESS_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, zipfile.BadZipFile)

# -- NumPy .npy -----------------------------------------------------------------------------------


def npy_header_end(head: bytes) -> int | None:
    """Where the header of a ``.npy`` file ends (its data starts), from its first 12 bytes."""
    if head[:6] != b"\x93NUMPY" or len(head) < 12:
        return None
    if head[6] == 1:
        return 10 + int(struct.unpack_from("<H", head, 8)[0])
    if head[6] in (2, 3):
        return 12 + int(struct.unpack_from("<I", head, 8)[0])
    return None


# The header as numpy writes it; anything else goes through ast.literal_eval.
_NPY_SIMPLE = re.compile(
    r"\{'descr': '([^'\\]*)', 'fortran_order': (?:True|False), 'shape': \(([0-9, ]*)\), \} *\n?"
)


def npy_header(head: bytes) -> tuple[dict[str, Any], int] | None:
    """The header dict of a ``.npy`` file and where its data starts, or ``None``.

    ``head`` must hold the whole header (up to 64 KiB is read; numpy's are
    a few hundred bytes).
    """
    end = npy_header_end(head)
    if end is None or len(head) < end:
        return None
    start = 10 if head[6] == 1 else 12
    try:
        text = head[start:end].decode("utf-8" if head[6] == 3 else "latin1")
        simple = _NPY_SIMPLE.fullmatch(text)
        if simple:
            return {"descr": simple.group(1)}, end
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        return None
    if not isinstance(header, dict) or "descr" not in header:
        return None
    return header, end


def descr_has_object(descr: Any) -> bool:
    """Whether a ``.npy`` dtype description holds Python objects (so a pickle follows)."""
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        for field in descr:
            if isinstance(field, tuple | list) and len(field) >= 2:
                if descr_has_object(field[1]):
                    return True
            else:
                return True  # not a shape numpy writes: treat as unknown content
        return False
    if isinstance(descr, tuple) and descr:
        return descr_has_object(descr[0])
    return True


# -- zip archives ---------------------------------------------------------------------------------

_TORCH_STORAGE = re.compile(r"(?:^|/)data/\d+$")
_TORCH_META = re.compile(r"(?:^|/)(?:\.data/serialization_id|version|byteorder|\.format_version|"
                         r"\.storage_alignment|\.data/version)$")  # fmt: skip


def is_torch_storage(member: str) -> bool:
    """A raw tensor storage inside a ``torch.save`` archive (bytes, never parsed)."""
    return bool(_TORCH_STORAGE.search(member))


def is_torch_meta(member: str) -> bool:
    return bool(_TORCH_META.search(member))


def zip_data_offset(buf: Any, start: int, header_offset: int) -> int | None:
    """Where a member's data starts, from its local header, relative to the archive."""
    at = start + header_offset
    local = bytes(buf[at : at + 30])
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack_from("<HH", local, 26)
    return header_offset + 30 + int(name_len) + int(extra_len)


class BufferFile(io.RawIOBase):
    """A read-only, seekable file over ``buf[start:end]`` (for ``zipfile`` on an mmap)."""

    def __init__(self, buf: Any, start: int, end: int) -> None:
        self.buf, self.start, self.end, self.pos = buf, start, end, start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos - self.start

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (self.start, self.pos, self.end)[whence]
        self.pos = min(max(base + offset, self.start), self.end)
        return self.pos - self.start

    def read(self, n: int | None = -1) -> bytes:
        stop = self.end if n is None or n < 0 else min(self.end, self.pos + n)
        out = bytes(self.buf[self.pos : stop])
        self.pos = stop
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


# -- skops ---------------------------------------------------------------------------------------


def skops_types(schema: Any) -> list[tuple[str, str]]:
    """Every ``(module, class)`` a skops ``schema.json`` refers to, in order of appearance."""
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str) and (module, cls) not in seen:
                seen.add((module, cls))
                out.append((module, cls))
            todo.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            todo.extend(reversed(node))
    return out


def load_json(raw: bytes) -> Any:
    return json.loads(raw)
