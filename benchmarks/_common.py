"""Shared pieces of the benchmarks: the data both sides log, process plumbing, MLflow's driver.

Only the standard library is imported at module level, because this file has
two lives. ``benchmarks/tracking.py`` imports it for the helpers, and the
MLflow virtualenv's interpreter runs it as the MLflow driver
(``python _common.py OP JSON``): MLflow has to be measured with its own stock
client in its own environment, and keeping the data generators in one file
means both sides log exactly the same points and runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BASE_TS = 1_795_000_000_000  # a fixed epoch-ms, so runs of the benchmark log identical rows
SEARCH_FILTER = "metrics.acc > 0.5 and params.model = 'rf'"
SEARCH_ORDER = ["metrics.acc DESC"]

# -- the data ------------------------------------------------------------------------------------


def points(run: int, keys: int, steps: int) -> list[tuple[str, float, int, int]]:
    """The (key, value, timestamp, step) points of ingest run number ``run``, step-major."""
    names = [f"metric_{k}" for k in range(keys)]
    return [
        (names[k], ((run * 7919 + k * 104_729 + s) % 10_007) / 10_007, BASE_TS + s, s)
        for s in range(steps)
        for k in range(keys)
    ]


def run_spec(i: int) -> tuple[str, dict[str, str], dict[str, float]]:
    """Name, params and metrics of search run number ``i`` (deterministic)."""
    rng = random.Random(i)
    params = {
        "model": ("rf", "lr", "gb")[i % 3],
        "depth": str(rng.randint(2, 12)),
        "lr": f"{rng.choice((0.001, 0.01, 0.1))}",
    }
    metrics = {"acc": rng.random(), "loss": rng.random(), "f1": rng.random()}
    return f"run-{i:05d}", params, metrics


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


class Server:
    """A server process in its own process group; the whole group is killed on exit."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        health_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout_s: float = 120,
    ) -> None:
        self.name, self.argv, self.health_url = name, argv, health_url
        self.log_path, self.env, self.cwd, self.timeout = log_path, env, cwd, start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        try:
            wait_http(self.health_url, self.timeout, self.proc)
        except Exception:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} did not start; log tail:\n{tail}") from None
        except BaseException:  # Ctrl-C while waiting
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left after 15 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def ensure_mlflow_venv(venv: Path, spec: str = "mlflow>=3,<4") -> Path:
    """The MLflow virtualenv's python, creating the venv once (cached)."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file() and python.is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True)
    code = "import mlflow; print(mlflow.__version__)"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    marker.write_text(out.stdout.strip() + "\n")
    return python


def run_driver(
    python: Path, op: str, args: dict[str, Any], timeout_s: float = 3600
) -> dict[str, Any]:
    """Run one MLflow measurement in the MLflow venv; returns its JSON answer."""
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), op, json.dumps(args)],
        capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_TIMEOUT": "600", "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"MLflow driver {op} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@contextlib.contextmanager
def pg_database(admin_url: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one run of the benchmark, dropped afterwards."""
    import psycopg

    def recreate(create: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                conn.execute(f'CREATE DATABASE "{name}"')

    recreate(True)
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        recreate(False)


def mlflow_server(python: Path, home: Path) -> Server:
    """MLflow's stock server on SQLite, default workers; its start-up takes a minute here."""
    port = free_port()
    home.mkdir(parents=True)
    argv = [str(python.parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--default-artifact-root", (home / "artifacts").as_uri()]  # fmt: skip
    return Server("mlflow server", argv, health_url=f"http://127.0.0.1:{port}/health",
                  log_path=home / "server.log", cwd=home, start_timeout_s=300)  # fmt: skip


def mlplane_server(home: Path, db_url: str | None = None) -> Server:
    """Our server: uvicorn, uvloop, httptools, two workers; SQLite under ``home`` by default."""
    from mlplane.db import Database
    from mlplane.db.migrate import upgrade

    port = free_port()
    home.mkdir(parents=True)
    # Create the schema first, as `mlplane db upgrade` would: two workers that both find an
    # empty PostgreSQL database race to create it, and the loser crashes (uvicorn restarts it).
    db = Database(db_url or f"sqlite:///{home / 'mlplane.db'}")
    upgrade(db)
    db.dispose()
    argv = [sys.executable, "-m", "uvicorn", "mlplane.server.app:app_factory", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--workers", "2"]  # fmt: skip
    env = {"MLPLANE_HOME": str(home), **({"MLPLANE_DB_URL": db_url} if db_url else {})}
    return Server("mlplane server", argv, health_url=f"http://127.0.0.1:{port}/healthz",
                  log_path=home / "server.log", env=env, cwd=home, start_timeout_s=120)  # fmt: skip


def url_of(server: Server) -> str:
    return server.health_url.rsplit("/", 1)[0]


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every server is stopped on the way out."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# -- the limit: the same rows straight into the database -----------------------------------------


def _metrics_table() -> tuple[list[str], dict[str, list[str]]]:
    """Our ``metrics`` table: the columns an insert fills, and its DDL per dialect."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    from mlplane.tracking.tables import MetricRow

    table: Any = MetricRow.__table__
    columns = [c.name for c in table.columns if not (c.primary_key and c.autoincrement)]
    ddl = {}
    for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
        create = CreateTable(table, include_foreign_key_constraints=[])
        ddl[name] = [str(create.compile(dialect=dialect))]
        ddl[name] += [str(CreateIndex(ix).compile(dialect=dialect)) for ix in table.indexes]
    return columns, ddl


def _limit_batches(columns: list[str], runs: int, keys: int, steps: int, batch: int) -> list[Any]:
    """The ingest points as rows of ``columns``, in batches; runs and keys are referenced
    by id or by integer (seq, interned key id), whichever the table holds."""
    batches = []
    for r in range(runs):
        run = {"run_id": uuid.uuid4().hex, "run_seq": r + 1}
        rows = []
        for key, value, ts, step in points(r, keys, steps):
            src = {**run, "key": key, "key_id": int(key.rsplit("_", 1)[1]) + 1, "step": step,
                   "timestamp": ts, "value": value}  # fmt: skip
            try:
                rows.append(tuple(src[c] for c in columns))
            except KeyError as exc:
                raise RuntimeError(f"the limit does not know how to fill metrics.{exc}") from None
        batches += [rows[i : i + batch] for i in range(0, len(rows), batch)]
    return batches


def limit_sqlite(path: Path, runs: int, keys: int, steps: int, batch: int) -> dict[str, Any]:
    """``executemany`` into the same table, one transaction per batch, our pragmas."""
    columns, ddl = _metrics_table()
    batches = _limit_batches(columns, runs, keys, steps, batch)
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "cache_size=-65536",
        "temp_store=MEMORY",
    ):
        conn.execute(f"PRAGMA {pragma}")
    for stmt in ddl["sqlite"]:
        conn.execute(stmt)
    sql = f"INSERT INTO metrics ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    t0 = time.perf_counter()
    for rows in batches:
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return {"points": runs * keys * steps, "seconds": dt}


def limit_postgres(db_url: str, runs: int, keys: int, steps: int, batch: int) -> dict[str, Any]:
    """``COPY`` into the same table (in its own schema), one transaction per batch."""
    import psycopg

    columns, ddl = _metrics_table()
    batches = _limit_batches(columns, runs, keys, steps, batch)
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE SCHEMA raw_limit")
        conn.execute("SET search_path TO raw_limit")
        for stmt in ddl["postgresql"]:
            conn.execute(stmt)
        conn.commit()
        sql = f"COPY metrics ({', '.join(columns)}) FROM STDIN"
        t0 = time.perf_counter()
        for rows in batches:
            with conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
        dt = time.perf_counter() - t0
    return {"points": runs * keys * steps, "seconds": dt}


# -- the MLflow driver (runs inside the MLflow venv) ----------------------------------------------


def _mlflow_ingest(a: dict[str, Any]) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    c = MlflowClient(a["uri"])
    eid = c.create_experiment(a["experiment"])
    warm = c.create_run(eid, run_name="warm-up").info.run_id
    for i in range(8):  # the first calls of each server worker are slower
        c.log_batch(warm, metrics=[Metric("warm", 0.0, BASE_TS, i)])
    batches = []
    for r in range(a["runs"]):
        rid = c.create_run(eid, run_name=f"ingest-{r:03d}").info.run_id
        pts = [Metric(k, v, ts, s) for k, v, ts, s in points(r, a["keys"], a["steps"])]
        batches += [(rid, pts[i : i + a["chunk"]]) for i in range(0, len(pts), a["chunk"])]
    t0 = time.perf_counter()
    for rid, batch in batches:
        c.log_batch(rid, metrics=batch)
    dt = time.perf_counter() - t0
    return {"points": sum(len(b) for _, b in batches), "seconds": dt, "calls": len(batches)}


def _mlflow_loop(a: dict[str, Any]) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(a["uri"])
    mlflow.set_experiment(a["experiment"])
    with mlflow.start_run():
        for i in range(5):
            mlflow.log_metric("warm", 0.0, step=i)
        t0 = time.perf_counter()
        for i in range(a["calls"]):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        dt = time.perf_counter() - t0
    return {"calls": a["calls"], "seconds": dt}


def _mlflow_make_runs(a: dict[str, Any]) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    c = MlflowClient(a["uri"])
    eid = c.create_experiment(a["experiment"])

    def one(i: int) -> None:
        name, params, metrics = run_spec(i)
        rid = c.create_run(eid, run_name=name, start_time=BASE_TS + i).info.run_id
        c.log_batch(
            rid,
            metrics=[Metric(k, v, BASE_TS, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(a["threads"]) as ex:
        list(ex.map(one, range(a["runs"])))
    return {"experiment_id": eid, "runs": a["runs"], "seconds": time.perf_counter() - t0}


def _mlflow_search(a: dict[str, Any]) -> dict[str, Any]:
    from mlflow import MlflowClient

    c = MlflowClient(a["uri"])

    def search_all() -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = c.search_runs(
                [a["experiment_id"]],
                SEARCH_FILTER,
                max_results=a["max_results"],
                order_by=SEARCH_ORDER,
                page_token=token,
            )
            names += [r.info.run_name for r in page]
            token = page.token
            if not token:
                return names

    names = search_all()  # warm-up, and the answer to compare
    times = []
    for _ in range(a["repeats"]):
        t0 = time.perf_counter()
        search_all()
        times.append(time.perf_counter() - t0)
    return {"times": times, "names": names}


_OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ingest": _mlflow_ingest,
    "loop": _mlflow_loop,
    "make_runs": _mlflow_make_runs,
    "search": _mlflow_search,
}

if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    result = _OPS[sys.argv[1]](json.loads(sys.argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")
