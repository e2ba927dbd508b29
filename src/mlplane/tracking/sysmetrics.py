"""Sample system metrics (CPU, memory, disk, network, NVIDIA GPUs) while a run is active.

The sampler only reads; what to do with a reading is the caller's ``log``
callback, which turns points into metrics with its own step counter.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from mlplane.errors import InvalidInput

__all__ = ["NvmlGpus", "SystemMetricsSampler"]

_logger = logging.getLogger(__name__)

_MB = 1024 * 1024

LogPoints = Callable[[list[tuple[str, float]], int], None]


class NvmlGpus:
    """NVIDIA GPUs read through NVML (the ``pynvml`` module of nvidia-ml-py).

    Build it with :meth:`open`, which returns ``None`` wherever NVML is not
    usable (package missing, no driver, no GPU), so callers never need to
    catch NVML errors themselves.
    """

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles
        self._closed = False

    @classmethod
    def open(cls, nvml: Any | None = None) -> NvmlGpus | None:
        """Initialise NVML and return the GPUs, or ``None`` when NVML is unusable.

        Args:
            nvml: An object with the ``pynvml`` API; defaults to the installed
                ``pynvml`` module. Tests pass a stand-in here.
        """
        if nvml is None:
            nvml = _import_pynvml()
            if nvml is None:
                return None
        try:
            nvml.nvmlInit()
        except Exception:
            # The usual case on machines without an NVIDIA driver.
            return None
        try:
            count = nvml.nvmlDeviceGetCount()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:
            _shutdown(nvml)
            return None
        return cls(nvml, handles)

    @property
    def count(self) -> int:
        """Number of GPUs NVML sees."""
        return len(self._handles)

    def names(self) -> list[str]:
        """Product names of the GPUs, e.g. ``"NVIDIA H200"``; ``"unknown"`` where unreadable."""
        names = []
        for handle in self._handles:
            try:
                name = self._nvml.nvmlDeviceGetName(handle)
            except Exception:
                name = "unknown"
            # Older nvidia-ml-py releases return bytes.
            names.append(name.decode(errors="replace") if isinstance(name, bytes) else str(name))
        return names

    def sample(self) -> list[tuple[str, float]]:
        """Read utilisation, memory, power and temperature of every GPU.

        A reading the GPU does not support (power on some boards, for
        instance) is left out rather than failing the others.
        """
        nvml = self._nvml
        points: list[tuple[str, float]] = []
        for i, handle in enumerate(self._handles):
            prefix = f"system/gpu_{i}_"
            try:
                points.append(
                    (
                        prefix + "utilization_percentage",
                        float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    )
                )
            except Exception:
                pass
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                points.append((prefix + "memory_usage_megabytes", memory.used / _MB))
                if memory.total:
                    points.append(
                        (prefix + "memory_usage_percentage", 100.0 * memory.used / memory.total)
                    )
            except Exception:
                pass
            try:
                milliwatts = nvml.nvmlDeviceGetPowerUsage(handle)
                points.append((prefix + "power_usage_watts", milliwatts / 1000.0))
            except Exception:
                pass
            try:
                celsius = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                points.append((prefix + "temperature_celsius", float(celsius)))
            except Exception:
                pass
        return points

    def close(self) -> None:
        """Release NVML; idempotent."""
        if not self._closed:
            self._closed = True
            _shutdown(self._nvml)


def _import_pynvml() -> Any | None:
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        import pynvml
    except Exception:
        return None
    return pynvml


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def _cpu_busy_and_total(times: Any) -> tuple[float, float]:
    # Same accounting as psutil.cpu_percent; we keep our own baseline because
    # psutil's is shared by every caller in the thread.
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


_UNOPENED: Any = object()


class SystemMetricsSampler:
    """Read system metrics every ``interval_s`` seconds on a daemon thread.

    Example::

        sampler = SystemMetricsSampler(lambda points, ts: ..., interval_s=10).start()
        ...
        sampler.stop()

    Args:
        log: Called as ``log(points, timestamp_ms)`` after each reading, on
            the sampler thread. Its exceptions are logged once and swallowed.
        interval_s: Seconds between readings; the first comes after one interval.
        pid: Process whose resident memory (with its children) is reported;
            defaults to the current process.
        gpus: GPU reader to use, owned by the caller (``None``: report no
            GPU). By default NVML is opened on the first reading and
            released by :meth:`stop`.
    """

    def __init__(
        self,
        log: LogPoints,
        *,
        interval_s: float = 10.0,
        pid: int | None = None,
        gpus: NvmlGpus | None = _UNOPENED,
    ) -> None:
        if interval_s <= 0:
            raise InvalidInput(f"interval_s must be positive, got {interval_s!r}")
        self._log = log
        self._interval_s = float(interval_s)
        self._pid = os.getpid() if pid is None else pid
        self._gpus = gpus
        self._owns_gpus = gpus is _UNOPENED
        try:
            self._disk_path = os.getcwd()
        except OSError:  # the working directory was deleted
            self._disk_path = os.path.abspath(os.sep)
        self._cpu_last = _cpu_busy_and_total(psutil.cpu_times())
        self._net_start: tuple[int, int] | None = None
        try:
            net = psutil.net_io_counters()
        except Exception:  # e.g. /proc/net/dev unreadable in a sandbox
            net = None
        if net is not None:
            self._net_start = (net.bytes_recv, net.bytes_sent)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    def start(self) -> SystemMetricsSampler:
        """Start the sampling thread (no-op when it is running) and return ``self``."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop_event,), name="mlplane-sysmetrics", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling and wait for the thread; idempotent.

        Returns as soon as the thread finishes, at most ``timeout_s`` later (a
        ``log`` callback stuck on the network must not hang the caller; the
        thread is a daemon, so it cannot keep the process alive).
        """
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._thread = None
        if self._owns_gpus:
            with self._lock:
                if isinstance(self._gpus, NvmlGpus):
                    self._gpus.close()
                self._gpus = _UNOPENED

    def __enter__(self) -> SystemMetricsSampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def sample(self) -> list[tuple[str, float]]:
        """Take one reading now; usable without starting the thread.

        Each group of readings (CPU, memory, process, disk, network, GPU) is
        taken on its own, so one that fails is left out with a warning logged
        once, and the others still come back.
        """
        readers: tuple[Callable[[], list[tuple[str, float]]], ...] = (
            self._cpu,
            self._memory,
            self._process,
            self._disk,
            self._network,
            self._gpu,
        )
        points: list[tuple[str, float]] = []
        with self._lock:
            for read in readers:
                try:
                    points.extend(read())
                except Exception as exc:
                    self._warn_once(read.__name__.lstrip("_"), exc)
        return points

    def _run(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self._interval_s):
            try:
                points = self.sample()
                self._log(points, int(time.time() * 1000))
            except Exception as exc:
                # A metrics hiccup must never take the user's training down.
                self._warn_once("log", exc)

    def _warn_once(self, what: str, exc: Exception) -> None:
        if what not in self._warned:
            self._warned.add(what)
            _logger.warning(
                "System metrics: %s failed (%s: %s); further failures are not reported.",
                what,
                type(exc).__name__,
                exc,
            )

    def _cpu(self) -> list[tuple[str, float]]:
        busy, total = _cpu_busy_and_total(psutil.cpu_times())
        last_busy, last_total = self._cpu_last
        self._cpu_last = (busy, total)
        elapsed = total - last_total
        percent = 100.0 * (busy - last_busy) / elapsed if elapsed > 0 else 0.0
        return [("system/cpu_utilization_percentage", min(max(percent, 0.0), 100.0))]

    def _memory(self) -> list[tuple[str, float]]:
        memory = psutil.virtual_memory()
        # total - available matches how psutil computes ``percent``.
        return [
            ("system/memory_usage_megabytes", (memory.total - memory.available) / _MB),
            ("system/memory_usage_percentage", float(memory.percent)),
        ]

    def _process(self) -> list[tuple[str, float]]:
        process = psutil.Process(self._pid)
        rss = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except psutil.Error:  # the child ended meanwhile
                pass
        return [("system/process_memory_rss_megabytes", rss / _MB)]

    def _disk(self) -> list[tuple[str, float]]:
        usage = psutil.disk_usage(self._disk_path)
        return [
            ("system/disk_usage_percentage", float(usage.percent)),
            ("system/disk_available_megabytes", usage.free / _MB),
        ]

    def _network(self) -> list[tuple[str, float]]:
        net = psutil.net_io_counters()
        if net is None or self._net_start is None:  # no network interfaces
            return []
        received, sent = self._net_start
        return [
            ("system/network_receive_megabytes", (net.bytes_recv - received) / _MB),
            ("system/network_transmit_megabytes", (net.bytes_sent - sent) / _MB),
        ]

    def _gpu(self) -> list[tuple[str, float]]:
        if self._gpus is _UNOPENED:
            self._gpus = NvmlGpus.open()
        return self._gpus.sample() if self._gpus is not None else []
