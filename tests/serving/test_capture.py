"""Payload capture end to end on a real embedded store: sampled records from many threads
become masked, encrypted, hour-partitioned Parquet files, read back through the audited
service; a full queue or a failing store never reaches the request path."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sqlalchemy import select
from typer.testing import CliRunner

import mlplane
from mlplane.cli.deploy_captures import captures as captures_cmd
from mlplane.cli.deploy_captures import parse_since
from mlplane.cli.main import _Root, root
from mlplane.config import load_settings
from mlplane.errors import InvalidInput
from mlplane.registry.signature import ColumnSpec, Signature, enforce
from mlplane.security import local_admin
from mlplane.security.tables import AuditEventRow
from mlplane.services import Services
from mlplane.serving.capture import MASK, CaptureRecord, CaptureWriter, read_captures

ME = local_admin("tester")
HOUR_MS = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
SECRET = "secret-marker-7f3a@example.com"
PHONE = "+1-555-0199-7788"


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "amount": rng.normal(50, 10, n),
            "email": [f"user{i}@train.example" for i in range(n)],
            "phone": [f"555-{i:04d}" for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture") / "home"


def _model(x: pd.DataFrame) -> Pipeline:
    return Pipeline(
        [
            ("prep", ColumnTransformer([("num", "passthrough", ["amount"])])),
            ("clf", LogisticRegression()),
        ]
    ).fit(x, (x["amount"] > 50).astype(int))


@pytest.fixture(scope="module")
def svc(home: Path) -> Iterator[Services]:
    s = Services.from_settings(load_settings(home=home))
    x = _frame()
    s.registry.register(ME, "m", _model(x), input_example=x[:5], sensitive=["email"])
    yield s
    s.close()


@pytest.fixture
def deployment(svc: Services) -> str:
    name = f"d-{uuid.uuid4().hex[:8]}"
    svc.deployments.create(ME, name, "m@1")
    return name


def _id(svc: Services, name: str) -> int:
    return svc.deployments.get(ME, name).deployment_id


def _record(name: str, i: int, t: int, **extra: Any) -> CaptureRecord:
    return CaptureRecord(
        request_id=f"r1-{i:06d}",
        time_ms=t,
        deployment=name,
        version=1,
        kind="live",
        latency_ms=1.5 + i,
        status=200,
        inputs=[{"amount": 40.0 + i, "email": SECRET, "phone": PHONE}],
        outputs=[i % 2],
        **extra,
    )


# -- the signature flag ---------------------------------------------------------------------


def test_sensitive_flag_round_trips_and_never_changes_enforcement() -> None:
    sig = Signature([ColumnSpec("amount", "float64"), ColumnSpec("email", "string")])
    assert "sensitive" not in json.dumps(sig.to_dict())  # unmarked signatures are unchanged
    marked = sig.with_sensitive(["email"])
    assert marked.to_dict()["inputs"][1] == {"name": "email", "type": "string", "sensitive": True}
    assert Signature.from_json(marked.to_json()) == marked
    assert marked.sensitive_names == ["email"]
    frame = pd.DataFrame({"amount": [1, 2], "email": ["a", "b"]})
    pd.testing.assert_frame_equal(enforce(marked, frame), enforce(sig, frame))
    with pytest.raises(InvalidInput, match="nope") as err:
        sig.with_sensitive(["email", "nope"])
    assert err.value.details["unknown"] == ["nope"]


def test_register_marks_sensitive_columns(svc: Services) -> None:
    mv = svc.registry.get_version(ME, "m@1")
    flags = {c["name"]: c.get("sensitive", False) for c in mv.signature["inputs"]}
    assert flags == {"amount": False, "email": True, "phone": False}
    model = LogisticRegression().fit(_frame()[["amount"]], [0, 1] * 30)
    with pytest.raises(InvalidInput, match="email"):
        svc.registry.register(
            ME, "m2", model, input_example=_frame()[["amount"]], sensitive=["email"]
        )
    with pytest.raises(InvalidInput, match="input example"):
        svc.registry.register(ME, "m2", model, sensitive=["amount"])


def test_sdk_register_passes_sensitive_down() -> None:
    x = _frame()[["amount", "email"]]
    mv = mlplane.registry.register("s", _model(x), input_example=x[:5], sensitive=["email"])
    assert [c.get("sensitive", False) for c in mv.signature["inputs"]] == [False, True]
    assert mlplane.registry.get("s@1").signature == mv.signature


# -- writing and reading --------------------------------------------------------------------


def test_records_from_many_threads_become_masked_hour_files(
    svc: Services, deployment: str, home: Path
) -> None:
    svc.deployments.configure(ME, deployment, {"sensitive": ["phone"]})
    did = _id(svc, deployment)
    writer = CaptureWriter(svc, worker_id="w1", flush_s=60)

    def send(start: int) -> None:
        for i in range(start, start + 25):
            t = T0 + (i % 2) * HOUR_MS + i  # two hours
            writer.submit(did, _record(deployment, i, t))

    threads = [threading.Thread(target=send, args=(k * 25,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.submit(
        did,
        CaptureRecord(
            "r1-extra", T0 + 5, deployment, 1, "shadow", 3.0, 200,
            inputs=[{"amount": 1.0, "note": "x"}, {"amount": 2.0, "note": "y"}],
            outputs=[{"score": 0.1}, {"score": 0.9}],
            sensitive=("note",),
        ),
    )  # fmt: skip
    writer.close()
    writer.close()  # idempotent
    assert (writer.captured, writer.dropped, writer.errors) == (101, 0, 0)
    assert (writer.rows_written, writer.files_written) == (102, 2)

    _, files = svc.deployments.captures(ME, deployment)
    assert sorted(f["hour"] for f in files) == ["2026-01-01T00", "2026-01-01T01"]
    assert sum(f["rows"] for f in files) == 102 and {f["worker"] for f in files} == {"w1"}

    table = read_captures(svc, ME, deployment)
    assert table.num_rows == 102
    assert table.column_names[:8] == [
        "request_id", "time", "deployment", "version", "kind", "latency_ms", "status", "row"
    ]  # fmt: skip
    assert {"input.amount", "input.email", "input.phone", "input.note", "output"} <= set(
        table.column_names
    )
    assert str(table.schema.field("time").type) == "timestamp[ms, tz=UTC]"
    rows = table.to_pylist()
    assert {r["input.email"] for r in rows} - {None} == {MASK}  # the signature's
    assert {r["input.phone"] for r in rows} - {None} == {MASK}  # the deployment's
    assert {r["input.note"] for r in rows} - {None} == {MASK}  # the record's
    extra = [r for r in rows if r["request_id"] == "r1-extra"]
    assert [r["row"] for r in extra] == [0, 1] and extra[0]["kind"] == "shadow"
    assert [json.loads(r["output"]) for r in extra] == [{"score": 0.1}, {"score": 0.9}]
    assert {r["input.amount"] for r in rows if r["request_id"] == "r1-000007"} == {47.0}

    # The marker is in no stored byte: blobs, the database, caches.
    assert any((home / "blobs").rglob("*"))
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and PHONE.encode() not in data, path

    # A time window reads only what falls in it; every read is audited.
    late = read_captures(svc, ME, deployment, since_ms=T0 + HOUR_MS)
    assert late.num_rows == 50
    early = read_captures(svc, ME, deployment, until_ms=T0 + HOUR_MS)
    assert early.num_rows == 52
    with svc.db.read() as s:
        actions = list(s.scalars(select(AuditEventRow.action)))
    assert actions.count("deployment.captures.read") >= 4


def test_background_flush_and_max_rows(svc: Services, deployment: str) -> None:
    did = _id(svc, deployment)
    writer = CaptureWriter(svc, worker_id="w2", flush_s=0.2, max_rows=10)
    for i in range(25):
        writer.submit(did, _record(deployment, i, T0 + i))
    deadline = time.monotonic() + 10
    while writer.captured < 25 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.captured == 25  # written in the background, without close
    _, files = svc.deployments.captures(ME, deployment)
    sizes = [f["rows"] for f in files]
    assert sum(sizes) == 25 and max(sizes) <= 10 and len(sizes) >= 3
    writer.close()


def test_full_queue_drops_instead_of_blocking(
    svc: Services, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    did = _id(svc, deployment)
    entered, release = threading.Event(), threading.Event()
    put = svc.chunks.put_chunks

    def slow_put(chunks: Any) -> Any:
        entered.set()
        release.wait(10)
        return put(chunks)

    monkeypatch.setattr(svc.chunks, "put_chunks", slow_put)
    writer = CaptureWriter(svc, worker_id="w3", flush_s=60, max_rows=1, queue_size=3)
    writer.submit(did, _record(deployment, 0, T0))
    assert entered.wait(10)  # the thread is stuck in a write
    started = time.perf_counter()
    for i in range(1, 9):
        writer.submit(did, _record(deployment, i, T0 + i))
    assert time.perf_counter() - started < 0.5
    assert writer.dropped == 5
    release.set()
    writer.close()
    assert (writer.captured, writer.dropped, writer.errors) == (4, 5, 0)
    writer.submit(did, _record(deployment, 99, T0))  # after close: dropped, not raised
    assert writer.dropped == 6


def test_failing_store_never_reaches_submit(
    svc: Services, deployment: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    did = _id(svc, deployment)
    writer = CaptureWriter(svc, worker_id="w4", flush_s=60)
    writer.submit(did, _record(deployment, 0, T0))
    svc.deployments.delete(ME, deployment)  # deleted meanwhile
    writer.submit(did, _record(deployment, 1, T0 + 1))
    writer.submit(did, "not a record")  # type: ignore[arg-type]
    writer.close()
    assert writer.captured == 0 and writer.dropped == 3 and writer.errors == 2
    assert "was deleted" in caplog.text

    other = f"d-{uuid.uuid4().hex[:8]}"
    svc.deployments.create(ME, other, "m@1")

    def broken(chunks: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(svc.chunks, "put_chunks", broken)
    writer = CaptureWriter(svc, worker_id="w5", flush_s=60)
    writer.submit(_id(svc, other), _record(other, 0, T0))
    writer.close()
    assert (writer.captured, writer.dropped, writer.errors) == (0, 1, 1)
    assert svc.deployments.captures(ME, other)[1] == []
    assert read_captures(svc, ME, other).num_rows == 0


def test_columns_of_mixed_types_read_back_as_text(svc: Services, deployment: str) -> None:
    did = _id(svc, deployment)
    for output in (0.25, [1, 2]):  # a number in one file, JSON in the next
        writer = CaptureWriter(svc, worker_id="w6", flush_s=60)
        writer.submit(did, dataclasses.replace(_record(deployment, 0, T0), outputs=[output]))
        writer.close()
    table = read_captures(svc, ME, deployment)
    assert sorted(table.column("output").to_pylist()) == ["0.25", "[1, 2]"]


# -- the command ----------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer(cls=_Root)
    app.callback()(root)
    app.command("captures")(captures_cmd)
    return app


def test_parse_since() -> None:
    assert parse_since("30m", now_ms=10_000_000) == 10_000_000 - 1_800_000
    assert parse_since("1.5h", now_ms=10_000_000) == 10_000_000 - 5_400_000
    assert parse_since("2026-01-01T00:00:00Z") == T0
    with pytest.raises(InvalidInput, match="duration"):
        parse_since("yesterday")


def test_captures_command(
    svc: Services, deployment: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    did = _id(svc, deployment)
    now = time.time_ns() // 1_000_000
    writer = CaptureWriter(svc, worker_id="w7", flush_s=60)
    for i in range(30):
        writer.submit(did, _record(deployment, i, now - 7200_000 + i if i < 5 else now - i))
    writer.close()
    app, runner = _app(), CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, ["--uri", str(home), "captures", deployment, *args])

    shown = cli("--limit", "3")
    assert shown.exit_code == 0, shown.output
    assert f"Captures of {deployment} (30 rows)" in shown.output
    assert "r1-000005" in shown.output and "r1-000010" not in shown.output
    assert "email=[masked]" in shown.output and SECRET not in shown.output
    listed = json.loads(cli("--since", "1h", "--limit", "100", "--json").stdout)
    assert len(listed) == 25 and all(r["input.email"] == MASK for r in listed)
    assert isinstance(listed[0]["time"], int)

    parquet, csv = tmp_path / "c.parquet", tmp_path / "c.csv"
    assert cli("--out", str(parquet)).exit_code == 0
    assert pq.read_table(parquet).num_rows == 30
    wrote = cli("--since", "1h", "-o", str(csv), "--json")
    assert json.loads(wrote.stdout) == {"path": str(csv), "rows": 25}
    assert len(csv.read_text().splitlines()) == 26 and SECRET not in csv.read_text()

    bad = cli("--out", str(tmp_path / "c.xlsx"))
    assert bad.exit_code == 1 and ".parquet or .csv" in bad.output
    assert cli("--since", "soon").exit_code == 1
    missing = runner.invoke(app, ["--uri", str(home), "captures", "nope"])
    assert missing.exit_code == 1 and "no deployment named 'nope'" in missing.output
    remote = runner.invoke(app, ["--uri", "http://127.0.0.1:9", "captures", deployment])
    assert remote.exit_code == 1 and "read where the store is" in remote.output
