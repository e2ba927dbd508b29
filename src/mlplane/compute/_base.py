"""The :class:`Executor` interface."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from mlplane.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_workers(workers: int | None) -> int | None:
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be at least 1, not {workers}")
    return workers


class Executor(abc.ABC):
    """Runs ``fn`` over items on workers, each set up once, yielding results as they complete.

    ``fn``, ``setup`` and every item and result cross a process boundary: functions
    must be importable by name (module-level) and values picklable. ``setup`` runs once
    in each worker before it takes items; it usually leaves what ``fn`` needs (a loaded
    model) in a module-level variable of the worker.

    Attributes:
        name: What the executor is called on the command line.
        workers: How many workers run at once; None until known (a Ray cluster's CPUs).
    """

    name: ClassVar[str]
    workers: int | None

    @abc.abstractmethod
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        setup: Callable[..., None] | None = None,
        setup_args: tuple[Any, ...] = (),
        max_in_flight: int | None = None,
        preload: Sequence[str] = (),
    ) -> Iterator[R]:
        """``fn(item)`` for every item, in the order they complete.

        ``items`` is consumed lazily: at most ``max_in_flight`` (default twice the
        workers) are submitted and not yet yielded, so items that carry data keep
        memory bounded. ``preload`` names modules that take long to import (a model's
        library): an executor that starts workers from a template process imports them
        there once. The first exception raised by ``fn`` stops submitting, and
        is raised from the iterator once the items already running have finished;
        closing the iterator early (``break``) stops the workers too.
        """
