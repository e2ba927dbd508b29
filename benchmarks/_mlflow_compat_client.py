"""The stock-client workload of ``benchmarks/mlflow_compat.py``, run inside MLflow's virtualenv.

    python _mlflow_compat_client.py '{"uri": "http://127.0.0.1:P", "runs": 200, ...}'

Only the standard library and MLflow's own ``MlflowClient`` are used, and the
script does not know which server it talks to: the benchmark runs it unchanged
against MLflow's server and against ``mlplane server``. It prints one JSON line:
the time of each part, then what it read back for the correctness checks. If a
call fails, the JSON names the part, the call and the server's answer.

    python _mlflow_compat_client.py --serve-canned ANSWER.json

is the ceiling's server (see :func:`serve_canned`): it prints its port, then answers every
search with the bytes of ``ANSWER.json`` and does nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_TS = 1_795_000_000_000  # fixed epoch-ms: both servers receive identical rows
SEARCH_FILTER = "metrics.m0 > 0.5"


def value(run: int, key: int, step: int) -> float:
    """Metric ``m{key}`` of run number ``run`` at ``step``; deterministic, in [0, 1)."""
    return ((run * 7919 + key * 104_729 + step * 31) % 10_007) / 10_007


def single_value(run: int, i: int) -> float:
    return ((run * 131 + i * 17) % 1009) / 1009


def params_of(run: int, n: int) -> dict[str, str]:
    return {f"p{k}": f"{(run * 13 + k) % 97}" for k in range(n)}


def expected_matches(runs: int, steps: int) -> list[str]:
    """Run names ``SEARCH_FILTER`` must return: ``m0`` at its last step above 0.5."""
    return [f"run-{r:03d}" for r in range(runs) if value(r, 0, steps - 1) > 0.5]


def _client_parse_seconds(data: bytes) -> float:
    """What the stock client does with a search answer after reading it (``RestStore``):
    JSON, then protobuf, then MLflow's ``Run`` objects."""
    from mlflow.entities import Run
    from mlflow.protos.service_pb2 import SearchRuns
    from mlflow.utils.proto_json_utils import parse_dict

    t0 = time.perf_counter()
    msg = SearchRuns.Response()
    parse_dict(json.loads(data), msg)
    [Run.from_proto(r) for r in msg.runs]
    return time.perf_counter() - t0


class CallFailed(Exception):
    """A client call failed; carries the part of the workload and the call."""

    def __init__(self, part: str, call: str, exc: BaseException) -> None:
        super().__init__(f"{part}: {call}: {type(exc).__name__}: {exc}")
        self.part, self.call, self.exc = part, call, exc


