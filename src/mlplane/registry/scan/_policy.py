"""Which imports a model file may make: a denylist, an allowlist, and the rules between them.

An import is the ``module`` and ``name`` that a pickle's ``GLOBAL``, ``INST``
or ``STACK_GLOBAL`` hands to ``find_class``; the judgement is made on the
text alone, nothing is imported. In order:

1. Python 2 names are mapped the way the unpickler maps them
   (``__builtin__`` is ``builtins``, ``copy_reg`` is ``copyreg``).
2. Denied: ``module.name`` or one of its dotted prefixes is on the denylist
   (``os`` covers ``os.system``; ``torch.load`` covers only that name).
3. Denied: the name walks through a dunder attribute (``Cls.__init__.__globals__``,
   ``sklearn.base.__builtins__``) or through a dangerous module re-exported by
   an allowed one (``sklearn.base`` + ``os.system``): since protocol 4 the
   name may be a dotted path, resolved by ``getattr`` one step at a time.
4. Allowed: the full name is on the allowlist, or matches one of its patterns
   and is a plain (undotted) name.
5. Anything else is ``unknown`` (``unsafe`` in strict mode, which the caller applies).
"""

from __future__ import annotations

import fnmatch
import re
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from functools import lru_cache

from mlplane.registry.scan._report import Verdict


def _words(text: str) -> list[str]:
    return text.split()


_SHELL = "runs shell commands"
_PROC = "starts processes"
_NET = "opens network connections"
_CODE = "builds or runs Python code"
_IMPORT = "imports arbitrary modules"
_UNPICKLE = "nested unpickling: loads another pickle that this scan cannot see"
_FILES = "reads or writes local files"

