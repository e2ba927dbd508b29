"""Compiled run-search queries against a real SQLite file, checked against a Python model."""

from __future__ import annotations

import math
import operator
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, func, inspect, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from mlplane.db.base import load_all_tables
from mlplane.errors import InvalidInput
from mlplane.projects.tables import ProjectRow
from mlplane.tracking.entities import ViewType
from mlplane.tracking.search import (
    ATTRIBUTES,
    NUMBER_OPS,
    And,
    Comparison,
    Expr,
    Not,
    Or,
    OrderKey,
    allowed_ops,
    parse_filter,
    parse_order_by,
    render,
)
from mlplane.tracking.search_sql import ATTRIBUTE_COLUMNS, build_search_query, like_to_glob
from mlplane.tracking.tables import (
    ExperimentRow,
    LatestMetricRow,
    ParamRow,
    RunInputRow,
    RunRow,
    TagRow,
)

METRIC_KEYS = ["acc", "val/loss", "my metric"]
METRIC_VALUES = [-1.0, 0.0, 0.5, 1.0, 2.5, math.inf, -math.inf, None]  # None is NaN
PARAM_KEYS = ["model", "model.depth", "lr", "a b"]
PARAM_VALUES = ["rf", "RF", "xgb", "1", "10", "it's", "50%", "a_b", "x*y", "[x]", "", "Ré", "ré"]
TAG_KEYS = ["team", "mlflow.note", "owner"]
TAG_VALUES = ["alice", "Alice", "bob", "", "ml-ops", "ALICE?"]
DATASETS = [
    ("iris", "d1", "train"),
    ("iris", "d2", "eval"),
    ("wine", "d3", "train"),
    ("Iris", "d1", ""),
]
NAMES = ["alpha", "Alpha", "beta", "gamma-1", "run_x", ""]
STATUSES = ["RUNNING", "FINISHED", "FAILED"]
USERS = ["alice", "bob"]


