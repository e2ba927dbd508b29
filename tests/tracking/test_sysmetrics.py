from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from mlplane.errors import InvalidInput
from mlplane.tracking.sysmetrics import NvmlGpus, SystemMetricsSampler

HOST_KEYS = {
    "system/cpu_utilization_percentage",
    "system/memory_usage_megabytes",
    "system/memory_usage_percentage",
    "system/process_memory_rss_megabytes",
    "system/disk_usage_percentage",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
}
GPU_SUFFIXES = (
    "utilization_percentage",
    "memory_usage_megabytes",
    "memory_usage_percentage",
    "power_usage_watts",
    "temperature_celsius",
)


class FakeNvml:
    """The slice of the pynvml API the sampler uses, for two GPUs.

    The real NVML needs an NVIDIA driver; the tests must run without one.
    """

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *, fail_init: bool = False, power_supported: bool = True) -> None:
        self.fail_init = fail_init
        self.power_supported = power_supported
        self.initialised = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return b"NVIDIA A100" if handle == 0 else "NVIDIA H200"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=40 + handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=4 * 2**30, total=16 * 2**30, free=12 * 2**30)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if not self.power_supported:
            raise RuntimeError("Not Supported")
        return 250_500

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 61


def test_sample_reports_host_metrics_in_sane_ranges() -> None:
    sampler = SystemMetricsSampler(lambda points, ts: None, gpus=None)
    sampler.sample()  # the first CPU reading covers a near-zero interval
    points = dict(sampler.sample())

    assert points.keys() == HOST_KEYS
    for key in (
        "system/cpu_utilization_percentage",
        "system/memory_usage_percentage",
        "system/disk_usage_percentage",
    ):
        assert 0.0 <= points[key] <= 100.0, key
    assert points["system/memory_usage_megabytes"] > 0
    assert points["system/process_memory_rss_megabytes"] > 1
    assert points["system/disk_available_megabytes"] >= 0
    assert points["system/network_receive_megabytes"] >= 0
    assert points["system/network_transmit_megabytes"] >= 0


def test_without_a_gpu_the_gpu_readings_are_absent() -> None:
    # On this machine NVML is installed but cannot initialise; elsewhere skip.
    gpus = NvmlGpus.open()
    if gpus is not None:
        gpus.close()
        pytest.skip("an NVIDIA GPU is present")
    sampler = SystemMetricsSampler(lambda points, ts: None)
    assert not [key for key, _ in sampler.sample() if key.startswith("system/gpu_")]
    sampler.stop()


def test_gpu_readings() -> None:
    nvml = FakeNvml()
    gpus = NvmlGpus.open(nvml)
    assert gpus is not None
    assert gpus.count == 2
    assert gpus.names() == ["NVIDIA A100", "NVIDIA H200"]

    points = dict(SystemMetricsSampler(lambda p, t: None, gpus=gpus).sample())

    for i in (0, 1):
        for suffix in GPU_SUFFIXES:
            assert f"system/gpu_{i}_{suffix}" in points
    assert points["system/gpu_1_utilization_percentage"] == 41.0
    assert points["system/gpu_0_memory_usage_megabytes"] == 4096.0
    assert points["system/gpu_0_memory_usage_percentage"] == 25.0
    assert points["system/gpu_0_power_usage_watts"] == 250.5
    assert points["system/gpu_0_temperature_celsius"] == 61.0

    gpus.close()
    gpus.close()
    assert nvml.initialised == 0


def test_unsupported_gpu_reading_is_left_out() -> None:
    gpus = NvmlGpus.open(FakeNvml(power_supported=False))
    assert gpus is not None
    keys = {key for key, _ in gpus.sample()}
    assert "system/gpu_0_power_usage_watts" not in keys
    assert "system/gpu_0_temperature_celsius" in keys


def test_nvml_that_cannot_initialise_gives_no_gpus() -> None:
    assert NvmlGpus.open(FakeNvml(fail_init=True)) is None


def test_thread_logs_with_increasing_timestamps() -> None:
    calls: list[tuple[list[tuple[str, float]], int]] = []
    ticked = threading.Event()

    def log(points: list[tuple[str, float]], timestamp_ms: int) -> None:
        calls.append((points, timestamp_ms))
        if len(calls) >= 3:
            ticked.set()

    sampler = SystemMetricsSampler(log, interval_s=0.05, gpus=None).start()
    assert ticked.wait(2.0)
    sampler.stop()
    count = len(calls)
    time.sleep(0.12)

    assert len(calls) == count  # nothing after stop
    timestamps = [ts for _, ts in calls]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] < timestamps[-1]
    assert abs(timestamps[-1] - time.time() * 1000) < 5_000
    assert {key for key, _ in calls[0][0]} == HOST_KEYS


def test_stop_is_prompt_and_idempotent() -> None:
    sampler = SystemMetricsSampler(lambda p, t: None, interval_s=3600, gpus=None)
    sampler.stop()  # before start
    with sampler:
        pass
    started = time.monotonic()
    sampler.start()
    sampler.stop()
    sampler.stop()
    assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name == "mlplane-sysmetrics"]


def test_failing_callback_warns_once_and_keeps_sampling(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    ticked = threading.Event()

    def log(points: list[tuple[str, float]], timestamp_ms: int) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            ticked.set()
        raise ConnectionError("server down")

    with caplog.at_level(logging.WARNING, logger="mlplane.tracking.sysmetrics"):
        sampler = SystemMetricsSampler(log, interval_s=0.02, gpus=None).start()
        assert ticked.wait(2.0)
        sampler.stop()

    warnings = [r for r in caplog.records if "server down" in r.getMessage()]
    assert len(warnings) == 1


def test_failing_reading_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    sampler = SystemMetricsSampler(lambda p, t: None, pid=2**22 + 12345, gpus=None)
    with caplog.at_level(logging.WARNING, logger="mlplane.tracking.sysmetrics"):
        first = dict(sampler.sample())
        sampler.sample()

    assert "system/process_memory_rss_megabytes" not in first
    assert "system/cpu_utilization_percentage" in first
    assert len([r for r in caplog.records if "process" in r.getMessage()]) == 1


def test_interval_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="interval_s"):
        SystemMetricsSampler(lambda p, t: None, interval_s=0)
