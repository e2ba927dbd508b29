"""A corpus of malicious and benign model files, built in memory (never committed as binaries).

The malicious pickles are assembled opcode by opcode, so each one names
exactly the import it is about, on every platform (``pickle.dumps`` of
``os.system`` writes ``posix`` on Linux and ``nt`` on Windows). None of them
is ever loaded. The benchmark (``benchmarks/registry.py``) writes the same
corpus to disk to compare scanners.
"""

from __future__ import annotations

import io
import marshal
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# -- a tiny pickle assembler ---------------------------------------------------------------------

PROTO4 = b"\x80\x04"
MARK, STOP, POP, TUPLE, REDUCE, BUILD = b"(", b".", b"0", b"t", b"R", b"b"
EMPTY_DICT, EMPTY_TUPLE, MEMOIZE, STACK_GLOBAL = b"}", b")", b"\x94", b"\x93"


def s(text: str) -> bytes:
    """SHORT_BINUNICODE (or BINUNICODE when long)."""
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def b(raw: bytes) -> bytes:
    """BINBYTES."""
    return b"B" + struct.pack("<I", len(raw)) + raw


def glob(module: str, name: str) -> bytes:
    """A STACK_GLOBAL with literal operands, as pickle writes it."""
    return s(module) + MEMOIZE + s(name) + MEMOIZE + STACK_GLOBAL + MEMOIZE


def arg(value: Any) -> bytes:
    if isinstance(value, bytes) and value[:1] == b"\x00":  # raw opcodes, passed through
        return value[1:]
    if isinstance(value, str):
        return s(value)
    if isinstance(value, bytes):
        return b(value)
    if isinstance(value, int):
        return b"J" + struct.pack("<i", value)
    if isinstance(value, tuple):
        return MARK + b"".join(arg(v) for v in value) + TUPLE
    raise TypeError(value)


def ops(code: bytes) -> bytes:
    """Mark raw opcodes so :func:`arg` passes them through."""
    return b"\x00" + code


def call(fn: bytes, *args: Any) -> bytes:
    """``fn(*args)``: fn is opcodes that push a callable."""
    return fn + MARK + b"".join(arg(a) for a in args) + TUPLE + REDUCE


def whole(body: bytes) -> bytes:
    return PROTO4 + body + STOP


# -- malicious pickles ---------------------------------------------------------------------------

SHELL = "echo scanned-but-never-run"


def os_system() -> bytes:
    return whole(call(glob("os", "system"), SHELL))


def posix_system_dumps() -> bytes:
    """What ``pickle.dumps`` writes for a ``__reduce__`` returning ``os.system`` (on POSIX)."""
    return whole(call(glob("posix", "system"), SHELL))


def subprocess_popen() -> bytes:
    return whole(call(glob("subprocess", "Popen"), (SHELL,)))


def builtins_eval() -> bytes:
    return whole(call(glob("builtins", "eval"), f"__import__('os').system({SHELL!r})"))


def builtins_exec() -> bytes:
    return whole(call(glob("builtins", "exec"), f"import os; os.system({SHELL!r})"))


def getattr_chain() -> bytes:
    """``getattr(__import__('os'), 'system')(cmd)``."""
    os_mod = call(glob("builtins", "__import__"), "os")
    system = call(glob("builtins", "getattr"), ops(os_mod), "system")
    return whole(call(system, SHELL))


def importlib_getattr() -> bytes:
    """``getattr(importlib.import_module('os'), 'system')(cmd)``."""
    os_mod = call(glob("importlib", "import_module"), "os")
    system = call(glob("builtins", "getattr"), ops(os_mod), "system")
    return whole(call(system, SHELL))


def importlib_only() -> bytes:
    """``importlib.import_module(name)``: runs a module's top level, the only import named."""
    return whole(call(glob("importlib", "import_module"), "antigravity"))


def marshal_function() -> bytes:
    """``types.FunctionType(marshal.loads(code), {})()``: bytecode smuggled as bytes."""
    code = marshal.dumps(compile(f"__import__('os').system({SHELL!r})", "<payload>", "exec"))
    loaded = call(glob("marshal", "loads"), code)
    fn = call(glob("types", "FunctionType"), ops(loaded), ops(EMPTY_DICT))
    return whole(call(fn))


def runpy_run_code() -> bytes:
    """``runpy._run_code(source, {})``: exec of a string, without naming exec."""
    return whole(
        call(glob("runpy", "_run_code"), f"import os; os.system({SHELL!r})", ops(EMPTY_DICT))
    )


