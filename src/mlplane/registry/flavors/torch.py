"""PyTorch modules, saved as TorchScript; weights in safetensors when that is impossible.

torch is an optional extra: it is imported only once a model that comes from
it is being detected, saved or loaded.

The formats, in the order they are tried:

1. TorchScript (``model.pt``, format ``"torchscript"``) from ``torch.jit.script``,
   or ``torch.jit.trace`` on the input example when scripting fails. Loading
   builds the module from the file alone: no Python class, no pickle.
2. ``state_dict`` in safetensors (``model.safetensors``, format
   ``"safetensors"``) plus ``class.pkl``, a pickle holding only a reference to
   the module's class, which load calls with no arguments
   (``info["pickle"] = True``). Used when the class can be built that way and
   safetensors is installed.
3. The whole module pickled (``model.pkl``, format ``"pickle"``).

Models are loaded on the CPU. :meth:`TorchFlavor.predict` feeds floats as the
model's floating dtype (float32 unless its parameters say otherwise) and
integers as int64 (token ids), and returns the first output as a NumPy array.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import UnsafeArtifact
from mlplane.registry.flavors.base import (
    Flavor,
    comes_from,
    dump_pickle,
    load_pickle,
    qualified_name,
)

_SCRIPT_FILE = "model.pt"
_WEIGHTS_FILE = "model.safetensors"
_CLASS_FILE = "class.pkl"
_PICKLE_FILE = "model.pkl"


class TorchFlavor(Flavor):
    """``torch.nn.Module`` (including TorchScript modules)."""

    name = "torch"
    library = "torch"

    @classmethod
    def handles(cls, model: object) -> bool:
        if isinstance(model, type) or not comes_from(model, "torch"):
            return False
        import torch

        return isinstance(model, torch.nn.Module)

    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"not a torch module: {qualified_name(type(model))}")
        module_class = qualified_name(type(model))
        with _quiet():
            scripted, method, why = _to_torchscript(model, input_example)
            if scripted is not None:
                scripted.eval()
                torch.jit.save(scripted, str(folder / _SCRIPT_FILE))
        if scripted is not None:
            return self._info("torchscript", [_SCRIPT_FILE], method=method, module=module_class)
        if _weights_only_possible(model):
            import safetensors.torch

            safetensors.torch.save_model(model, str(folder / _WEIGHTS_FILE))
            dump_pickle(type(model), folder / _CLASS_FILE)
            files = [_WEIGHTS_FILE, _CLASS_FILE]
            return self._info("safetensors", files, pickle=True, module=module_class, reason=why)
        serializer = dump_pickle(model, folder / _PICKLE_FILE, cloud=True)
        return self._info(
            "pickle",
            [_PICKLE_FILE],
            pickle=True,
            module=module_class,
            serializer=serializer,
            reason=why,
        )

    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        import torch

        fmt = info.get("format")
        if fmt == "torchscript":
            with _quiet():
                model = torch.jit.load(str(folder / _SCRIPT_FILE), map_location="cpu")
        elif fmt == "safetensors":
            import safetensors.torch

            cls = load_pickle(folder / _CLASS_FILE)
            if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
                raise UnsafeArtifact(f"{_CLASS_FILE} does not name a torch module class")
            model = cls()
            safetensors.torch.load_model(model, str(folder / _WEIGHTS_FILE), device="cpu")
        else:
            model = load_pickle(folder / _PICKLE_FILE)
        model.eval()
        return model

    def predict(self, model: Any, data: pd.DataFrame | np.ndarray) -> Any:
        """Run the module on the data as one tensor; return the (first) output as an array."""
        import torch

        with torch.no_grad():
            out = model(to_tensor(model, data))
        if isinstance(out, tuple | list):
            out = out[0]
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out


def _to_torchscript(
    model: Any, input_example: pd.DataFrame | np.ndarray | None
) -> tuple[Any | None, str | None, str | None]:
    """(scripted module, "script" | "trace", why neither worked)."""
    import torch

    try:
        return torch.jit.script(model), "script", None
    except Exception as exc:  # scripting fails in many ways on unsupported Python
        why = f"torch.jit.script failed: {exc}"
    if input_example is None:
        return None, None, why + "; no input example to trace with"
    try:
        with torch.no_grad():
            return torch.jit.trace(model, to_tensor(model, input_example)), "trace", None
    except Exception as exc:
        return None, None, f"{why}; torch.jit.trace failed: {exc}"


def _weights_only_possible(model: Any) -> bool:
    """Whether safetensors is installed and the class pickles by reference and builds
    with no arguments."""
    try:
        import safetensors.torch  # noqa: F401

        pickle.dumps(type(model))
        type(model)()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TorchScript is deprecated in recent torch; we use it knowingly, so do not warn."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
        yield


def to_tensor(model: Any, data: pd.DataFrame | np.ndarray) -> Any:
    """Integers as int64, everything else as the model's floating dtype."""
    import torch

    array = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
    if array.dtype.kind in "iu":
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array.astype(np.float32)).to(_float_dtype(model))


def _float_dtype(model: Any) -> Any:
    import torch

    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32
