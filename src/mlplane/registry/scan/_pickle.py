"""A static walk over pickle opcodes: what a stream imports, never running any of it.

The walk is a small abstract machine. It keeps the unpickler's stack, marks
and memo, but its values are only what a judgement needs: strings (as their
bytes), small ints, tuples, small dicts, ``_Global`` for an import and
``_Obj`` for the result of a call; everything else is the opaque ``_ANY``.
That is what lets ``STACK_GLOBAL`` be resolved exactly: its operands are the
two values on top of the modelled stack, wherever they came from (a string
opcode, the memo, a ``DUP``), and a ``POP`` between them is followed as the
unpickler follows it, so strings pushed and popped again cannot fool it.

It is also fast: a hand-written loop over a buffer instead of
``pickletools.genops`` (no object per opcode), and payloads (bytes, long
strings, joblib's raw array data) are stepped over, not read, when the source
is a buffer or a seekable file, so a multi-GB tensor costs nothing.

A joblib file has two readings: ``joblib.load`` steps over the raw array
bytes after each ``NumpyArrayWrapper``, ``pickle.load`` parses them as
opcodes. The walk follows joblib's, and where the bytes are in a buffer it
also walks pickle's over each array's bytes, from a copy of the state
(``shadow``): benign numbers stop parsing within a few bytes, a smuggled
payload does not.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from mlplane.registry.scan._report import Verdict
from mlplane.registry.scan._source import Malformed, Source

_MAX_STR = 512  # longer strings are not kept (no module or class name is that long)
_MEMO_CAP = 2_000_000  # memo entries kept in full; past that, only names
_STACK_CAP = 20_000_000


class _Any:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<any>"


_ANY = _Any()

_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_NUMPY_DTYPE = ("numpy", "dtype")
_KEEPS_ARGS = {_JOBLIB_WRAPPER, _NUMPY_DTYPE}


class _Global:
    """What an import opcode pushes: a reference to ``module.name``."""

    __slots__ = ("keep", "key")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.keep = key in _KEEPS_ARGS


class _Obj:
    """What a call (REDUCE, NEWOBJ, OBJ, INST) pushes; args and state only for a few callables."""

    __slots__ = ("args", "fn", "state")

    def __init__(self, fn: Any, args: Any = None) -> None:
        self.fn = fn
        self.args = args
        self.state: Any = None


class _Overlay(dict[int, Any]):
    """A memo that reads through to another walk's memo, without copying or changing it."""

    __slots__ = ("outer",)

    def __init__(self, outer: dict[int, Any]) -> None:
        super().__init__()
        self.outer = outer

    def __missing__(self, key: int) -> Any:
        return self.outer[key]


_State = tuple[list[Any], list[int], dict[int, Any], int]  # stack, marks, memo, memo length


@dataclass
class PickleScan:
    """What the walk found in one stream (one or several pickles one after another).

    Attributes:
        imports: ``(module, name)`` -> the opcodes that called it (empty: imported only).
        partial: ``STACK_GLOBAL`` s whose module or name is not a literal string.
        issues: ``(module, name, verdict, reason)`` about the stream itself.
        pickles: Complete pickles read (up to their ``STOP``).
        error: Why the walk stopped early, if it did.
        error_offset: Where, in bytes from the start of the stream.
        trailing_at: Where data that is not a pickle starts, after the last pickle.
        shadow: Imports found by reading joblib's raw array data as opcodes, as
            ``pickle.load`` (not ``joblib.load``) would.
    """

    imports: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    partial: list[tuple[str | None, str | None]] = field(default_factory=list)
    issues: list[tuple[str, str, Verdict, str]] = field(default_factory=list)
    pickles: int = 0
    error: str | None = None
    error_offset: int = 0
    trailing_at: int | None = None
    shadow: dict[tuple[str, str], set[str]] = field(default_factory=dict)