# Deny entries match ``module.name`` exactly or as a dotted prefix.
DENY: dict[str, str] = {
    "os": "operating-system access (processes, files, environment)",
    "os.system": _SHELL,
    "os.popen": _SHELL,
    "os.execv": _PROC,
    "os.execl": _PROC,
    "os.spawnl": _PROC,
    "os.spawnv": _PROC,
    "posix": "operating-system access (processes, files, environment)",
    "posix.system": _SHELL,
    "nt": "operating-system access (processes, files, environment)",
    "nt.system": _SHELL,
    "subprocess": _PROC,
    "subprocess.Popen": _PROC,
    "subprocess.run": _PROC,
    "subprocess.call": _PROC,
    "subprocess.check_output": _PROC,
    "subprocess.getoutput": _SHELL,
    "sys": "interpreter internals (modules, hooks, exit)",
    "socket": _NET,
    "socket.create_connection": _NET,
    "shutil": "copies, moves and deletes files",
    "pty": "spawns processes on a pseudo-terminal",
    "runpy": "runs Python modules and code",
    "runpy._run_code": "runs a code object",
    "importlib": _IMPORT,
    "importlib.import_module": _IMPORT,
    "imp": _IMPORT,
    "pkgutil": "imports modules by name (pkgutil.resolve_name)",
    "zipimport": "imports code from archives",
    "marshal": "builds code objects from bytes",
    "marshal.loads": "builds code objects from bytes",
    "types": "builds functions and code objects",
    "types.CodeType": "builds code objects",
    "types.FunctionType": "builds functions from code objects",
    "pickle": _UNPICKLE,
    "_pickle": _UNPICKLE,
    "cPickle": _UNPICKLE,
    "dill": "dill rebuilds functions and code objects",
    "cloudpickle": "cloudpickle rebuilds functions and code objects",
    "joblib.load": _UNPICKLE,
    "joblib.numpy_pickle.load": _UNPICKLE,
    "builtins.eval": "evaluates Python expressions",
    "builtins.exec": "executes Python code",
    "builtins.execfile": "executes a Python file",
    "builtins.compile": "compiles Python code",
    "builtins.__import__": _IMPORT,
    "builtins.open": "opens files",
    "builtins.getattr": "reaches arbitrary attributes (getattr chains)",
    "builtins.setattr": "changes arbitrary attributes",
    "builtins.delattr": "deletes arbitrary attributes",
    "builtins.globals": "exposes a module namespace",
    "builtins.locals": "exposes a namespace",
    "builtins.vars": "exposes a namespace",
    "builtins.breakpoint": "starts a debugger",
    "builtins.input": "reads the terminal",
    "builtins.help": "starts interactive help",
    "builtins.exit": "stops the interpreter",
    "builtins.quit": "stops the interpreter",
    "builtins.apply": "calls arbitrary callables",
    "builtins.reload": _IMPORT,
    "code": "runs an interactive interpreter",
    "codeop": "compiles Python code",
    "ctypes": "calls native code",
    "_ctypes": "calls native code",
    "cffi": "calls native code",
    "webbrowser": "opens URLs in a browser",
    "requests": _NET,
    "urllib": _NET,
    "urllib2": _NET,
    "urllib3": _NET,
    "http": _NET,
    "httpx": _NET,
    "aiohttp": _NET,
    "ftplib": _NET,
    "smtplib": _NET,
    "telnetlib": _NET,
    "poplib": _NET,
    "imaplib": _NET,
    "xmlrpc": _NET,
    "socketserver": _NET,
    "ssl": _NET,
    "multiprocessing": _PROC,
    "concurrent.futures.process": _PROC,
    "asyncio": "event loop with subprocess and socket helpers",
    "asyncio.create_subprocess_shell": _SHELL,
    "asyncio.subprocess": _PROC,
    "operator.attrgetter": "reaches arbitrary attributes",
    "operator.methodcaller": "calls arbitrary methods",
    "operator.call": "calls arbitrary callables",
    "io.open": "opens files",
    "io.open_code": "opens files",
    "io.FileIO": "opens files",
    "_io": "opens files",
    "codecs.open": "opens files",
    "tempfile": _FILES,
    "pydoc": "locates objects by name and runs pagers (pydoc.locate, pydoc.pipepager)",
    "platform": "probes the system by running commands (platform.popen)",
    "pdb": "runs code under a debugger",
    "bdb": "runs code under a debugger",
    "trace": "runs code under a tracer",
    "profile": "runs code under a profiler",
    "cProfile": "runs code under a profiler",
    "timeit": "runs Python statements",
    "doctest": "runs Python code in docstrings",
    "atexit": "registers code to run at exit",
    "site": "changes the import path",
    "setuptools": "builds and installs packages",
    "distutils": "builds and installs packages",
    "pip": "installs packages",
    "logging.config": "evaluates logging configuration, can listen on a socket",
    "signal": "installs signal handlers",
    "_thread": "starts threads",
    "threading": "starts threads",
    "uuid._get_command_stdout": _PROC,
    "uuid._popen": _PROC,
    "logging.FileHandler": "creates files",
    "commands": _SHELL,
    "httplib": _NET,
    "ensurepip": "installs packages",
    "venv": "creates environments and installs packages",
    "idlelib": "runs code in IDLE's shell",
    "lib2to3": "evaluates grammar files",
    "test": "test helpers that spawn Python processes",
    "_osx_support": _SHELL,
    "_aix_support": _SHELL,
    "_pyrepl": _SHELL,
    "torch._dynamo": "evaluates guard code",
    "torch._inductor": "compiles and runs generated code",
    "torch.fx.experimental.symbolic_shapes": "evaluates expressions",
    "torch.jit.unsupported_tensor_ops": "executes code",
    "torch.utils._config_module": "evaluates configuration code",
    "torch.utils.bottleneck": "runs code under a profiler",
    "torch.utils.collect_env": _PROC,
    "torch.utils.data.datapipes.utils.decoder": "decodes with arbitrary handlers",
    "numpy.load": _UNPICKLE,
    "numpy.loadtxt": _FILES,
    "numpy.genfromtxt": _FILES,
    "numpy.fromfile": _FILES,
    "numpy.memmap": _FILES,
    "numpy.save": _FILES,
    "numpy.savez": _FILES,
    "numpy.savetxt": _FILES,
    "numpy.lib.npyio": _FILES,
    "numpy.lib._npyio_impl": _FILES,
    "numpy.lib.format": _UNPICKLE,
    "numpy.ctypeslib": "calls native code",
    "numpy.f2py": "compiles and loads native code",
    "numpy.distutils": "builds native code",
    "numpy.testing": "test helpers that run code",
    "numpy.core._ufunc_reconstruct": "returns any attribute of any module, by name",
    "numpy._core._ufunc_reconstruct": "returns any attribute of any module, by name",
    "torch.load": _UNPICKLE,
    "torch.serialization.load": _UNPICKLE,
    "torch.serialization._load": _UNPICKLE,
    "torch.storage._load_from_bytes": _UNPICKLE,
    "torch.hub": "downloads and runs code",
    "torch.package": "imports packaged Python code",
    "torch.jit.load": "loads TorchScript code",
    "torch._C._import_ir_module": "loads TorchScript code",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "pandas.read_pickle": _UNPICKLE,
    "pandas.io": _FILES,
    "pandas.eval": "evaluates expressions",
    "pandas.core.computation": "evaluates expressions",
    "sklearn.datasets": "downloads data and reads files",
    "sklearn.externals": "vendored third-party code",
    "sklearn.utils._testing": "test helpers that run code",
    "xgboost.tracker": _NET,
    "xgboost.collective": _NET,
    "xgboost.dask": "distributed computing",
    "xgboost.spark": "distributed computing",
    "xgboost.testing": "test helpers that run code",
    "lightgbm.dask": "distributed computing",
}

