"""The local executor: a process pool on this machine."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from mlplane.compute._base import Executor, check_workers, default_workers
from mlplane.errors import MlplaneError

T = TypeVar("T")
R = TypeVar("R")


def _context() -> Any:
    # Never fork: the parent holds threads (Arrow's pools, SQLite, Rich) whose locks a
    # forked child would inherit mid-use. A forkserver starts once per parent and forks
    # each worker from a clean process that has imported the worker's module already.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


_setup_error: BaseException | None = None


def _init(setup: Callable[..., None] | None, *args: Any) -> None:
    # A pool whose initializer raises only reports "broken pool": keep the error and raise
    # it from the first item instead, so the caller sees what went wrong.
    global _setup_error
    if setup is not None:
        try:
            setup(*args)
        except Exception as exc:
            _setup_error = exc


def _run(fn: Callable[[T], R], item: T) -> R:
    if _setup_error is not None:
        raise _setup_error
    return fn(item)


def _set_preload(modules: Sequence[str]) -> None:
    # Imported once in the forkserver rather than once per worker: the main module (which
    # each worker would run again otherwise) and the given ones. The server lives as long
    # as this process, so this counts only before its first start.
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        list(dict.fromkeys(["__main__", *modules]))
    )


def warm_up(modules: Sequence[str]) -> None:
    """Start the forkserver now, importing ``modules`` (and the main module) while the
    caller does other work, so that a pool created soon after starts at once."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        _set_preload(modules)
        forkserver.ensure_running()


class LocalExecutor(Executor):
    """A pool of ``workers`` processes (default: the CPUs this process may use).

    Workers start from a forkserver on Linux and by spawning elsewhere, never by
    forking the caller; a pool lives for one :meth:`map` call.
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = check_workers(workers) or default_workers()

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
        ctx = _context()
        if ctx.get_start_method() == "forkserver":
            _set_preload([fn.__module__, *preload])
        limit = max(1, max_in_flight or 2 * (self.workers or 1))
        pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init, initargs=(setup, *setup_args)
        )
        running: set[Future[R]] = set()
        source = iter(items)
        failure: BaseException | None = None
        try:
            exhausted = False
            while True:
                while not exhausted and failure is None and len(running) < limit:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    running.add(pool.submit(_run, fn, item))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    exc = future.exception()
                    if exc is None:
                        yield future.result()
                    elif failure is None:
                        failure = exc
            if failure is not None:
                raise failure
        except BrokenProcessPool:
            raise MlplaneError(
                "a worker process died (killed, or out of memory: try fewer workers or "
                "smaller batches); run the same command again to resume"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
