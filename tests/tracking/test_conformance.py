"""The tracking conformance suite: one set of tests, run on every transport and store.

``client`` is parametrized over embedded SQLite, embedded PostgreSQL and the
HTTP transport against a real server, so the three cannot drift apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlplane import errors
from mlplane.client import Client
from mlplane.tracking.entities import Metric, RunInput, RunStatus, ViewType


def _exp(client: Client, unique: str, suffix: str = "") -> str:
    return client.create_experiment(f"exp-{unique}{suffix}")


# -- experiments -----------------------------------------------------------------------------


def test_experiment_lifecycle(client: Client, unique: str) -> None:
    eid = client.create_experiment(f"e-{unique}", tags={"team": "ml"}, description="first")
    exp = client.get_experiment(eid)
    assert exp.name == f"e-{unique}"
    assert exp.tags == {"team": "ml"}
    assert exp.description == "first"
    assert exp.lifecycle_stage == "active"
    assert client.get_experiment_by_name(f"e-{unique}").experiment_id == eid
    assert client.get_experiment_by_name(f"missing-{unique}") is None

    with pytest.raises(errors.AlreadyExists, match="exists already"):
        client.create_experiment(f"e-{unique}")

    client.rename_experiment(eid, f"e2-{unique}")
    client.set_experiment_tag(eid, "stage", "dev")
    exp = client.get_experiment(eid)
    assert exp.name == f"e2-{unique}" and exp.tags["stage"] == "dev"

    client.delete_experiment(eid)
    active = {e.experiment_id for e in client.list_experiments()}
    deleted = {e.experiment_id for e in client.list_experiments(view_type="DELETED_ONLY")}
    assert eid not in active and eid in deleted
    client.restore_experiment(eid)
    assert client.get_experiment(eid).lifecycle_stage == "active"


def test_experiment_errors(client: Client, unique: str) -> None:
    with pytest.raises(errors.NotFound):
        client.get_experiment("987654321")
    with pytest.raises(errors.InvalidInput):
        client.get_experiment("not-a-number")
    with pytest.raises(errors.InvalidInput):
        client.create_experiment("")


def test_experiment_pagination(client: Client, unique: str) -> None:
    ids = {client.create_experiment(f"page-{unique}-{i}") for i in range(5)}
    seen: list[str] = []
    token = None
    while True:
        page = client.search_experiments(
            name_like=f"page-{unique}-%", max_results=2, page_token=token
        )
        assert len(page.experiments) <= 2
        seen += [e.experiment_id for e in page.experiments]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids)


# -- runs ------------------------------------------------------------------------------------


def test_run_lifecycle(client: Client, unique: str) -> None:
    eid = _exp(client, unique)
    run = client.create_run(eid, run_name="first", tags={"team": "ml"})
    assert run.info.status == RunStatus.RUNNING
    assert run.info.run_name == "first"
    assert run.info.end_time is None
    assert run.data.tags["team"] == "ml"
    rid = run.info.run_id

    info = client.set_terminated(rid, "FINISHED")
    assert info.status == "FINISHED" and info.end_time is not None

    auto = client.create_run(eid)
    assert auto.info.run_name  # a generated, readable name

    child = client.create_run(eid, parent_run_id=rid, run_name="child")
    assert child.info.parent_run_id == rid

    client.delete_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    active_ids = {r.run_id for r in client.search_runs(eid).runs}
    assert rid not in active_ids
    deleted_ids = {r.run_id for r in client.search_runs(eid, view_type=ViewType.DELETED_ONLY).runs}
    assert deleted_ids == {rid}
    with pytest.raises(errors.Conflict, match="deleted"):
        client.log_param(rid, "x", 1)
    client.restore_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "active"

    client.purge_run(auto.info.run_id)
    with pytest.raises(errors.NotFound):
        client.get_run(auto.info.run_id)


def test_run_errors(client: Client, unique: str) -> None:
    eid = _exp(client, unique)
    rid = client.create_run(eid).info.run_id
    with pytest.raises(errors.NotFound):
        client.get_run("0" * 32)
    with pytest.raises(errors.InvalidInput, match="run id"):
        client.get_run("../etc/passwd")
    with pytest.raises(errors.InvalidInput, match="status"):
        client.update_run(rid, status="DONE")
    with pytest.raises(errors.NotFound):
        client.create_run("987654321")


def test_params_are_write_once(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    client.log_params(rid, {"lr": 0.1, "model": "rf"})
    client.log_param(rid, "lr", 0.1)  # same value again is fine
    with pytest.raises(errors.Conflict, match="write-once") as exc:
        client.log_param(rid, "lr", 0.2)
    assert "'0.1'" in str(exc.value) and "'0.2'" in str(exc.value)
    # nothing half-written: the failed batch's other params are absent
    with pytest.raises(errors.Conflict):
        client.log_batch(rid, params={"new": "x", "lr": "0.3"})
    assert client.get_run(rid).data.params == {"lr": "0.1", "model": "rf"}


def test_tags_and_notes(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    client.set_tags(rid, {"a": "1", "b": "2"})
    client.set_tag(rid, "a", "3")
    client.set_note(rid, "# Notes\nworks")
    client.delete_tag(rid, "b")
    tags = client.get_run(rid).data.tags
    assert tags["a"] == "3" and "b" not in tags and tags["mlplane.note"].startswith("# Notes")
    with pytest.raises(errors.NotFound):
        client.delete_tag(rid, "b")


# -- metrics ---------------------------------------------------------------------------------


def test_metric_history_and_latest(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    points = [Metric("loss", 1.0 / (s + 1), 1_700_000_000_000 + s, s) for s in range(500)]
    points += [Metric("acc", s / 10, 1_700_000_000_000 + s, s) for s in range(10)]
    client.log_batch(rid, metrics=points[::-1])  # order of arrival must not matter
    client.log_metric(rid, "acc", 0.05, step=3)  # an older step does not become latest
    run = client.get_run(rid)
    assert run.data.metrics["loss"] == pytest.approx(1 / 500)
    assert run.data.metrics["acc"] == pytest.approx(0.9)
    hist = client.get_metric_history(rid, "loss")
    assert [m.step for m in hist] == list(range(500))
    assert all(m.key == "loss" for m in hist)
    both = client.get_metric_histories(rid)
    assert set(both) == {"loss", "acc"} and len(both["acc"]) == 11


def test_non_finite_metric_values(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    client.log_batch(
        rid,
        metrics=[
            Metric("nan", math.nan, 1, 0),
            Metric("inf", math.inf, 1, 0),
            Metric("ninf", -math.inf, 1, 0),
        ],
    )
    m = client.get_run(rid).data.metrics
    assert math.isnan(m["nan"]) and m["inf"] == math.inf and m["ninf"] == -math.inf
    assert math.isnan(client.get_metric_history(rid, "nan")[0].value)


def test_metric_validation(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    with pytest.raises(errors.InvalidInput, match="not allowed"):
        client.log_metric(rid, "bad key!", 1.0)
    with pytest.raises(errors.InvalidInput):
        client.log_batch(rid, metrics=[Metric("ok", "nope", 1, 0)])  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput, match="limit is 250"):
        client.log_param(rid, "k" * 300, 1)
    with pytest.raises(errors.InvalidInput, match="6000"):
        client.log_param(rid, "long", "x" * 7000)
    assert client.get_run(rid).data.metrics == {}


def test_async_logging_is_flushed(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    for step in range(2500):
        client.log_metric(rid, "loss", 1.0 / (step + 1), step=step, synchronous=False)
    assert client.flush() == 0
    assert len(client.get_metric_history(rid, "loss")) == 2500


# -- search ----------------------------------------------------------------------------------


def _population(client: Client, unique: str) -> tuple[str, dict[str, str]]:
    eid = _exp(client, unique)
    names: dict[str, str] = {}
    for i in range(12):
        rid = client.create_run(eid, run_name=f"r{i:02d}").info.run_id
        names[rid] = f"r{i:02d}"
        client.log_batch(
            rid,
            metrics=[Metric("acc", i / 12, 1000 + i, 0)] if i != 11 else [],
            params={"model": ["rf", "lr", "gb"][i % 3], "depth": str(i)},
            tags={"team": "ml-core" if i < 6 else "research"},
        )
    return eid, names


def test_search_filters_and_order(client: Client, unique: str) -> None:
    eid, names = _population(client, unique)

    def search(flt: str, order: list[str] | None = None) -> list[str]:
        return [names[r.run_id] for r in client.search_runs(eid, flt, order_by=order).runs]

    assert search("metrics.acc >= 0.5 and params.model = 'rf'", ["metrics.acc DESC"]) == [
        "r09",
        "r06",
    ]
    assert search("tags.team LIKE 'ml%'", ["attributes.run_name ASC"]) == [
        f"r{i:02d}" for i in range(6)
    ]
    assert sorted(search("params.model = 'gb' OR (params.model = 'rf' AND metrics.acc < 0.3)")) == [
        "r00",
        "r02",
        "r03",
        "r05",
        "r08",
        "r11",
    ]
    assert search("attributes.status = 'RUNNING'", ["metrics.acc ASC"])[-1] == "r11"  # missing last
    assert search("", ["metrics.acc DESC"])[0] == "r10"


def test_search_pagination(client: Client, unique: str) -> None:
    eid, names = _population(client, unique)
    seen: list[str] = []
    token = None
    while True:
        page = client.search_runs(
            eid, order_by=["params.depth ASC"], max_results=5, page_token=token
        )
        seen += [names[r.run_id] for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 12 and len(set(seen)) == 12


def test_search_errors(client: Client, unique: str) -> None:
    eid = _exp(client, unique)
    with pytest.raises(errors.InvalidInput, match="column"):
        client.search_runs(eid, "metrics.acc >> 1")
    with pytest.raises(errors.InvalidInput):
        client.search_runs(eid, "foo.bar = 1")
    with pytest.raises(errors.InvalidInput):
        client.search_runs(eid, max_results=0)
    with pytest.raises(errors.InvalidInput):
        client.search_runs(eid, page_token="garbage")
    # an injection attempt is just a value that matches nothing
    assert client.search_runs(eid, "params.x = '1''; DROP TABLE runs; --'").runs == []
    assert client.get_experiment(eid).experiment_id == eid


# -- artifacts and inputs --------------------------------------------------------------------


def test_artifacts(client: Client, unique: str, tmp_path: Path) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    f = tmp_path / "model.txt"
    f.write_text("weights")
    d = tmp_path / "plots"
    (d / "sub").mkdir(parents=True)
    (d / "a.png").write_bytes(b"\x89PNG fake")
    (d / "sub" / "b.csv").write_text("x,y\n1,2\n")
    client.log_artifact(rid, f)
    client.log_artifacts(rid, d, artifact_path="plots")
    client.log_text(rid, "hello", "notes/readme.md")
    client.log_dict(rid, {"a": 1}, "config.json")

    top = {(a.path, a.is_dir) for a in client.list_artifacts(rid)}
    assert top == {("model.txt", False), ("plots", True), ("notes", True), ("config.json", False)}
    inner = {a.path for a in client.list_artifacts(rid, "plots")}
    assert inner == {"plots/a.png", "plots/sub"}
    assert client.read_artifact(rid, "notes/readme.md") == b"hello"

    out = Path(client.download_artifacts(rid, "plots", tmp_path / "dl"))
    assert (out / "sub" / "b.csv").read_text() == "x,y\n1,2\n"
    single = Path(client.download_artifacts(rid, "model.txt", tmp_path / "dl2"))
    assert single.read_text() == "weights"

    for bad in ("../escape.txt", "/abs.txt", "a/../../b", "nul\x00byte"):
        with pytest.raises(errors.InvalidInput):
            client.transport.log_artifact(rid, bad, f)
    with pytest.raises(errors.NotFound):
        client.read_artifact(rid, "missing.bin")


def test_inputs(client: Client, unique: str) -> None:
    rid = client.create_run(_exp(client, unique)).info.run_id
    client.log_inputs(
        rid,
        [
            RunInput(
                kind="dataset", name="transactions", version="3", digest="b3:ab", context="training"
            )
        ],
    )
    run = client.get_run(rid)
    assert run.inputs == [
        RunInput(
            kind="dataset",
            name="transactions",
            version="3",
            digest="b3:ab",
            source="",
            context="training",
        )
    ]
    eid = run.info.experiment_id
    found = client.search_runs(eid, "datasets.name = 'transactions'").runs
    assert [r.run_id for r in found] == [rid]
    described = RunInput(
        kind="dataset",
        name="frame",
        digest="d1",
        source='{"uri": "s3://b/frame.parquet"}',
        source_type="s3",
        schema='{"mlflow_colspec": [{"type": "double", "name": "a"}]}',
        profile='{"num_rows": 3}',
    )
    client.log_inputs(rid, [described])
    assert client.get_run(rid).inputs[-1] == described
    with pytest.raises(errors.InvalidInput, match="profile"):
        client.log_inputs(rid, [RunInput(kind="dataset", name="big", profile="x" * 20_000)])