# Opcode classes, tested in order of how often they occur in model pickles.
_K_MEMOIZE = 0
_K_STR1 = 1  # SHORT_BINUNICODE, SHORT_BINSTRING
_K_PUT = 2  # BINPUT, LONG_BINPUT
_K_GET = 3  # BINGET, LONG_BINGET
_K_MARK = 4
_K_ANY = 5  # fixed-size argument, pushes a value we do not track
_K_INT = 6  # BININT1, BININT2, BININT
_K_TUPLEN = 7  # TUPLE1-3
_K_EMPTY = 8  # EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, EMPTY_SET
_K_FILL = 9  # APPENDS, SETITEMS, ADDITEMS
_K_ADD1 = 10  # APPEND, SETITEM
_K_BYTES1 = 11  # SHORT_BINBYTES
_K_LEN4 = 12  # BINBYTES, BINUNICODE, BINSTRING
_K_TUPLE = 14
_K_REDUCE = 15
_K_BUILD = 16
_K_NEWOBJ = 17
_K_STACK_GLOBAL = 18
_K_SKIP = 20  # FRAME, PROTO
_K_LEN8 = 21  # BINUNICODE8, BINBYTES8, BYTEARRAY8
_K_GLOBAL = 22  # GLOBAL, INST
_K_STOP = 23
_K_LINE = 24  # INT, LONG, FLOAT, STRING, UNICODE, GET, PUT, PERSID
_K_LONG = 25  # LONG1, LONG4
_K_MISC = 26
_K_EXT = 27
_K_BAD = 255

_KIND = bytearray([_K_BAD]) * 256
_ARGLEN = bytearray(256)
for _ops, _kind in (
    (b"\x94", _K_MEMOIZE),
    (b"\x8cU", _K_STR1),
    (b"qr", _K_PUT),
    (b"hj", _K_GET),
    (b"(", _K_MARK),
    (b"GN\x88\x89", _K_ANY),
    (b"KMJ", _K_INT),
    (b"\x85\x86\x87", _K_TUPLEN),
    (b")]}\x8f", _K_EMPTY),
    (b"eu\x90", _K_FILL),
    (b"as", _K_ADD1),
    (b"C", _K_BYTES1),
    (b"BXT", _K_LEN4),
    (b"t", _K_TUPLE),
    (b"R", _K_REDUCE),
    (b"b", _K_BUILD),
    (b"\x81", _K_NEWOBJ),
    (b"\x93", _K_STACK_GLOBAL),
    (b"\x95\x80", _K_SKIP),
    (b"\x8d\x8e\x96", _K_LEN8),
    (b"ci", _K_GLOBAL),
    (b".", _K_STOP),
    (b"ILFSVgpP", _K_LINE),
    (b"\x8a\x8b", _K_LONG),
    (b"012ldo\x91\x92Q\x97\x98", _K_MISC),
    (b"\x82\x83\x84", _K_EXT),
):
    for _op in _ops:
        _KIND[_op] = _kind
for _ops, _len in ((b"G", 8), (b"\x95", 8), (b"\x80", 1)):
    for _op in _ops:
        _ARGLEN[_op] = _len
_KIND = bytes(_KIND)  # type: ignore[assignment]

_u4 = struct.Struct("<I").unpack_from
_i4 = struct.Struct("<i").unpack_from
_u8 = struct.Struct("<Q").unpack_from
_NAMEISH = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{0,200}")


