"""The serving benchmark's load generator: ``wrk`` with a Lua script, and who used the CPU.

``wrk`` (C, epoll, one event loop per thread) keeps a fixed number of connections busy,
each sending its next request as soon as the answer arrives (a closed loop: latency is the
time each request waited, with no correction for requests not sent while the server was
slow). The POST body goes into the Lua script as a long-bracket string whose level is
chosen so that no ``]=...=]`` inside the body can end it. The script's ``done`` hook
prints one line of JSON (requests, duration, percentiles, socket and status errors), so
nothing depends on wrk's human-readable output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MISSING = (
    "wrk is not installed; the serving benchmark needs it as its load generator:\n"
    "    apt-get update && apt-get install -y wrk      (Debian's package, wrk 4.1)"
)
PERCENTILES = (50, 75, 90, 99, 99.9)
MARK = "WRK_JSON "


def wrk_version() -> str | None:
    """wrk's version line, or None when wrk is not on the PATH."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"wrk (\S+)", out)
    return m.group(1) if m else "?"


def long_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal that nothing in it can close early."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # A newline right after the opening bracket is dropped by Lua: start with one, so a body
    # that begins with a newline keeps it.
    return f"[{eq}[\n{text}]{eq}]"


def lua_script(body: bytes, content_type: str = "application/json") -> str:
    """A wrk script that POSTs ``body`` on every request and reports in JSON when done."""
    pcts = ", ".join(
        f"string.format('\"{p}\": %.1f', latency:percentile({p}))" for p in PERCENTILES
    )
    return f"""
wrk.method = "POST"
wrk.body = {long_string(body.decode())}
wrk.headers["Content-Type"] = "{content_type}"

done = function(summary, latency, requests)
  local e = summary.errors
  local pct = table.concat({{ {pcts} }}, ", ")
  io.write(string.format(
    '\\n{MARK}{{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {{"connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d}}, "latency_us": {{"mean": %.1f, '
    .. '"max": %.1f, "stdev": %.1f, "percentiles": {{%s}}}}}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency.max, latency.stdev, pct))
end
"""


@dataclass
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    percentiles_ms: dict[str, float]
    mean_ms: float
    max_ms: float
    non_2xx: int  # wrk's status errors: answers with a status of 400 or more
    socket_errors: dict[str, int]
    wrk_cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rps,
            "percentiles_ms": self.percentiles_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "wrk_cpu_s": self.wrk_cpu_s,
            **self.extra,
        }


def run_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: float,
    threads: int | None = None,
    timeout_s: float = 10.0,
) -> Load:
    """One wrk run against ``url`` (loopback only); bounded by ``duration_s``."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"the benchmark loads loopback servers only, not {url}")
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError(MISSING)
    threads = threads or min(2, connections)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(body))
        script = f.name
    argv = [exe, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
            "--timeout", f"{timeout_s:g}s", "--latency", "-s", script, url]  # fmt: skip
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            out = proc.stdout.read().decode(errors="replace")
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.unlink(script)
    lines = [ln for ln in out.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out[-2000:]}")
    r = json.loads(lines[-1][len(MARK) :])
    lat = r["latency_us"]
    errors = r["errors"]
    return Load(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        percentiles_ms={k: v / 1000 for k, v in lat["percentiles"].items()},
        mean_ms=lat["mean"] / 1000,
        max_ms=lat["max"] / 1000,
        non_2xx=errors["status"],
        socket_errors={k: v for k, v in errors.items() if k != "status"},
        wrk_cpu_s=usage.ru_utime + usage.ru_stime,
    )


class CPUMeter:
    """CPU seconds used by each process of a server (its root process and every descendant)
    over a measurement: tells whether every worker took load."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._before: dict[int, float] = {}
        self._t0 = self._machine0 = 0.0

    def _sample(self) -> dict[int, tuple[float, str]]:
        import psutil

        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        out = {}
        for p in procs:
            try:
                t = p.cpu_times()
                out[p.pid] = (t.user + t.system, _label(p))
            except psutil.NoSuchProcess:
                pass
        return out

    def start(self) -> None:
        import psutil

        self._machine0 = _busy(psutil.cpu_times())
        self._before = {pid: cpu for pid, (cpu, _) in self._sample().items()}
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        """Per process: CPU seconds and share of one core over the measurement; ``balance``
        is the second busiest process's CPU over the busiest's (the two workers, normally);
        ``machine_busy_cores``: how many cores the whole machine kept busy meanwhile."""
        import psutil

        machine = _busy(psutil.cpu_times()) - self._machine0
        wall = time.perf_counter() - self._t0
        used: list[dict[str, Any]] = []
        for pid, (cpu, label) in self._sample().items():
            delta = cpu - self._before.get(pid, 0.0)
            used.append({"pid": pid, "process": label, "cpu_s": delta, "core_share": delta / wall})
        used.sort(key=lambda u: -u["cpu_s"])
        top = [u["cpu_s"] for u in used[:2]] + [0.0, 0.0]
        return {
            "wall_s": wall,
            "processes": used,
            "total_cpu_s": sum(u["cpu_s"] for u in used),
            "balance": (top[1] / top[0]) if top[0] > 0 else 0.0,
            "machine_busy_cores": machine / wall,
        }


def _busy(t: Any) -> float:
    """Busy CPU seconds of the whole machine (guest time is inside user already)."""
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def _label(p: Any) -> str:
    try:
        cmd = p.cmdline()
    except Exception:
        return p.name()
    words = [Path(w).name if "/" in w else w for w in cmd[:4]]
    return " ".join(words)[:60]
