"""Seed every random number generator a run is likely to use, and remember the seed."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import operator
import os
import random
import sys
from typing import Any

from mlplane.errors import InvalidInput

__all__ = ["last_seed", "seed_everything"]

_logger = logging.getLogger(__name__)

_MAX_SEED = 2**32 - 1

# The fluent API reads this to tag the next run with the seed set before it started.
_last_seed: int | None = None


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, str]:
    """Seed Python's ``random``, NumPy's global generator and, if installed, PyTorch.

    ``PYTHONHASHSEED`` is set too; it cannot change hashing in this process,
    only in the child processes it starts (data-loader workers, for instance).
    NumPy ``Generator`` objects from ``numpy.random.default_rng()`` are not
    affected: pass them the seed yourself.

    Args:
        seed: An integer in ``[0, 2**32 - 1]`` (the range NumPy accepts).
        deterministic: Also make PyTorch use deterministic algorithms (slower;
            some operations then raise instead of running nondeterministically).

    Returns:
        The tags to record on the run: ``mlplane.seed``, ``mlplane.seed.libs``
        (the libraries seeded, e.g. ``"python,numpy,torch"``) and, when
        ``deterministic`` took effect, ``mlplane.seed.deterministic``.

    Raises:
        InvalidInput: If ``seed`` is not an integer in range.
    """
    global _last_seed
    seed = _validate(seed)

    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    libs = ["python"]

    numpy = _load("numpy")
    if numpy is not None:
        numpy.random.seed(seed)
        libs.append("numpy")

    torch = _load("torch")
    deterministic_applied = False
    if torch is not None:
        try:
            _seed_torch(torch, seed, deterministic)
        except Exception as exc:
            _logger.warning("Could not seed torch (%s: %s).", type(exc).__name__, exc)
        else:
            libs.append("torch")
            deterministic_applied = deterministic

    _last_seed = seed
    tags = {"mlplane.seed": str(seed), "mlplane.seed.libs": ",".join(libs)}
    if deterministic_applied:
        tags["mlplane.seed.deterministic"] = "true"
    return tags


def last_seed() -> int | None:
    """The seed of the latest successful :func:`seed_everything` call in this process."""
    return _last_seed


def _validate(seed: Any) -> int:
    # operator.index accepts NumPy integers but not floats or strings.
    if isinstance(seed, bool):
        raise InvalidInput(f"seed must be an integer, got the boolean {seed!r}")
    try:
        value = operator.index(seed)
    except TypeError:
        raise InvalidInput(
            f"seed must be an integer in [0, {_MAX_SEED}], got {type(seed).__name__} {seed!r}"
        ) from None
    if not 0 <= value <= _MAX_SEED:
        raise InvalidInput(f"seed must be an integer in [0, {_MAX_SEED}], got {value}")
    return value


def _load(name: str) -> Any | None:
    """The module if it is installed, else ``None``, without failing on broken installs."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    if importlib.util.find_spec(name) is None:
        return None
    # Installed but not imported yet: someone who seeds with it installed will
    # almost surely use it, and its generators must be seeded before first use.
    try:
        return importlib.import_module(name)
    except Exception as exc:
        _logger.warning("Could not import %s to seed it (%s: %s).", name, type(exc).__name__, exc)
        return None


def _seed_torch(torch: Any, seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to be reproducible (CUDA >= 10.2);
        # without it use_deterministic_algorithms makes cuBLAS calls raise.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