class _Walker:
    """One stream's walk; :meth:`run` reads pickle after pickle until the stream ends."""

    def __init__(self, src: Source, out: PickleScan) -> None:
        self.src = src
        self.out = out
        self.globals: dict[tuple[str, str], _Global] = {}
        self.shadow = False  # walking joblib array data the way pickle.load would

    # -- the stream ---------------------------------------------------------------------------

    def run(self) -> None:
        src, out = self.src, self.out
        while not src.at_end():
            start = src.offset
            first_byte = src.buf[src.pos]
            before = len(out.imports) + len(out.partial)
            try:
                self.one()
            except Malformed as exc:
                if (
                    out.pickles
                    and first_byte != 0x80
                    and before == len(out.imports) + len(out.partial)
                ):
                    out.trailing_at = start  # e.g. the raw storages of a legacy torch file
                else:
                    out.error, out.error_offset = str(exc), exc.offset
                return
            out.pickles += 1

    def global_(self, module: str, name: str) -> _Global:
        key = (module, name)
        g = self.globals.get(key)
        if g is None:
            g = self.globals[key] = _Global(key)
            self.out.imports.setdefault(key, set())
        return g

    # -- one pickle ---------------------------------------------------------------------------

    def one(self, seed: _State | None = None) -> None:
        """Walk one pickle, up to its STOP; ``seed`` starts from a copy of another walk's state.

        One loop, one branch per opcode class, the most frequent first, for speed.
        """
        src = self.src
        out = self.out
        kinds = _KIND
        arglen = _ARGLEN
        u4, i4, u8 = _u4, _i4, _u8
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}
        keep_all = True  # every memo entry kept, so a missing one is an error
        mlen = 0  # the memo's length once entries are no longer all kept
        if seed is not None:  # another walk's state: lenient, missing entries are unknown
            stack, marks, memo, mlen = seed
            keep_all = False
        used_put = False
        ANY = _ANY
        Obj = _Obj
        buf, pos, lim = src.buf, src.pos, src.lim
        try:
            while True:
                if pos >= lim:
                    src.pos = pos
                    if len(stack) > _STACK_CAP:
                        raise Malformed("stack too deep to follow", src.offset)
                    if keep_all and len(memo) > _MEMO_CAP:
                        keep_all, mlen = False, len(memo)
                    src.refill()
                    buf, pos, lim = src.buf, src.pos, src.lim
                    if pos >= src.n:
                        raise Malformed("the stream ends before STOP", src.offset)
                op = buf[pos]
                pos += 1
                k = kinds[op]
                if k == _K_MEMOIZE:
                    if keep_all:
                        memo[len(memo)] = stack[-1]
                    else:  # past the cap: the index is exact only if no PUT moved it
                        if not used_put and _keep(stack[-1]):
                            memo[mlen] = stack[-1]
                        mlen += 1
                elif k == _K_STR1:
                    size = buf[pos]
                    pos += 1
                    end = pos + size
                    if end < lim:
                        value = buf[pos:end]
                        stack.append(value)
                        if buf[end] == 0x94 and keep_all:  # the MEMOIZE pickle writes after it
                            memo[len(memo)] = value
                            end += 1
                        pos = end
                    else:
                        src.pos = pos
                        stack.append(src.take(size))
                        buf, pos, lim = src.buf, src.pos, src.lim
                elif k == _K_PUT:
                    if op == 0x71:  # BINPUT
                        index = buf[pos]
                        pos += 1
                    else:  # LONG_BINPUT
                        index = u4(buf, pos)[0]
                        pos += 4
                    if keep_all or _keep(stack[-1]):
                        memo[index] = stack[-1]
                    used_put = True
                elif k == _K_GET:
                    if op == 0x68:  # BINGET
                        index = buf[pos]
                        pos += 1
                    else:  # LONG_BINGET
                        index = u4(buf, pos)[0]
                        pos += 4
                    try:
                        stack.append(memo[index])
                    except KeyError:
                        stack.append(self.missing(index, keep_all, src.base + pos))
                elif k == _K_INT:
                    if op == 0x4B:  # BININT1
                        stack.append(buf[pos])
                        pos += 1
                    elif op == 0x4A:  # BININT
                        stack.append(i4(buf, pos)[0])
                        pos += 4
                    else:  # BININT2
                        stack.append(buf[pos] | buf[pos + 1] << 8)
                        pos += 2
                elif k == _K_LEN4:
                    if op == 0x54:  # BINSTRING has a signed length
                        size = i4(buf, pos)[0]
                        if size < 0:
                            raise Malformed("negative BINSTRING length", src.base + pos)
                    else:
                        size = u4(buf, pos)[0]
                    pos += 4
                    end = pos + size
                    if end + 5 < lim:  # in the window: no call out
                        if op == 0x42 or size > _MAX_STR:
                            stack.append(ANY)
                        else:
                            value = buf[pos:end]
                            stack.append(value)
                            if buf[end] == 0x71 and keep_all:  # the BINPUT pickle writes after it
                                memo[buf[end + 1]] = value
                                end += 2
                                used_put = True
                            elif buf[end] == 0x72 and keep_all:  # LONG_BINPUT
                                memo[u4(buf, end + 1)[0]] = value
                                end += 5
                                used_put = True
                        pos = end
                    else:
                        src.pos = pos
                        if op == 0x42 or size > _MAX_STR:  # BINBYTES, or too long for a name
                            src.skip(size)
                            stack.append(ANY)
                        else:
                            stack.append(bytes(src.take(size)))
                        buf, pos, lim = src.buf, src.pos, src.lim
                elif k == _K_ANY:
                    pos += arglen[op]
                    stack.append(ANY)
                elif k == _K_MARK:
                    marks.append(len(stack))
                elif k == _K_TUPLEN:
                    if op == 0x86:  # TUPLE2
                        last = stack.pop()
                        stack[-1] = (stack[-1], last)
                    elif op == 0x85:  # TUPLE1
                        stack[-1] = (stack[-1],)
                    else:  # TUPLE3
                        last = stack.pop()
                        middle = stack.pop()
                        stack[-1] = (stack[-1], middle, last)
                elif k == _K_EMPTY:
                    stack.append(() if op == 0x29 else {} if op == 0x7D else ANY)
                elif k == _K_FILL:
                    mark = marks.pop()
                    if mark == 0:  # nothing under the mark to add to
                        raise IndexError
                    if op == 0x75:  # SETITEMS: keep small dicts (joblib's array metadata)
                        target = stack[mark - 1]
                        if type(target) is dict and len(target) < 64:
                            items = stack[mark:]
                            for i in range(0, len(items) - 1, 2):
                                if type(items[i]) is bytes:
                                    target[items[i]] = items[i + 1]
                    del stack[mark:]
                elif k == _K_ADD1:
                    if op == 0x73:  # SETITEM
                        value = stack.pop()
                        key = stack.pop()
                        target = stack[-1]
                        if type(target) is dict and type(key) is bytes and len(target) < 64:
                            target[key] = value
                    else:
                        stack.pop()
                        stack[-1]
                elif k == _K_BYTES1:
                    pos += buf[pos] + 1  # past the window: the refill steps over the rest
                    stack.append(ANY)
                elif k == _K_TUPLE:
                    mark = marks.pop()
                    made = tuple(stack[mark:])
                    del stack[mark:]
                    stack.append(made)
                elif k == _K_REDUCE:
                    args = stack.pop()
                    fn = stack[-1]
                    if type(fn) is _Global:
                        out.imports[fn.key].add("REDUCE")
                        stack[-1] = Obj(fn, args if fn.keep else None)
                    else:
                        stack[-1] = Obj(fn)
                elif k == _K_BUILD:
                    state = stack.pop()
                    target = stack[-1]
                    if type(target) is Obj:
                        fn = target.fn
                        if type(fn) is _Global and fn.keep:
                            target.state = state
                            if fn.key == _JOBLIB_WRAPPER:
                                src.pos = pos
                                state_now = (stack, marks, memo, len(memo) if keep_all else mlen)
                                self.joblib_array(state, state_now)
                                buf, pos, lim = src.buf, src.pos, src.lim
                    elif type(target) is _Global:
                        out.imports[target.key].add("BUILD")
                        module, name = target.key
                        out.issues.append(
                            (
                                module,
                                name,
                                "unsafe",
                                f"{module}.{name}: BUILD sets attributes on the imported "
                                "object itself (tampers with a module or class)",
                            )
                        )
                elif k == _K_NEWOBJ:
                    args = stack.pop()
                    fn = stack[-1]
                    if type(fn) is _Global:
                        out.imports[fn.key].add("NEWOBJ")
                        stack[-1] = Obj(fn, args if fn.keep else None)
                    else:
                        stack[-1] = Obj(fn)
                elif k == _K_STACK_GLOBAL:
                    name = stack.pop()
                    module = stack[-1]
                    if type(module) is bytes and type(name) is bytes:
                        stack[-1] = self.global_(_text(module), _text(name))
                    else:
                        out.partial.append(
                            (
                                _text(module) if type(module) is bytes else None,
                                _text(name) if type(name) is bytes else None,
                            )
                        )
                        stack[-1] = ANY
                elif k == _K_SKIP:
                    if op == 0x80 and buf[pos] > 5:
                        raise Malformed(f"unsupported pickle protocol {buf[pos]}", src.base + pos)
                    pos += arglen[op]
                elif k == _K_LEN8:
                    size = u8(buf, pos)[0]
                    pos += 8
                    src.pos = pos
                    if op == 0x8D and size <= _MAX_STR:  # BINUNICODE8
                        stack.append(bytes(src.take(size)))
                    else:
                        src.skip(size)
                        stack.append(ANY)
                    buf, pos, lim = src.buf, src.pos, src.lim
                elif k == _K_GLOBAL:
                    src.pos = pos
                    mod_line = src.line()
                    name_line = src.line()
                    buf, pos, lim = src.buf, src.pos, src.lim
                    if mod_line is None or name_line is None:
                        raise Malformed("import name too long", src.base + pos)
                    g = self.global_(_text(mod_line), _text(name_line))
                    if op == 0x63:  # GLOBAL
                        stack.append(g)
                    else:  # INST: the class is called with the items above the mark
                        out.imports[g.key].add("INST")
                        mark = marks.pop()
                        del stack[mark:]
                        stack.append(Obj(g))
                elif k == _K_STOP:
                    src.pos = pos
                    return
                elif k == _K_LINE:
                    src.pos = pos
                    text = src.line()
                    buf, pos, lim = src.buf, src.pos, src.lim
                    if op == 0x67:  # GET
                        index = _int(text, src)
                        try:
                            stack.append(memo[index])
                        except KeyError:
                            stack.append(self.missing(index, keep_all, src.base + pos))
                    elif op == 0x70:  # PUT
                        index = _int(text, src)
                        if keep_all or _keep(stack[-1]):
                            memo[index] = stack[-1]
                        used_put = True
                    elif op == 0x53:  # STRING: a quoted, escaped literal
                        stack.append(_string(text, src))
                    elif op == 0x56:  # UNICODE: raw-unicode-escape
                        stack.append(_unicode(text, src))
                    elif op == 0x49:  # INT (also True/False as 01/00)
                        stack.append(_int(text, src) if text not in (b"00", b"01") else ANY)
                    else:  # LONG, FLOAT, PERSID
                        stack.append(ANY)
                elif k == _K_LONG:
                    if op == 0x8A:
                        size = buf[pos]
                        pos += 1
                    else:
                        size = i4(buf, pos)[0]
                        pos += 4
                        if size < 0:
                            raise Malformed("negative LONG4 length", src.base + pos)
                    src.pos = pos
                    src.skip(size)
                    buf, pos, lim = src.buf, src.pos, src.lim
                    stack.append(ANY)
                elif k == _K_MISC:
                    if op == 0x30:  # POP: the top item, or the top mark when nothing is above it
                        if marks and marks[-1] == len(stack):
                            marks.pop()
                        else:
                            stack.pop()
                    elif op == 0x32:  # DUP
                        stack.append(stack[-1])
                    elif op in (0x31, 0x6C, 0x64, 0x91):  # POP_MARK, LIST, DICT, FROZENSET
                        mark = marks.pop()
                        del stack[mark:]
                        if op != 0x31:
                            stack.append(ANY)
                    elif op == 0x6F:  # OBJ: the first item above the mark is the class
                        mark = marks.pop()
                        fn = stack[mark]
                        del stack[mark:]
                        if type(fn) is _Global:
                            out.imports[fn.key].add("OBJ")
                        stack.append(Obj(fn))
                    elif op == 0x92:  # NEWOBJ_EX
                        del stack[-2:]
                        fn = stack[-1]
                        if type(fn) is _Global:
                            out.imports[fn.key].add("NEWOBJ_EX")
                        stack[-1] = Obj(fn)
                    elif op == 0x51:  # BINPERSID: the loader's persistent_load decides
                        stack[-1] = ANY
                    elif op == 0x97:  # NEXT_BUFFER: an out-of-band buffer
                        stack.append(ANY)
                    # READONLY_BUFFER (0x98) changes nothing we follow.
                elif k == _K_EXT:
                    width = {0x82: 1, 0x83: 2, 0x84: 4}[op]
                    code = int.from_bytes(buf[pos : pos + width], "little")
                    pos += width
                    out.issues.append(
                        (
                            "",
                            "",
                            "unknown",
                            f"extension code {code}: the class comes from the loader's copyreg "
                            "extension registry, which a static scan cannot see",
                        )
                    )
                    stack.append(ANY)
                else:
                    raise Malformed(f"invalid opcode 0x{op:02x}", src.base + pos - 1)
        except (IndexError, struct.error, KeyError) as exc:
            src.pos = min(pos, src.n)
            what = "stack underflow" if isinstance(exc, IndexError | KeyError) else "truncated"
            if isinstance(exc, IndexError) and pos >= src.n:
                what = "the stream ends before STOP"
            raise Malformed(what, src.base + min(pos, src.n) - 1) from None

    @staticmethod
    def missing(index: int, keep_all: bool, offset: int) -> Any:
        """A memo fetch of a key not kept: an error, unless the memo outgrew the cap."""
        if keep_all:
            raise Malformed(f"memo key {index} was never stored", offset)
        return _ANY

    # -- joblib --------------------------------------------------------------------------------

    def joblib_array(self, state: Any, outer: _State) -> None:
        """Step over the array data that joblib writes after a ``NumpyArrayWrapper``.

        ``joblib.load`` reads those bytes itself (``read_array``): raw data, or
        for an object dtype a nested pickle, which is walked like any other.
        ``pickle.load`` of the same file would parse the raw data as opcodes
        instead, so that reading is walked too, from a copy of the state
        (``outer``), into ``out.shadow``; benign data stops parsing at once.
        """
        src = self.src
        if type(state) is not dict:
            raise Malformed("joblib array wrapper without its metadata", src.offset)
        shape, dtype = state.get(b"shape"), state.get(b"dtype")
        size = _itemsize(dtype)
        if type(shape) is not tuple or any(type(d) is not int or d < 0 for d in shape):
            raise Malformed("joblib array of unreadable shape: cannot find the rest", src.offset)
        if size is None:
            raise Malformed("joblib array of unreadable dtype: cannot find the rest", src.offset)
        if size == 0:  # object dtype: a nested pickle follows
            nested = _Walker(src, self.out)
            nested.globals = self.globals
            nested.one()
            return
        count = 1
        for d in shape:
            count *= d
        aligned = state.get(b"numpy_array_alignment_bytes") not in (None, _ANY)
        if (  # in a buffer, the other reading costs nothing; none if it fails at once
            src.file is None
            and not self.shadow
            and src.pos < src.n
            and _KIND[src.buf[src.pos]] != _K_BAD
        ):
            self.shadow_walk(src.pos, src.pos + count * size + (256 if aligned else 0), outer)
        if aligned:
            padding = src.take(1)[0]
            src.skip(padding)
        src.skip(count * size)

    def shadow_walk(self, start: int, end: int, outer: _State) -> None:
        stack, marks, memo, mlen = outer
        src = self.src
        region = Source(src.buf, start=start, end=min(end, src.n))
        region.base = src.base
        shadow = _Walker(region, PickleScan())
        shadow.shadow = True
        try:
            shadow.one((list(stack), list(marks), _Overlay(memo), mlen))
        except Malformed:
            pass
        for key, ops in shadow.out.imports.items():
            self.out.shadow.setdefault(key, set()).update(ops)