@dataclass
class FakeRun:
    id: str
    experiment_id: int
    name: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    user_id: str
    artifact_uri: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[tuple[str, str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | int | None:
        return (
            self.id
            if name == "run_id"
            else self.name
            if name == "run_name"
            else getattr(self, name)
        )


def make_runs(count: int = 30) -> list[FakeRun]:
    rng = random.Random(20240601)
    runs = []
    for i in range(count):

        def some(keys: list[str], values: Sequence[object]) -> dict:
            return {k: rng.choice(values) for k in keys if rng.random() < 0.7}

        runs.append(
            FakeRun(
                id=f"r{i:02d}",
                experiment_id=1 if i % 5 else 2,
                name=rng.choice(NAMES),
                status=rng.choice(STATUSES),
                start_time=rng.choice([100, 200, 300, 300, 400]),  # ties exercise the id tie-break
                end_time=rng.choice([None, 500, 600]),
                lifecycle_stage="deleted" if i % 7 == 3 else "active",
                user_id=rng.choice(USERS),
                artifact_uri=f"s3://b/{i}",
                metrics=some(METRIC_KEYS, METRIC_VALUES),
                params=some(PARAM_KEYS, PARAM_VALUES),
                tags=some(TAG_KEYS, TAG_VALUES),
                datasets=rng.sample(DATASETS, rng.randint(0, 2)),
            )
        )
    return runs


RUNS = make_runs()
EXPERIMENTS = [1, 2]


def _insert(engine: Engine, runs: list[FakeRun]) -> None:
    with Session(engine) as s:
        s.add(ProjectRow(id=1, name="p", created_at=0))
        for eid in [*EXPERIMENTS, 3]:
            s.add(
                ExperimentRow(
                    id=eid, project_id=1, name=f"e{eid}", creation_time=0, last_update_time=0
                )
            )
        s.flush()
        for r in runs:
            s.add(
                RunRow(
                    id=r.id,
                    experiment_id=r.experiment_id,
                    name=r.name,
                    status=r.status,
                    start_time=r.start_time,
                    end_time=r.end_time,
                    lifecycle_stage=r.lifecycle_stage,
                    user_id=r.user_id,
                    artifact_uri=r.artifact_uri,
                )
            )
        s.flush()
        for r in runs:
            for k, v in r.metrics.items():
                s.add(LatestMetricRow(run_id=r.id, key=k, step=0, timestamp=0, value=v))
            s.add_all(ParamRow(run_id=r.id, key=k, value=v) for k, v in r.params.items())
            s.add_all(TagRow(run_id=r.id, key=k, value=v) for k, v in r.tags.items())
            for name, digest, context in r.datasets:
                s.add(
                    RunInputRow(
                        run_id=r.id,
                        kind="dataset",
                        name=name,
                        digest=digest,
                        context=context,
                        created_at=0,
                    )
                )
            # Not a dataset: must never satisfy a datasets.* comparison.
            s.add(RunInputRow(run_id=r.id, kind="model", name="wine", digest="d9", created_at=0))
        s.commit()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("search") / "t.db"
    eng = create_engine(f"sqlite:///{path}")
    load_all_tables().create_all(eng)
    _insert(eng, RUNS)
    yield eng
    eng.dispose()


def search(
    engine: Engine,
    filter_text: str | None,
    order_by: Sequence[str] = (),
    view: str = "ALL",
    experiments: Sequence[int] = (1, 2),
) -> list[str]:
    stmt = build_search_query(
        experiments, parse_filter(filter_text), parse_order_by(order_by), view
    )
    with Session(engine) as s:
        return [run.id for run in s.scalars(stmt)]


# --- the Python model -------------------------------------------------------------

_COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def like(value: str, pattern: str, *, case_sensitive: bool) -> bool:
    if not case_sensitive:  # SQLite folds ASCII letters only
        value, pattern = value.translate(_ASCII_LOWER), pattern.translate(_ASCII_LOWER)
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def apply(actual: object, op: str, value: object) -> bool:
    if actual is None:
        return False
    if op in _COMPARE:
        return bool(_COMPARE[op](actual, value))
    if op in ("LIKE", "ILIKE"):
        return like(str(actual), str(value), case_sensitive=op == "LIKE")
    assert isinstance(value, tuple)
    return (actual in value) == (op == "IN")


def evaluate(expr: Expr, run: FakeRun) -> bool:
    if isinstance(expr, And):
        return all(evaluate(e, run) for e in expr.operands)
    if isinstance(expr, Or):
        return any(evaluate(e, run) for e in expr.operands)
    if isinstance(expr, Not):
        return not evaluate(expr.operand, run)
    if expr.entity == "attributes":
        return apply(run.attribute(expr.key), expr.op, expr.value)
    if expr.entity == "datasets":
        index = ["name", "digest", "context"].index(expr.key)
        return any(apply(ds[index], expr.op, expr.value) for ds in run.datasets)
    values: dict = getattr(run, expr.entity)
    if expr.op in ("IS NULL", "IS NOT NULL"):
        return (expr.key in values) == (expr.op == "IS NOT NULL")
    return apply(values.get(expr.key), expr.op, expr.value)


def expected_order(runs: list[FakeRun], order: Sequence[OrderKey]) -> list[str]:
    rows = sorted(runs, key=lambda r: r.id)
    rows.sort(key=lambda r: r.start_time, reverse=True)
    for key in reversed(order):  # stable sorts, least significant key first

        def value(r: FakeRun, key: OrderKey = key) -> object:
            if key.entity == "attributes":
                return r.attribute(key.key)
            return getattr(r, key.entity).get(key.key)

        present = sorted(
            (r for r in rows if value(r) is not None), key=value, reverse=not key.ascending
        )
        rows = present + [r for r in rows if value(r) is None]
    return [r.id for r in rows]


# --- generated filters ------------------------------------------------------------

TEXT = st.text(alphabet="aAbrRfFé%_*?[]' \"\\x1", max_size=4)
STRING_POOL = sorted(
    {*PARAM_VALUES, *TAG_VALUES, *NAMES, *STATUSES, *USERS, "active", "deleted", "s3://b/1", "r01"}
    | {x for ds in DATASETS for x in ds}
)


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    entity = draw(st.sampled_from(["metrics", "params", "tags", "attributes", "datasets"]))
    keys = {
        "metrics": [*METRIC_KEYS, "missing"],
        "params": [*PARAM_KEYS, "missing"],
        "tags": [*TAG_KEYS, "missing"],
        "attributes": sorted(ATTRIBUTES),
        "datasets": ["name", "digest", "context"],
    }[entity]
    key = draw(st.sampled_from(keys))
    ops = allowed_ops(entity, key)  # type: ignore[arg-type]
    op = draw(st.sampled_from(ops))
    if op in ("IS NULL", "IS NOT NULL"):
        return Comparison(entity, key, op)  # type: ignore[arg-type]
    if ops == NUMBER_OPS:
        pool = [v for v in METRIC_VALUES if v is not None] + [100, 250, 300, 500, 550, 600]
        number = draw(st.one_of(st.sampled_from(pool), st.floats(-1e3, 1e3)))
        return Comparison(entity, key, op, float(number))  # type: ignore[arg-type]
    strings = st.one_of(st.sampled_from(STRING_POOL), TEXT)
    if op in ("IN", "NOT IN"):
        values = tuple(draw(st.lists(strings, min_size=1, max_size=3)))
        return Comparison(entity, key, op, values)  # type: ignore[arg-type]
    return Comparison(entity, key, op, draw(strings))  # type: ignore[arg-type]


def expressions() -> st.SearchStrategy[Expr]:
    def extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        many = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.one_of(many.map(And), many.map(Or), children.map(Not))

    return st.recursive(comparisons(), extend, max_leaves=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions())
def test_generated_filters_match_the_python_model(engine: Engine, expr: Expr) -> None:
    text_ = render(expr)
    expected = expected_order([r for r in RUNS if evaluate(expr, r)], [])
    assert search(engine, text_) == expected, text_


ORDER_KEYS = st.one_of(
    st.builds(
        OrderKey, st.just("metrics"), st.sampled_from([*METRIC_KEYS, "missing"]), st.booleans()
    ),
    st.builds(OrderKey, st.just("params"), st.sampled_from(PARAM_KEYS), st.booleans()),
    st.builds(OrderKey, st.just("tags"), st.sampled_from(TAG_KEYS), st.booleans()),
    st.builds(OrderKey, st.just("attributes"), st.sampled_from(sorted(ATTRIBUTES)), st.booleans()),
)


@settings(max_examples=100, deadline=None)
@given(order=st.lists(ORDER_KEYS, max_size=3))
def test_generated_orderings_match_the_python_model(engine: Engine, order: list[OrderKey]) -> None:
    stmt = build_search_query(EXPERIMENTS, None, order, "ALL")
    with Session(engine) as s:
        got = [run.id for run in s.scalars(stmt)]
    assert got == expected_order(RUNS, order)


# --- explicit cases ---------------------------------------------------------------


def ids(predicate) -> list[str]:  # type: ignore[no-untyped-def]
    return expected_order([r for r in RUNS if predicate(r)], [])


def test_no_filter_returns_every_run_newest_first(engine: Engine) -> None:
    assert search(engine, None) == ids(lambda r: True)
    assert search(engine, "  ") == ids(lambda r: True)


def test_view_types_and_experiments(engine: Engine) -> None:
    assert search(engine, None, view="ACTIVE_ONLY") == ids(lambda r: r.lifecycle_stage == "active")
    assert search(engine, None, view=ViewType.DELETED_ONLY) == ids(
        lambda r: r.lifecycle_stage == "deleted"
    )
    assert search(engine, None, experiments=[2]) == ids(lambda r: r.experiment_id == 2)
    assert search(engine, None, experiments=[]) == []
    assert search(engine, None, experiments=[3]) == []
    with pytest.raises(InvalidInput, match="view_type"):
        build_search_query([1], None, [], "SOME")


def test_or_parentheses_and_not(engine: Engine) -> None:
    got = search(engine, "(params.model = 'rf' OR params.model = 'xgb') AND NOT tags.team IS NULL")
    assert got == ids(lambda r: r.params.get("model") in ("rf", "xgb") and "team" in r.tags)
    assert got  # the data set must make this case meaningful


def test_like_is_case_sensitive_and_ilike_is_not(engine: Engine) -> None:
    def model_in(*values: str):  # type: ignore[no-untyped-def]
        return lambda r: r.params.get("model") in values

    assert search(engine, "params.model LIKE 'r%'") == ids(model_in("rf", "ré"))
    assert search(engine, "params.model LIKE 'R_'") == ids(model_in("RF", "Ré"))
    assert search(engine, "params.model ILIKE 'r_'") == ids(model_in("rf", "RF", "ré", "Ré"))
    # Only ASCII letters fold on SQLite.
    assert search(engine, "params.model ILIKE 'RÉ'") == []
    assert search(engine, "params.model ILIKE 'Ré'") == ids(model_in("ré", "Ré"))


@pytest.mark.parametrize("pattern", ["[x]", "x*y", "x?y", "%[%", "50%", "a_b"])
def test_glob_metacharacters_are_literal_in_like(engine: Engine, pattern: str) -> None:
    got = search(engine, f"params.model LIKE '{pattern}'")
    assert got == ids(
        lambda r: "model" in r.params and like(r.params["model"], pattern, case_sensitive=True)
    )


def test_like_to_glob() -> None:
    assert like_to_glob("a%b_c*d?e[f]") == "a*b?c[*]d[?]e[[]f]"


def test_in_and_not_in(engine: Engine) -> None:
    assert search(engine, "run_id IN ('r01', 'r02', 'nope')") == ids(
        lambda r: r.id in ("r01", "r02")
    )
    assert search(engine, "attributes.run_id NOT IN ('r01')") == ids(lambda r: r.id != "r01")
    assert search(engine, "datasets.digest IN ('d2', 'd3')") == ids(
        lambda r: any(d[1] in ("d2", "d3") for d in r.datasets)
    )


def test_is_null_and_not_equal_on_params(engine: Engine) -> None:
    assert search(engine, "params.lr IS NULL") == ids(lambda r: "lr" not in r.params)
    assert search(engine, "params.lr IS NOT NULL") == ids(lambda r: "lr" in r.params)
    # MLflow semantics: != needs the key to be present.
    assert search(engine, "params.lr != 'rf'") == ids(
        lambda r: "lr" in r.params and r.params["lr"] != "rf"
    )


def test_nan_metrics_never_match(engine: Engine) -> None:
    nan_runs = {r.id for r in RUNS if "acc" in r.metrics and r.metrics["acc"] is None}
    assert nan_runs
    for text_ in ["metrics.acc != 0", "metrics.acc > -inf", "metrics.acc <= inf"]:
        assert nan_runs.isdisjoint(search(engine, text_))
    assert nan_runs <= set(search(engine, "NOT metrics.acc > -inf"))


def test_datasets_ignore_other_inputs(engine: Engine) -> None:
    assert search(engine, "datasets.digest = 'd9'") == []
    assert search(engine, "datasets.name = 'wine'") == ids(
        lambda r: any(d[0] == "wine" for d in r.datasets)
    )


def test_ordering_puts_missing_values_last(engine: Engine) -> None:
    for direction in ("ASC", "DESC"):
        got = search(engine, None, [f"metrics.acc {direction}"])
        missing = [r.id for r in RUNS if r.metrics.get("acc") is None]
        assert set(got[-len(missing) :]) == set(missing)
        values = [next(r for r in RUNS if r.id == i).metrics["acc"] for i in got[: -len(missing)]]
        assert values == sorted(values, reverse=direction == "DESC")  # type: ignore[type-var]


def test_two_order_keys_on_the_same_table(engine: Engine) -> None:
    order = ["metrics.acc DESC", "metrics.`val/loss`", "params.model", "tags.team DESC", "end_time"]
    assert search(engine, None, order) == expected_order(RUNS, parse_order_by(order))


def test_order_by_rejects_unsortable_keys() -> None:
    with pytest.raises(InvalidInput):
        build_search_query([1], None, [OrderKey("datasets", "name")], "ALL")


def test_injection_is_inert(engine: Engine) -> None:
    evil = "'; DROP TABLE runs; --"
    for text_ in [
        f'params.model = "{evil}"',
        f"params.`{evil}` = 'x'",
        f'run_id IN ("{evil}")',
        f'tags.team LIKE "%{evil}%"',
        f'datasets.name ILIKE "{evil}"',
    ]:
        stmt = build_search_query(EXPERIMENTS, parse_filter(text_), [], "ALL")
        assert "DROP" not in str(stmt.compile(engine))
        assert search(engine, text_) == []
    assert search(engine, None, [f"params.`{evil}`"]) == ids(lambda r: True)
    assert "runs" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RunRow)).scalar() == len(RUNS)


