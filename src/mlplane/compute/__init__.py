"""Compute: executors that run a function over many items on worker processes.

``LocalExecutor`` runs them in a process pool on this machine (the default);
``RayExecutor`` runs them on Ray actors, on a cluster (``address``) or on a
local Ray started for the call. Both set each worker up once (load a model,
open a connection) before it takes items, and yield results as they complete.
"""

from __future__ import annotations

from mlplane.compute._base import Executor, default_workers
from mlplane.compute._local import LocalExecutor
from mlplane.compute._ray import RayExecutor
from mlplane.errors import InvalidInput

EXECUTORS = ("local", "ray")


def make_executor(kind: str, workers: int | None = None, *, address: str | None = None) -> Executor:
    """The executor named ``kind`` (``local`` or ``ray``) with ``workers`` workers.

    Args:
        kind: ``local`` (a process pool here) or ``ray``.
        workers: Worker processes; default the CPUs here (local) or in the Ray cluster.
        address: Ray only: the cluster to join (``ray://…`` or ``host:port``, or ``auto``);
            default a local Ray started for the call.

    Raises:
        InvalidInput: An unknown kind, fewer than one worker, or an address for ``local``.
    """
    if kind == "local":
        if address is not None:
            raise InvalidInput("an address is for the ray executor; the local one runs here")
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address=address)
    raise InvalidInput(f"unknown executor {kind!r}: use one of {', '.join(EXECUTORS)}")


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "default_workers",
    "make_executor",
]