def _itemsize(dtype: Any) -> int | None:
    """Bytes per item of a pickled ``numpy.dtype`` (0 for object dtypes), or ``None``."""
    if type(dtype) is not _Obj or type(dtype.args) is not tuple or not dtype.args:
        return None
    typestr = dtype.args[0]
    state = dtype.state
    if type(typestr) is not bytes:
        return None
    if typestr[:1] == b"O":
        return 0
    if type(state) is tuple and len(state) >= 8:
        if type(state[7]) is int and state[7] & 1:  # NPY_ITEM_REFCOUNT: holds objects
            return 0
        if type(state[5]) is int and state[5] > 0:
            return int(state[5])
    m = re.fullmatch(rb"[<>|=]?[a-zA-Z](\d+)", typestr)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def _keep(value: Any) -> bool:
    """Past the memo cap, keep only what could name an import."""
    return type(value) is _Global or (type(value) is bytes and bool(_NAMEISH.fullmatch(value)))


def _text(raw: Any) -> str:
    return bytes(raw).decode("utf-8", "replace")


def _int(text: bytes | None, src: Source) -> int:
    try:
        return int(text or b"")
    except ValueError:
        raise Malformed("not an integer argument", src.offset) from None


def _string(text: bytes | None, src: Source) -> Any:
    import codecs

    if text is None:
        return _ANY
    if len(text) < 2 or text[0] != text[-1] or text[:1] not in (b"'", b'"'):
        raise Malformed("STRING argument is not quoted", src.offset)
    try:
        return codecs.escape_decode(text[1:-1])[0]
    except ValueError:
        raise Malformed("STRING argument is not a valid literal", src.offset) from None


def _unicode(text: bytes | None, src: Source) -> Any:
    if text is None:
        return _ANY
    try:
        return text.decode("raw-unicode-escape").encode("utf-8", "surrogatepass")
    except UnicodeError:
        raise Malformed("UNICODE argument does not decode", src.offset) from None


def walk(src: Source) -> PickleScan:
    """Walk every pickle in ``src``, one after another, until the stream ends."""
    out = PickleScan()
    _Walker(src, out).run()
    return out
