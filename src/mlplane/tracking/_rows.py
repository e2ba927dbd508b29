"""Row → entity conversion and bulk loading of run data for a page of runs."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from mlplane.tracking.entities import Experiment, Run, RunData, RunInfo, RunInput
from mlplane.tracking.tables import (
    ExperimentRow,
    ExperimentTagRow,
    LatestMetricRow,
    ParamRow,
    RunInputRow,
    TagRow,
)

_CHUNK = 500


def value_out(value: float | None) -> float:
    return math.nan if value is None else value


def experiment(row: ExperimentRow, project: str, tags: dict[str, str]) -> Experiment:
    return Experiment(
        experiment_id=str(row.id),
        name=row.name,
        project=project,
        artifact_location=row.artifact_location,
        lifecycle_stage=row.lifecycle_stage,
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
        description=row.description,
        tags=tags,
    )


def experiment_tags(session: Session, ids: Sequence[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        for r in session.execute(
            select(
                ExperimentTagRow.experiment_id, ExperimentTagRow.key, ExperimentTagRow.value
            ).where(ExperimentTagRow.experiment_id.in_(chunk))
        ):
            out[r[0]][r[1]] = r[2]
    return out


def run_info(row: Any) -> RunInfo:
    """From a ``RunRow`` or a plain row of the ``runs`` columns."""
    return RunInfo(
        run_id=row.id,
        run_name=row.name,
        experiment_id=str(row.experiment_id),
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        lifecycle_stage=row.lifecycle_stage,
        user_id=row.user_id,
        artifact_uri=row.artifact_uri,
        parent_run_id=row.parent_run_id,
    )


def _by_runs(*columns: Any) -> tuple[Select[Any], Select[Any]]:
    """``SELECT columns WHERE run_id IN (:ids)``, built once, so a page of runs costs the
    driver's work and little of SQLAlchemy's: as an expanding IN (SQLite) and as ``= ANY(:ids)``
    with one array parameter (PostgreSQL: the driver parses and plans the same statement text
    whatever the page size)."""
    run_id = columns[0]
    return (
        select(*columns).where(run_id.in_(bindparam("ids", expanding=True))),
        select(*columns).where(run_id == any_(bindparam("ids", type_=ARRAY(String)))),
    )


_PARAMS = _by_runs(ParamRow.run_id, ParamRow.key, ParamRow.value)
_TAGS = _by_runs(TagRow.run_id, TagRow.key, TagRow.value)
_METRICS = _by_runs(
    LatestMetricRow.run_id,
    LatestMetricRow.key,
    LatestMetricRow.value,
    LatestMetricRow.timestamp,
    LatestMetricRow.step,
)
_INPUTS = tuple(
    q.order_by(RunInputRow.id)
    for q in _by_runs(
        RunInputRow.run_id,
        RunInputRow.kind,
        RunInputRow.name,
        RunInputRow.version,
        RunInputRow.digest,
        RunInputRow.source,
        RunInputRow.context,
        RunInputRow.unhandled_pii,  # read as allowed despite unhandled PII
        RunInputRow.source_type,
        RunInputRow.schema,
        RunInputRow.profile,
    )
)


def load_runs(session: Session, rows: Sequence[Any]) -> list[Run]:
    """Full runs (params, latest metrics, tags, inputs) for ``rows``, in four queries a chunk.

    The queries run on the session's connection as Core statements: plain tuples, no ORM
    loading, which is most of a search's time otherwise (a page of 25 runs has 1,300
    latest metrics)."""
    ids = [r.id for r in rows]
    params: dict[str, dict[str, str]] = defaultdict(dict)
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    points: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    inputs: dict[str, list[RunInput]] = defaultdict(list)
    conn = session.connection()
    one_array = conn.dialect.name == "postgresql"
    dialect = 1 if one_array else 0
    size = (len(ids) or 1) if one_array else _CHUNK
    for i in range(0, len(ids), size):
        bound = {"ids": ids[i : i + size]}
        for run, k, v in conn.execute(_PARAMS[dialect], bound).all():
            params[run][k] = v
        for run, k, v in conn.execute(_TAGS[dialect], bound).all():
            tags[run][k] = v
        for run, k, num, ts, step in conn.execute(_METRICS[dialect], bound).all():
            metrics[run][k] = value_out(num)
            points[run][k] = (ts, step)
        for row in conn.execute(_INPUTS[dialect], bound).all():
            run, kind, name, version, digest, source, context, unhandled = row[:8]
            inputs[run].append(
                RunInput(
                    kind,
                    name,
                    version,
                    digest,
                    source,
                    context,
                    allow_pii=bool(unhandled),
                    source_type=row.source_type or "",
                    schema=row.schema or "",
                    profile=row.profile or "",
                )
            )
    return [
        Run(
            info=run_info(r),
            data=RunData(
                params=params[r.id],
                metrics=metrics[r.id],
                tags=tags[r.id],
                metric_points=points[r.id],
            ),
            inputs=inputs[r.id],
        )
        for r in rows
    ]
