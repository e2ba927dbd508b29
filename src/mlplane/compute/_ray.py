"""The Ray executor: one actor per worker, on a Ray cluster or a local Ray."""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from mlplane.compute._base import Executor, check_workers
from mlplane.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")

MISSING = "the ray executor needs Ray: install it with  pip install 'mlplane[ray]'"


class _Worker:
    """The actor: runs ``setup`` once when created, then ``fn`` on each item it is given."""

    def __init__(self, setup: Callable[..., None] | None, *args: Any) -> None:
        # An actor whose constructor raises dies with Ray's error; keep the real one and
        # raise it from the first item instead.
        self.error: BaseException | None = None
        if setup is not None:
            try:
                setup(*args)
            except Exception as exc:
                self.error = exc

    def run(self, fn: Callable[[Any], Any], item: Any) -> Any:
        if self.error is not None:
            raise self.error
        return fn(item)


class RayExecutor(Executor):
    """``workers`` Ray actors (default: the cluster's CPUs), one CPU each.

    With ``address`` it joins that cluster; otherwise it uses the Ray already
    initialized in this process, or starts a local one for the call (and stops
    it afterwards). On a cluster of several machines, every path the items name
    must be reachable from each node (a shared file system or object store URLs).

    Raises:
        InvalidInput: Ray is not installed (the ``ray`` extra).
    """

    name = "ray"

    def __init__(self, workers: int | None = None, *, address: str | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise InvalidInput(MISSING)
        self.workers = check_workers(workers)
        self.address = address

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
        import ray

        started = False
        if not ray.is_initialized():
            if self.address is not None:
                ray.init(address=self.address)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False)
            started = True
        actors: list[Any] = []
        try:
            if self.workers is None:
                cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
                self.workers = max(1, int(cpus))
            actor_cls = ray.remote(num_cpus=1)(_Worker)
            # Put large set-up values (a model's files) in the object store once for all actors.
            args = [ray.put(a) for a in setup_args]
            actors = [actor_cls.remote(setup, *args) for _ in range(self.workers)]
            yield from _dispatch(ray, actors, fn, items, max_in_flight or 2 * len(actors))
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()


def _dispatch(
    ray: Any, actors: list[Any], fn: Callable[[T], R], items: Iterable[T], limit: int
) -> Iterator[R]:
    """Hand items to actors, each at most ``limit // len(actors)`` deep, results as they come."""
    per_actor = max(1, limit // len(actors))
    free = deque(a for a in actors for _ in range(per_actor))
    pending: dict[Any, Any] = {}
    failure: BaseException | None = None
    source = iter(items)
    exhausted = False
    while True:
        while not exhausted and failure is None and free:
            try:
                item = next(source)
            except StopIteration:
                exhausted = True
                break
            actor = free.popleft()
            pending[actor.run.remote(fn, item)] = actor
        if not pending:
            break
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            free.append(pending.pop(ref))
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if failure is None:  # the worker's own exception, not Ray's wrapper
                    cause = getattr(exc, "cause", None)
                    failure = cause if isinstance(cause, BaseException) else exc
                continue
            except ray.exceptions.RayError as exc:  # an actor died
                if failure is None:
                    failure = exc
                continue
            yield result
    if failure is not None:
        raise failure