def test_postgresql_rendering_binds_everything_and_disables_like_escapes() -> None:
    expr = parse_filter("params.p LIKE 'a\\\\%' OR tags.t ILIKE 'B%' AND metrics.m > 3")
    sql = str(build_search_query([1], expr, [], "ALL").compile(dialect=postgresql.dialect()))
    assert "LIKE %(param_1)s::VARCHAR ESCAPE ''" in sql
    assert "ILIKE %(param_2)s::VARCHAR ESCAPE ''" in sql
    assert "a\\" not in sql and "B%" not in sql


def test_every_attribute_has_a_column() -> None:
    assert ATTRIBUTE_COLUMNS.keys() == ATTRIBUTES


def test_keyed_filters_and_order_join_once_on_the_primary_key(engine: Engine) -> None:
    """Linear plans whatever the statistics: every keyed lookup is a primary-key search."""
    expr = parse_filter("metrics.acc > 0.5 and (params.model = 'rf' or metrics.acc < 0.1)")
    order = parse_order_by(["metrics.acc DESC", "tags.team"])
    stmt = build_search_query(EXPERIMENTS, expr, order, "ACTIVE_ONLY")
    compiled = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    assert compiled.count("LEFT OUTER JOIN") == 3  # acc, model, team: acc joined once
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
    keyed = [step for step in plan if any(t in step for t in ("latest_metrics", "params", "tags"))]
    assert len(keyed) == 3 and all("(run_id=? AND key=?)" in step for step in keyed), plan