class Workload:
    """The workload against one server, one part at a time."""

    def __init__(self, a: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        self.a = a
        self.c = MlflowClient(a["uri"])
        self.part = "setup"
        self.run_ids: list[str] = []
        self.experiment_id = ""
        self.out: dict[str, Any] = {"timings": {}, "checks": {}}
        self.answer = b""  # the last plain search's answer, as the server sent it
        self.raw_conn: Any = None  # the plain searches' kept-alive connection

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise CallFailed(self.part, name, exc) from exc

    def timed(self, part: str) -> _Timer:
        self.part = part
        return _Timer(self.out["timings"], part)

    # -- the timed parts ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """A few cheap calls first: each server worker's first requests are slower."""
        self.part = "warm-up"
        for _ in range(4):
            self.call("search_experiments", self.c.search_experiments, max_results=1)

    def create_runs(self) -> None:
        from mlflow.entities import Param

        a, c = self.a, self.c
        self.experiment_id = self.call("create_experiment", c.create_experiment, a["experiment"])
        for r in range(a["runs"]):
            run = self.call(
                "create_run",
                c.create_run,
                self.experiment_id,
                run_name=f"run-{r:03d}",
                start_time=BASE_TS + r,
            )
            rid = run.info.run_id
            self.run_ids.append(rid)
            params = [Param(k, v) for k, v in params_of(r, a["params"]).items()]
            self.call("log_batch(params)", c.log_batch, rid, params=params)

    def log_batches(self) -> int:
        """``keys`` metrics x ``steps`` steps per run, ``batch`` points per call, step-major."""
        from mlflow.entities import Metric

        a, c, calls = self.a, self.c, 0
        for r, rid in enumerate(self.run_ids):
            pts = [
                Metric(f"m{k}", value(r, k, s), BASE_TS + s, s)
                for s in range(a["steps"])
                for k in range(a["keys"])
            ]
            for i in range(0, len(pts), a["batch"]):
                self.call("log_batch(metrics)", c.log_batch, rid, metrics=pts[i : i + a["batch"]])
                calls += 1
        return calls

    def log_singles(self) -> None:
        c = self.c
        for r, rid in enumerate(self.run_ids):
            for i in range(self.a["singles"]):
                self.call(
                    "log_metric",
                    c.log_metric,
                    rid,
                    "single",
                    single_value(r, i),
                    timestamp=BASE_TS + i,
                    step=i,
                )

    def log_artifact(self) -> None:
        self.call("log_artifact", self.c.log_artifact, self.run_ids[0], self.a["artifact"])

    def search(self) -> dict[str, Any]:
        """All pages of the filtered search, as the client pages."""
        names: list[str] = []
        token, pages = None, 0
        while True:
            page = self.call(
                "search_runs",
                self.c.search_runs,
                [self.experiment_id],
                SEARCH_FILTER,
                max_results=self.a["max_results"],
                page_token=token,
            )
            names += [run.info.run_name for run in page]
            pages += 1
            token = page.token
            if not token:
                return {"names": names, "pages": pages}

    def search_raw(self) -> tuple[float, float]:
        """The same search as one plain HTTP exchange, the answer read but not turned into
        MLflow objects: the server's share of ``search``, without the client's protobuf
        parsing (which costs the same whichever server answered), and then the time that
        parsing takes on this answer. One kept-alive connection, as the stock client keeps
        its own: a fresh connection per request may land on a server worker that has not
        searched yet, and would time that worker's first search instead (MLflow runs 4)."""
        import http.client
        from urllib.parse import urlsplit

        body = json.dumps(
            {
                "experiment_ids": [self.experiment_id],
                "filter": SEARCH_FILTER,
                "max_results": self.a["max_results"],
                "run_view_type": "ACTIVE_ONLY",
            }
        ).encode()
        uri = urlsplit(self.a["uri"])
        if self.raw_conn is None:
            self.raw_conn = http.client.HTTPConnection(uri.hostname, uri.port, timeout=120)
        path = uri.path.rstrip("/") + "/api/2.0/mlflow/runs/search"
        headers = {"Content-Type": "application/json"}
        t0 = time.perf_counter()
        self.raw_conn.request("POST", path, body, headers)
        resp = self.raw_conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise CallFailed(self.part, "runs/search (plain POST)", RuntimeError(data[:2000]))
        self.answer = data
        return elapsed, _client_parse_seconds(data)

    def search_floor(self, answer: bytes) -> list[float]:
        """The same ``search_runs`` call, by the same client, against a server that does no
        work: it answers with ``answer``'s bytes, read from memory, whatever was asked. What
        is left is the client's own cost (the request, reading and parsing the answer), below
        which no server answering those bytes can take it. One untimed call first, to open
        the connection, as the workload's own searches find it open."""
        from mlflow import MlflowClient

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "answer.json"
            path.write_bytes(answer)
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve-canned", str(path)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                client = MlflowClient(f"http://127.0.0.1:{int(server.stdout.readline())}")
                times = []
                for _ in range(1 + self.a["search_repeats"]):
                    t0 = time.perf_counter()
                    page = self.call(
                        "search_runs (no-work server)",
                        client.search_runs,
                        [self.experiment_id],
                        SEARCH_FILTER,
                        max_results=self.a["max_results"],
                    )
                    times.append(time.perf_counter() - t0)
                    if page.token:
                        raise RuntimeError("the canned answer has a next page: one page only")
                return times[1:]
            finally:
                server.terminate()
                server.wait()

    # -- read back (untimed) --------------------------------------------------------------------

    def read_back(self) -> None:
        a, c, checks = self.a, self.c, self.out["checks"]
        self.part = "read back"
        count, token, pages = 0, None, 0
        while True:  # all runs, in small pages, so the servers' paging is checked too
            page = self.call(
                "search_runs",
                c.search_runs,
                [self.experiment_id],
                "",
                max_results=a["check_page"],
                page_token=token,
            )
            count += len(page)
            pages += 1
            token = page.token
            if not token:
                break
        checks["run_count"], checks["run_count_pages"] = count, pages
        history = self.call("get_metric_history", c.get_metric_history, self.run_ids[0], "m0")
        got = sorted((m.step, m.value, m.timestamp) for m in history)
        want = [(s, value(0, 0, s), BASE_TS + s) for s in range(a["steps"])]
        checks["history_length"] = len(history)
        checks["history_values_match"] = got == want
        singles = self.call("get_metric_history", c.get_metric_history, self.run_ids[-1], "single")
        checks["single_history_length"] = len(singles)
        last = len(self.run_ids) - 1
        run = self.call("get_run", c.get_run, self.run_ids[last])
        checks["params"] = len(run.data.params)
        checks["params_match"] = run.data.params == params_of(last, a["params"])
        checks["latest_metrics"] = len(run.data.metrics)
        checks["latest_values_match"] = run.data.metrics == {
            **{f"m{k}": value(last, k, a["steps"] - 1) for k in range(a["keys"])},
            "single": single_value(last, a["singles"] - 1),
        }
        files = self.call("list_artifacts", c.list_artifacts, self.run_ids[0])
        checks["artifact_listed_size"] = sum(f.file_size or 0 for f in files if not f.is_dir)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            path = self.call(
                "download_artifacts",
                c.download_artifacts,
                self.run_ids[0],
                Path(a["artifact"]).name,
                tmp,
            )
            checks["artifact_download_seconds"] = time.perf_counter() - t0
            checks["artifact_downloaded_size"] = os.path.getsize(path)
            checks["artifact_sha256"] = _sha256(Path(path))


class _Timer:
    def __init__(self, into: dict[str, float], part: str) -> None:
        self.into, self.part = into, part

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.into[self.part] = time.perf_counter() - self.t0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(a: dict[str, Any]) -> dict[str, Any]:
    w = Workload(a)
    out = w.out
    try:
        w.warm_up()
        t0 = time.perf_counter()
        with w.timed("create_runs"):
            w.create_runs()
        with w.timed("log_batch"):
            out["log_batch_calls"] = w.log_batches()
        with w.timed("log_metric"):
            w.log_singles()
        with w.timed("log_artifact"):
            w.log_artifact()
        with w.timed("search_runs"):
            found = w.search()
        out["end_to_end_seconds"] = time.perf_counter() - t0
        out["search"] = {"names": found["names"], "pages": found["pages"], "times": []}
        out["search"]["times"].append(out["timings"]["search_runs"])
        w.part = "search_runs (repeats)"
        for _ in range(a["search_repeats"] - 1):
            t1 = time.perf_counter()
            w.search()
            out["search"]["times"].append(time.perf_counter() - t1)
        out["search"]["median_seconds"] = statistics.median(out["search"]["times"])
        w.part = "search_runs (plain POST)"
        w.search_raw()  # untimed: opens the connection, as the stock client's is open
        raw = [w.search_raw() for _ in range(a["search_repeats"])]
        out["search"]["raw_median_seconds"] = statistics.median(t for t, _ in raw)
        out["search"]["parse_median_seconds"] = statistics.median(p for _, p in raw)
        w.part = "search_runs (no-work server)"
        floor = w.search_floor(w.answer)
        out["search"]["floor_times"] = floor
        out["search"]["floor_median_seconds"] = statistics.median(floor)
        out["search"]["answer_bytes"] = len(w.answer)
        w.read_back()
    except CallFailed as exc:
        out["error"] = {
            "part": exc.part,
            "call": exc.call,
            "type": type(exc.exc).__name__,
            "message": str(exc.exc)[:4000],
            "traceback": traceback.format_exception(exc.exc)[-1][:2000],
        }
    return out


def serve_canned(path: str) -> None:
    """The ceiling's server, in its own process: HTTP/1.1 with keep-alive on a loopback
    port (printed first), answering each POST to ``runs/search`` with ``path``'s bytes and
    anything else with a 404 (so a client that asked for more would fail, not be timed
    short). It reads each request and writes the canned bytes: no parsing of the body, no
    store, no JSON."""
    import asyncio

    body = Path(path).read_bytes()
    found = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    found += b"Content-Length: %d\r\n\r\n" % len(body) + body
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                target = head[0].split(b" ")[1] if b" " in head[0] else b""
                writer.write(found if target.endswith(b"/mlflow/runs/search") else missing)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-canned"]:
        serve_canned(sys.argv[2])
        sys.exit(0)
    logging.disable(logging.WARNING)
    result = run(json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(result) + "\n")