# Modules that an allowed module may re-export as an attribute: reaching them
# through an attribute (``sklearn.base`` + ``os.system``) is denied.
_DANGEROUS_ATTRS = frozenset(
    _words(
        "os posix nt sys subprocess builtins importlib marshal pickle socket shutil ctypes runpy "
        "pty types code eval exec compile getattr setattr open system popen"
    )
)

# Exact names that are allowed although they contain or are dunders.
_ALLOWED_DUNDERS = {
    "copyreg.__newobj__": "the pickle protocol's own constructor helper",
    "copyreg.__newobj_ex__": "the pickle protocol's own constructor helper",
    "numpy.random._pickle.__bit_generator_ctor": "numpy bit generator",
    "numpy.random._pickle.__randomstate_ctor": "numpy RandomState",
    "numpy.random._pickle.__generator_ctor": "numpy Generator",
    "pandas._libs.tslibs.nattype.__nat_unpickle": "pandas NaT",
}

_BUILTIN_DATA = _words(
    "dict list set frozenset tuple slice range complex bytearray bytes str int float bool "
    "Ellipsis NotImplemented"
)
_NUMPY_SCALARS = _words(
    "float16 float32 float64 float128 half single double longdouble int8 int16 int32 int64 "
    "uint8 uint16 uint32 uint64 intc uintc intp uintp longlong ulonglong short ushort byte "
    "ubyte bool bool_ complex64 complex128 complex256 csingle cdouble clongdouble str_ bytes_ "
    "object_ datetime64 timedelta64 void number integer floating"
)
_NUMPY_UFUNCS = _words(
    "log log1p log2 log10 exp exp2 expm1 sqrt cbrt square abs absolute fabs sign floor ceil "
    "rint trunc sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh "
    "reciprocal negative positive clip maximum minimum add subtract multiply divide"
)
_PANDAS_TOP = _words("DataFrame Series Categorical Timestamp Timedelta Period Interval NaT NA")
_PYARROW = _words(
    "_restore_array type_for_alias py_buffer chunked_array schema field table Table "
    "RecordBatch ChunkedArray"
)
_TORCH_DTYPES = _words(
    "float float16 half bfloat16 float32 float64 double int8 int16 short int32 int int64 long "
    "uint8 bool complex64 complex128 cfloat cdouble qint8 quint8 qint32 float8_e4m3fn "
    "float8_e5m2 strided sparse_coo sparse_csr contiguous_format channels_last "
    "preserve_format per_tensor_affine per_channel_affine"
)

# Allow entries: exact ``module.name``, or fnmatch patterns (with ``*``) that
# only ever match plain, undotted names.
ALLOW: dict[str, str] = {
    **{f"builtins.{n}": "built-in container or scalar" for n in _BUILTIN_DATA},
    "collections.OrderedDict": "ordered mapping",
    "collections.defaultdict": "mapping with a default factory (the factory is judged itself)",
    "collections.deque": "double-ended queue",
    "collections.Counter": "counting mapping",
    "copyreg._reconstructor": "the pickle protocol's own constructor helper",
    "_codecs.encode": "bytes of protocol 0-2 pickles",
    "codecs.encode": "bytes of protocol 0-2 pickles",
    "functools.partial": "partial application (the callable is judged itself)",
    "datetime.datetime": "date and time",
    "datetime.date": "date and time",
    "datetime.time": "date and time",
    "datetime.timedelta": "date and time",
    "datetime.timezone": "date and time",
    "decimal.Decimal": "decimal number",
    "fractions.Fraction": "fraction",
    "uuid.UUID": "UUID",
    "re._compile": "compiled regular expression",
    "numpy.core.multiarray._reconstruct": "numpy array",
    "numpy._core.multiarray._reconstruct": "numpy array",
    "numpy.core.multiarray.scalar": "numpy scalar",
    "numpy._core.multiarray.scalar": "numpy scalar",
    "numpy.core.numeric._frombuffer": "numpy array",
    "numpy._core.numeric._frombuffer": "numpy array",
    "numpy.dtype": "numpy dtype",
    "numpy.ndarray": "numpy array",
    "numpy.matrix": "numpy matrix",
    "numpy.matrixlib.defmatrix.matrix": "numpy matrix",
    "numpy.ma.core._mareconstruct": "numpy masked array",
    "numpy.ma.core.MaskedArray": "numpy masked array",
    "numpy.dtypes.*": "numpy dtype class",
    "numpy.random.mtrand.RandomState": "numpy random state",
    "numpy.random._generator.Generator": "numpy random generator",
    "numpy.random._mt19937.MT19937": "numpy bit generator",
    "numpy.random._pcg64.PCG64": "numpy bit generator",
    "numpy.random._pcg64.PCG64DXSM": "numpy bit generator",
    "numpy.random._philox.Philox": "numpy bit generator",
    "numpy.random._sfc64.SFC64": "numpy bit generator",
    "numpy.random.bit_generator.SeedSequence": "numpy seed sequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": "numpy seed sequence",
    **{f"numpy.{n}": "numpy scalar type" for n in _NUMPY_SCALARS},
    **{f"numpy.{n}": "numpy math function" for n in _NUMPY_UFUNCS},
    "scipy.sparse.*_matrix": "scipy sparse matrix",
    "scipy.sparse.*_array": "scipy sparse array",
    "sklearn.*": "scikit-learn estimator or helper",
    "xgboost.*": "XGBoost model",
    "lightgbm.*": "LightGBM model",
    "pandas.core.*": "pandas frame, index or block",
    "pandas._libs.*": "pandas internals",
    "pandas.arrays.*": "pandas extension array",
    "pandas.*Index": "pandas index",
    "pandas.*Dtype": "pandas dtype",
    **{f"pandas.{n}": "pandas data" for n in _PANDAS_TOP},
    **{f"pyarrow.lib.{n}": "Arrow array or type" for n in _PYARROW},
    "joblib.numpy_pickle.NumpyArrayWrapper": "joblib array placeholder",
    "torch._utils._rebuild_*": "PyTorch tensor",
    "torch._tensor._rebuild_from_type_v2": "PyTorch tensor subclass",
    "torch._tensor._rebuild_from_type": "PyTorch tensor subclass",
    "torch.*Storage": "PyTorch storage",
    "torch.storage.UntypedStorage": "PyTorch storage",
    "torch.storage.TypedStorage": "PyTorch storage",
    "torch.serialization._get_layout": "PyTorch tensor layout",
    "torch.Size": "PyTorch shape",
    "torch.device": "PyTorch device",
    "torch.nn.*": "PyTorch module",
    "__torch__.*": "TorchScript class, resolved by torch.jit.load, never imported",
    "torch.jit._pickle.*": "TorchScript container helper",
    **{f"torch.{n}": "PyTorch dtype, layout or memory format" for n in _TORCH_DTYPES},
    **_ALLOWED_DUNDERS,
}