def socket_connect() -> bytes:
    return whole(call(glob("socket", "create_connection"), ("127.0.0.1", 9)))


def proto0_global() -> bytes:
    """Protocol 0: ``GLOBAL`` with the names on their own lines, string args quoted."""
    return b"cos\nsystem\n(S'" + SHELL.encode() + b"'\ntR."


def memo_stack_global() -> bytes:
    """The names are memoised first, dropped, and fetched back with ``BINGET`` later."""
    body = (
        s("os") + b"q\x00" + s("system") + b"q\x01" + POP + POP
        + s("padding") + POP
        + b"h\x00" + b"h\x01" + STACK_GLOBAL
        + MARK + s(SHELL) + TUPLE + REDUCE
    )  # fmt: skip
    return b"\x80\x02" + body + STOP


def pop_shuffle() -> bytes:
    """Decoy strings pushed last and popped: the real operands are the two under them."""
    body = (
        s("os") + s("system") + s("builtins") + s("dict") + POP + POP + STACK_GLOBAL
        + MARK + s(SHELL) + TUPLE + REDUCE
    )  # fmt: skip
    return whole(body)


def dynamic_module() -> bytes:
    """The module name is computed at load time (``str('os')``): unknown statically."""
    module = call(glob("builtins", "str"), "os")
    return whole(call(module + s("system") + STACK_GLOBAL, SHELL))


def dynamic_name() -> bytes:
    """A literal ``os`` with a computed name: denied, every name in ``os`` is."""
    name = call(glob("builtins", "str"), "system")
    return whole(call(s("os") + name + STACK_GLOBAL, SHELL))


def reexported_module() -> bytes:
    """``os.system`` reached through an allowed module that imports ``os``."""
    return whole(call(glob("joblib.numpy_pickle", "os.system"), SHELL))


def dunder_builtins() -> bytes:
    """``sklearn.base.__builtins__``: the builtins dict, through an allowed module."""
    builtins = glob("sklearn.base", "__builtins__")
    evil = call(glob("builtins", "dict.get"), ops(builtins), "eval")
    return whole(call(evil, "1+1"))


def nested_pickle() -> bytes:
    """``pickle.loads(inner)``: a second pickle a scanner of the outer one cannot see."""
    return whole(call(glob("pickle", "loads"), os_system()))


def unknown_callable() -> bytes:
    """A call to something on neither list: unknown, unsafe in strict mode."""
    return whole(call(glob("mypackage.helpers", "do_things"), "x"))


def truncated() -> bytes:
    return os_system()[:-9]


def garbled() -> bytes:
    return PROTO4 + b"\x8c\x05numpy\x94\xff\xfe" + STOP


def torch_zip(payload: bytes) -> bytes:
    """A ``torch.save``-style archive: ``archive/data.pkl`` beside raw storages."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", b"\x80\x02" + bytes(range(256)) * 4)  # looks like a pickle
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/.data/serialization_id", "1234567890")
    return out.getvalue()


def nested_zip(payload: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", "weights inside")
        zf.writestr("inner.zip", torch_zip(payload))
    return out.getvalue()


def tar_gz(payload: bytes) -> bytes:
    """A ``model.tar.gz`` as model hubs ship them, the pickle beside a config."""
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name, data in (("code/config.json", b"{}"), ("model.pkl", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Reduce:
    """An object whose ``__reduce__`` returns ``(fn, args)``: what attackers pickle."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.fn, self.args


def npy_object() -> bytes:
    import os

    import numpy as np

    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = "fine", Reduce(os.system, SHELL)
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=True)
    return out.getvalue()


def joblib_after_array(compress: int = 0) -> bytes:
    """joblib writes raw array bytes inside the pickle; the payload hides after them."""
    import os

    import joblib
    import numpy as np

    out = io.BytesIO()
    weights = np.linspace(0, 1, 4096)
    joblib.dump({"weights": weights, "hook": Reduce(os.system, SHELL)}, out, compress=compress)
    return out.getvalue()


