"""The bytes of a stream, a window at a time, for the opcode walk.

Kept apart from the walk because it is the only part that knows where bytes
come from: a buffer (``bytes``, or an ``mmap`` of a file or of a stored zip
member) is indexed in place, payloads stepped over by moving an index; a
stream (a compressed member, a decompressed joblib file) is read one window
at a time and payloads are stepped over with ``seek`` or discarding reads.
Either way memory stays bounded by the window, not the file.
"""

from __future__ import annotations

from typing import Any

_WINDOW = 1 << 20  # bytes read at a time from a stream
_MAX_LINE = 1 << 16  # protocol 0 lines longer than this are stepped over


class Malformed(Exception):
    """The stream stops parsing as a pickle (truncated, garbled, or not a pickle)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class Source:
    """The bytes of one stream, as a buffer window the walk indexes into.

    A buffer source (``bytes``, ``mmap``) is one window over ``[start, end)``;
    a stream source reads ``_WINDOW`` bytes at a time and keeps the unread
    rest. ``buf[pos]`` is valid for ``pos < n``; the walk calls :meth:`refill`
    when ``pos`` reaches ``lim``, which stays 16 bytes short of ``n`` until the
    last bytes, so fixed-size arguments never need a bounds check of their
    own: the last bytes are copied into a buffer of their exact size, where
    reading past the end raises.
    """

    __slots__ = ("base", "buf", "eof", "file", "lim", "n", "pos")

    def __init__(
        self,
        data: Any = b"",
        *,
        start: int = 0,
        end: int | None = None,
        file: Any = None,
    ) -> None:
        self.file = file
        self.buf: Any = data
        self.pos = start
        self.n = len(data) if end is None else end
        self.base = 0  # stream offset of buf[0]
        self.eof = file is None
        self.lim = 0  # the first opcode refills

    @property
    def offset(self) -> int:
        """The stream offset of ``pos``."""
        return self.base + self.pos

    def at_end(self) -> bool:
        """Whether every byte has been consumed (reads more when needed)."""
        if self.pos < self.n:
            return False
        if not self.eof:
            self.refill(1)
        return self.pos >= self.n

    def refill(self, need: int = 17) -> None:
        """Make ``need`` bytes from ``pos`` available if the stream has them; reset ``lim``."""
        if self.pos > self.n:  # a payload ran past the window: step over the rest
            over = self.pos - self.n
            self.pos = self.n
            self.skip(over)
        if self.n - self.pos >= need and self.n - self.pos > 16:
            self.lim = min(self.n - 16, self.pos + _WINDOW)
            return
        if self.eof:
            # The last bytes: copied, so that reading past the end raises instead of
            # reading whatever follows in a shared buffer (the rest of a zip, say).
            self.base += self.pos
            self.buf = bytes(self.buf[self.pos : self.n])
            self.pos, self.n = 0, len(self.buf)
            self.lim = self.n
            return
        assert self.file is not None
        parts = [self.buf[self.pos : self.n]]
        have = len(parts[0])
        want = max(need, _WINDOW)
        while have < want:
            chunk = self.file.read(want - have)
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.base += self.pos
        self.buf = b"".join(parts)
        self.pos, self.n = 0, len(self.buf)
        self.lim = self.n if self.eof else self.n - 16

    def skip(self, count: int) -> None:
        """Step over ``count`` bytes from ``pos`` without keeping them."""
        if self.pos + count <= self.n:
            self.pos += count
            return
        if self.eof:
            raise Malformed(f"a {count}-byte argument runs past the end", self.offset)
        assert self.file is not None
        left = count - (self.n - self.pos)
        self.base += self.n + left
        self.buf, self.pos, self.n, self.lim = b"", 0, 0, 0
        try:
            self.file.seek(left, 1)  # real files and stored zip members seek; others read
        except (AttributeError, OSError, ValueError):
            while left:
                chunk = self.file.read(min(left, _WINDOW))
                if not chunk:
                    raise Malformed(
                        f"a {count}-byte argument runs past the end", self.base
                    ) from None
                left -= len(chunk)

    def take(self, count: int) -> Any:
        """Return the next ``count`` bytes and step over them."""
        if self.pos + count > self.n:
            self.refill(count)
            if self.pos + count > self.n:
                raise Malformed(f"a {count}-byte argument runs past the end", self.offset)
        out = self.buf[self.pos : self.pos + count]
        self.pos += count
        return out

    def line(self) -> bytes | None:
        """The next line without its newline; ``None`` when too long to keep."""
        kept = True
        while True:
            j = self.buf.find(b"\n", self.pos, self.n)
            if j >= 0:
                out = bytes(self.buf[self.pos : j]) if kept and j - self.pos <= _MAX_LINE else None
                self.pos = j + 1
                self.lim = 0  # recomputed at the next opcode
                return out
            if self.eof:
                raise Malformed("a line argument has no end", self.offset)
            if self.n - self.pos > _MAX_LINE:  # too long to keep: drop what we have
                kept = False
                self.base += self.n
                self.buf, self.pos, self.n = b"", 0, 0
            self.refill(self.n - self.pos + _WINDOW)