_ALLOW_EXACT = {k: v for k, v in ALLOW.items() if "*" not in k}
_ALLOW_PATTERNS = [(re.compile(fnmatch.translate(k)), v) for k, v in ALLOW.items() if "*" in k]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _py3(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names to Python 3 ones, as the unpickler's ``fix_imports`` does."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


def _denied(full: str) -> str | None:
    probe = full
    while True:
        reason = DENY.get(probe)
        if reason is not None:
            return reason
        cut = probe.rfind(".")
        if cut < 0:
            return None
        probe = probe[:cut]


@lru_cache(maxsize=8192)
def judge(module: str, name: str) -> tuple[Verdict, str]:
    """The verdict on importing ``name`` from ``module``, and why.

    Args:
        module: The module name, as written in the pickle.
        name: The attribute name (a dotted path since protocol 4).

    Returns:
        ``(verdict, reason)``; the reason starts with the judged ``module.name``.
    """
    module, name = _py3(module, name)
    full = f"{module}.{name}"
    reason = _denied(full)
    if reason is not None:
        return "unsafe", f"{full}: {reason}"
    if not (_IDENT.fullmatch(module) and _IDENT.fullmatch(name)):
        return "unknown", f"{full!r}: not a valid import path"
    if full in _ALLOW_EXACT:
        return "safe", f"{full}: {_ALLOW_EXACT[full]}"
    parts = name.split(".")
    for part in parts:
        if part.startswith("__") and not (len(parts) == 1 and part.startswith("__pyx_unpickle_")):
            return "unsafe", f"{full}: reaches interpreter internals through {part}"
        if part in _DANGEROUS_ATTRS:
            return "unsafe", f"{full}: reaches {part} through an attribute of {module}"
    if len(parts) == 1:  # Cython's __pyx_unpickle_X only rebuilds an X, the type is judged apart
        for pattern, why in _ALLOW_PATTERNS:
            if pattern.match(full):
                return "safe", f"{full}: {why}"
    return "unknown", f"{full}: not on the allowlist"


def judge_partial(module: str | None, name: str | None) -> tuple[Verdict, str]:
    """The verdict on a ``STACK_GLOBAL`` whose module or name is built at load time.

    Denied when the module is known and every name in it is denied (``os``);
    otherwise ``unknown``: a name that cannot be read statically is itself a
    red flag, since benign picklers always write literal strings.
    """
    shown = f"{module or '?'}.{name or '?'}"
    if module is not None:
        mod, _ = _py3(module, name or "_")
        reason = DENY.get(mod)
        if reason is None and "." in mod:
            reason = _denied(mod)
        if reason is not None:
            return "unsafe", f"{shown}: {reason} (name built at load time)"
    return "unknown", f"{shown}: import name built at load time, cannot be checked statically"
