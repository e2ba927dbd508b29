"""Static security scan of model files: what a file would import, judged without loading it.

A pickle can run any code when it is loaded, so the registry scans every
file of a model version at registration. Nothing is ever unpickled or
imported from a file: the scan reads bytes and judges names.

How it works:

* **Formats by their first bytes.** Zip archives (``torch.save`` files,
  ``.npz``, skops, Keras, any ``.zip``) are opened member by member, nested
  archives up to :data:`MAX_DEPTH` deep; NumPy ``.npy`` files are read up to
  their header, and an object array's pickle after it is walked; zlib, gzip,
  bz2 and xz streams (joblib's compressors) are decompressed as they are read;
  safetensors, ONNX, GGUF and HDF5 are recognised and ``safe`` (no code runs
  when they load); anything else is walked as a pickle and counts as one only
  if it parses as one, so a text file is ``safe``: not a code-carrying format.
* **Pickles opcode by opcode** (``_pickle``): a small abstract machine keeps
  the unpickler's stack and memo with just enough values (strings, ints,
  tuples) to resolve every ``GLOBAL``, ``INST`` and ``STACK_GLOBAL`` exactly,
  including names fetched back from the memo or shuffled with ``POP`` and
  ``DUP``. A ``STACK_GLOBAL`` whose operands are not literal strings is a
  finding itself: benign picklers never build names at load time. Several
  pickles one after another are all read; joblib's raw array data is
  stepped over as ``joblib.load`` steps over it, and also read as opcodes,
  as ``pickle.load`` would read it, so an array that is a payload is caught.
* **Imports judged by policy** (``_policy``): a denylist (``os``,
  ``subprocess``, ``builtins.eval``, ``importlib``, ``marshal``, ``types``,
  nested loaders...), then an allowlist of what real models need (containers,
  numpy, scipy.sparse, scikit-learn, PyTorch tensors and modules, XGBoost,
  LightGBM, pandas); dunder attribute paths and dangerous modules reached
  through an allowed one are denied. The rest is ``unknown`` (``unsafe`` in
  strict mode). A report's verdict is the worst of its findings.
* **Bounded memory, and fast.** Files are memory-mapped and payloads (tensor
  bytes, long strings, joblib arrays) are stepped over without being read;
  compressed members are streamed a window at a time.

Limits: a scan judges names, not behaviour: an allowed callable that is
harmful with crafted arguments is not caught, and the allowlist trusts whole
packages (``sklearn.*``, ``xgboost.*``). The second reading of joblib array
data is done only for uncompressed data (``pickle.load`` cannot read a
compressed file anyway). The copyreg extension registry (``EXT1``-``EXT4``)
and ``persistent_load`` ids are resolved by the loader, so they are reported,
not judged. lz4-compressed joblib files are ``unknown``. TorchScript archives
are ``safe`` (their ``code/`` is TorchScript, compiled by ``torch.jit.load``,
not Python; their pickles are scanned); Keras Lambda layers are ``unknown``.
Neither is analysed further.
"""

from __future__ import annotations

from mlplane.registry.scan._policy import ALLOW, DENY, judge
from mlplane.registry.scan._report import Finding, ScanReport, Verdict
from mlplane.registry.scan._scanner import MAX_DEPTH, scan_bytes, scan_path

__all__ = [
    "ALLOW",
    "DENY",
    "MAX_DEPTH",
    "Finding",
    "ScanReport",
    "Verdict",
    "judge",
    "scan_bytes",
    "scan_path",
]