def joblib_polyglot() -> bytes:
    """Harmless to ``joblib.load`` (the payload is uint8 array data), not to ``pickle.load``.

    A joblib array wrapper without alignment padding, whose raw bytes are
    opcodes: joblib reads them as the array, pickle parses and runs them.
    """
    hidden = proto0_global()[:-1]  # GLOBAL os.system, args, REDUCE (no STOP)
    dtype = call(glob("numpy", "dtype"), "u1", ops(b"\x89"), ops(b"\x88")) + arg(
        (3, "|", ops(b"N"), ops(b"N"), ops(b"N"), -1, -1, 0)
    )
    state = (
        EMPTY_DICT + MARK
        + s("subclass") + glob("numpy", "ndarray")
        + s("shape") + arg((len(hidden),))
        + s("order") + s("C")
        + s("dtype") + dtype + BUILD
        + s("allow_mmap") + b"\x89"
        + b"u"
    )  # fmt: skip
    wrapper = glob("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + b"\x81"
    return PROTO4 + wrapper + state + BUILD + hidden + STOP


@dataclass(frozen=True)
class Payload:
    """One malicious file: how to build it, and what a scanner should say."""

    name: str
    filename: str
    build: Callable[[], bytes]
    verdict: str  # ours, in default mode
    names: tuple[str, ...]  # module.name (or a prefix of it) the report must show


MALICIOUS: list[Payload] = [
    Payload("os.system", "os_system.pkl", os_system, "unsafe", ("os.system",)),
    Payload("posix.system (pickle.dumps)", "posix_system.pkl", posix_system_dumps, "unsafe",
            ("posix.system",)),
    Payload("subprocess.Popen", "popen.pkl", subprocess_popen, "unsafe", ("subprocess.Popen",)),
    Payload("builtins.eval", "eval.pkl", builtins_eval, "unsafe", ("builtins.eval",)),
    Payload("builtins.exec", "exec.pkl", builtins_exec, "unsafe", ("builtins.exec",)),
    Payload("getattr(__import__('os'))", "getattr.pkl", getattr_chain, "unsafe",
            ("builtins.getattr", "builtins.__import__")),
    Payload("importlib + getattr", "importlib_getattr.pkl", importlib_getattr, "unsafe",
            ("importlib.import_module",)),
    Payload("importlib.import_module only", "importlib.pkl", importlib_only, "unsafe",
            ("importlib.import_module",)),
    Payload("marshal.loads + FunctionType", "marshal.pkl", marshal_function, "unsafe",
            ("marshal.loads", "types.FunctionType")),
    Payload("runpy._run_code", "runpy.pkl", runpy_run_code, "unsafe", ("runpy._run_code",)),
    Payload("socket.create_connection", "socket.pkl", socket_connect, "unsafe",
            ("socket.create_connection",)),
    Payload("protocol 0 GLOBAL", "proto0.pkl", proto0_global, "unsafe", ("os.system",)),
    Payload("STACK_GLOBAL from the memo", "memo.pkl", memo_stack_global, "unsafe",
            ("os.system",)),
    Payload("STACK_GLOBAL behind POPped decoys", "pop_shuffle.pkl", pop_shuffle, "unsafe",
            ("os.system",)),
    Payload("STACK_GLOBAL, module built at load", "dynamic_module.pkl", dynamic_module,
            "unknown", ("?.system",)),
    Payload("STACK_GLOBAL, name built at load", "dynamic_name.pkl", dynamic_name, "unsafe",
            ("os.?",)),
    Payload("os re-exported by an allowed module", "reexport.pkl", reexported_module, "unsafe",
            ("joblib.numpy_pickle.os.system",)),
    Payload("__builtins__ of an allowed module", "dunder.pkl", dunder_builtins, "unsafe",
            ("sklearn.base.__builtins__",)),
    Payload("nested pickle.loads", "nested_loads.pkl", nested_pickle, "unsafe",
            ("pickle.loads",)),
    Payload("torch zip: archive/data.pkl", "torch_payload.pt", lambda: torch_zip(os_system()),
            "unsafe", ("os.system",)),
    Payload("nested zip", "nested.zip", lambda: nested_zip(os_system()), "unsafe",
            ("os.system",)),
    Payload(".npy object array", "object.npy", npy_object, "unsafe", ("posix.system",)),
    Payload("joblib, payload after an array", "after_array.joblib", joblib_after_array,
            "unsafe", ("posix.system",)),
    Payload("joblib, zlib-compressed", "compressed.joblib", lambda: joblib_after_array(3),
            "unsafe", ("posix.system",)),
    Payload("tar.gz model archive", "model.tar.gz", lambda: tar_gz(os_system()), "unsafe",
            ("os.system",)),
    Payload("joblib array bytes that are opcodes", "polyglot.joblib", joblib_polyglot,
            "unsafe", ("os.system",)),
    Payload("unknown callable", "unknown.pkl", unknown_callable, "unknown",
            ("mypackage.helpers.do_things",)),
]  # fmt: skip


# -- benign models --------------------------------------------------------------------------------


def _xy(n: int = 300, d: int = 8, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def sklearn_forest(n_estimators: int = 10, n: int = 300, *, noisy: bool = False) -> Any:
    """A random forest; ``noisy`` labels grow full-depth trees (a big model file)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    x, y = _xy(n)
    if noisy:
        y = np.random.default_rng(1).integers(0, 2, n)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=0, n_jobs=2)
    return model.fit(x, y)


def sklearn_pipeline() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    x, y = _xy()
    return make_pipeline(FunctionTransformer(np.abs), StandardScaler(), LogisticRegression()).fit(
        x, y
    )


def dataframe() -> Any:
    import numpy as np
    import pandas as pd

    n = 200
    return pd.DataFrame(
        {
            "x": np.arange(n, dtype=float),
            "k": np.arange(n) % 7,
            "s": [f"row-{i}" for i in range(n)],
            "c": pd.Categorical(["a", "b"] * (n // 2)),
            "t": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
        }
    )


def xgboost_model() -> Any:
    import xgboost as xgb

    x, y = _xy()
    return xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(x, y)


def lightgbm_model() -> Any:
    import lightgbm as lgb

    x, y = _xy()
    return lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)


def skops_bytes(model: Any) -> bytes:
    import skops.io as sio

    return bytes(sio.dumps(model))


def safetensors_bytes() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return bytes(save({"w": np.ones((4, 4), dtype=np.float32), "b": np.zeros(4)}))


def onnx_bytes() -> bytes:
    from skl2onnx import to_onnx

    x, y = _xy()
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(x, y)
    return bytes(to_onnx(model, x[:1].astype("float32")).SerializeToString())


def joblib_bytes(obj: Any, compress: int = 0) -> bytes:
    import joblib

    out = io.BytesIO()
    joblib.dump(obj, out, compress=compress)
    return out.getvalue()


def npy_bytes() -> bytes:
    import numpy as np

    out = io.BytesIO()
    np.save(out, np.arange(1000, dtype=np.float64).reshape(100, 10))
    return out.getvalue()


def torch_state_dict_zip() -> bytes:
    """A benign ``torch.save`` of a state dict, written the way torch writes it."""
    body = (
        glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + MEMOIZE + MARK
        + s("fc.weight")
        + glob("torch._utils", "_rebuild_tensor_v2")
        + MARK + MARK + s("storage") + glob("torch", "FloatStorage") + s("0") + s("cpu")
        + b"K\x10" + TUPLE + b"Q"  # BINPERSID
        + b"K\x00" + b"K\x04K\x04\x86" + b"K\x04K\x01\x86" + b"\x89"
        + glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
        + TUPLE + REDUCE + b"u"
    )  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", whole(body))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", bytes(64))
        zf.writestr("archive/version", "3\n")
    return out.getvalue()


def torchscript_zip() -> bytes:
    """The layout ``torch.jit.save`` writes: TorchScript code beside the pickled module."""
    body = (
        glob("__torch__.model", "Net") + EMPTY_TUPLE + b"\x81"
        + EMPTY_DICT + s("training") + b"\x88" + b"s" + BUILD
    )  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("model/data.pkl", whole(body))
        zf.writestr("model/code/__torch__/model.py", "class Net(Module):\n  training : bool\n")
        zf.writestr("model/constants.pkl", whole(EMPTY_TUPLE))
        zf.writestr("model/version", "3\n")
    return out.getvalue()


def benign() -> dict[str, Callable[[], bytes]]:
    """File name -> builder of a benign model file (slow ones train small models)."""
    import pickle

    import numpy as np

    return {
        "forest.pkl": lambda: pickle.dumps(sklearn_forest()),
        "forest.joblib": lambda: joblib_bytes(sklearn_forest()),
        "forest_zlib.joblib": lambda: joblib_bytes(sklearn_forest(), compress=3),
        "pipeline_p2.pkl": lambda: pickle.dumps(sklearn_pipeline(), protocol=2),
        "pipeline.pkl": lambda: pickle.dumps(sklearn_pipeline(), protocol=5),
        "array.pkl": lambda: pickle.dumps(np.random.default_rng(0).normal(size=(50, 4))),
        "array.npy": npy_bytes,
        "frame.pkl": lambda: pickle.dumps(dataframe()),
        "xgboost.pkl": lambda: pickle.dumps(xgboost_model()),
        "lightgbm.pkl": lambda: pickle.dumps(lightgbm_model()),
        "pipeline.skops": lambda: skops_bytes(sklearn_pipeline()),
        "weights.safetensors": safetensors_bytes,
        "model.onnx": onnx_bytes,
        "state_dict.pt": torch_state_dict_zip,
        "scripted.pt": torchscript_zip,
    }
