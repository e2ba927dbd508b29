"""The metric ingest hot path: bulk inserts straight through the driver.

History rows go in with one ``executemany`` on SQLite and one ``COPY`` on
PostgreSQL; ``latest_metrics`` is upserted once per key per batch, keeping the
point with the highest (step, timestamp, value) as MLflow does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mlplane.tracking.tables import MetricKeyRow
from mlplane.tracking.validation import Columns

_SQLITE_INSERT = (
    "INSERT INTO metrics (run_seq, key_id, step, timestamp, value) VALUES (?, ?, ?, ?, ?)"
)

_UPSERT_LATEST = text(
    "INSERT INTO latest_metrics (run_id, key, step, timestamp, value) "
    "VALUES (:run_id, :key, :step, :timestamp, :value) "
    "ON CONFLICT (run_id, key) DO UPDATE SET "
    "step = excluded.step, timestamp = excluded.timestamp, value = excluded.value "
    "WHERE excluded.step > latest_metrics.step "
    "OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) "
    "OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp "
    "AND COALESCE(excluded.value, -1e308) >= COALESCE(latest_metrics.value, -1e308))"
)


def _later(ts: int, value: float | None, cur: tuple[int, int, float | None]) -> bool:
    if ts != cur[1]:
        return ts > cur[1]
    low = -1e308  # NaN (None) ranks lowest
    return (low if value is None else value) >= (low if cur[2] is None else cur[2])


def latest_points(cols: Columns) -> dict[str, tuple[int, int, float | None]]:
    """Per key, the point that wins ``latest_metrics``: highest step, then time, then value."""
    best: dict[str, tuple[int, int, float | None]] = {}
    for k, step, ts, value in zip(*cols, strict=True):
        cur = best.get(k)
        if cur is None or step > cur[0] or (step == cur[0] and _later(ts, value, cur)):
            best[k] = (step, ts, value)
    return best


def insert_metrics(
    session: Session,
    dialect: str,
    run: tuple[str, int],
    cols: Columns,
    key_ids: Mapping[str, int],
) -> None:
    """Append checked columns (keys, steps, timestamps, values) to the history of
    ``run`` (its id and seq) and update its latest values. ``key_ids`` interns keys."""
    if not cols[0]:
        return
    run_id, run_seq = run
    conn = session.connection()
    keys, steps, stamps, values = cols
    rows = zip(repeat(run_seq), map(key_ids.__getitem__, keys), steps, stamps, values)
    if dialect == "postgresql":
        raw: Any = conn.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy("COPY metrics (run_seq, key_id, step, timestamp, value) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    else:
        conn.exec_driver_sql(_SQLITE_INSERT, list(rows))
    conn.execute(
        _UPSERT_LATEST,
        [
            {"run_id": run_id, "key": k, "step": s, "timestamp": t, "value": v}
            for k, (s, t, v) in latest_points(cols).items()
        ],
    )


def intern_keys(db_session_factory: Any, keys: Iterable[str]) -> dict[str, int]:
    """Ids of metric keys, created on first use (race-safe across processes).

    Runs in its own committed transaction, so an id handed out is never rolled
    back under a caller that caches it.
    """
    wanted = sorted(set(keys))
    with db_session_factory() as s:
        conn = s.connection()
        stmt = "INSERT INTO metric_keys (key) VALUES (:key) ON CONFLICT (key) DO NOTHING"
        conn.execute(text(stmt), [{"key": k} for k in wanted])
        found = conn.execute(
            select(MetricKeyRow.key, MetricKeyRow.id).where(MetricKeyRow.key.in_(wanted))
        ).all()
    return {k: i for k, i in found}
