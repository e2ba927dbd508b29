"""The metric ingest hot path: bulk inserts straight through the driver.

History rows go in with one ``executemany`` on SQLite and one ``COPY`` on
PostgreSQL; ``latest_metrics`` is upserted once per key per batch, keeping the
point with the highest (step, timestamp, value) as MLflow does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_SQLITE_INSERT = "INSERT INTO metrics (run_id, key, step, timestamp, value) VALUES (?, ?, ?, ?, ?)"

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


def _rank(step: int, ts: int, value: float | None) -> tuple[int, int, float]:
    return (step, ts, -1e308 if value is None else value)


def latest_points(
    rows: Sequence[tuple[str, int, int, float | None]],
) -> dict[str, tuple[int, int, float | None]]:
    """Per key, the point that wins ``latest_metrics``."""
    best: dict[str, tuple[int, int, float | None]] = {}
    for key, step, ts, value in rows:
        cur = best.get(key)
        if cur is None or _rank(step, ts, value) >= _rank(*cur):
            best[key] = (step, ts, value)
    return best


def insert_metrics(
    session: Session, dialect: str, run_id: str, rows: Sequence[tuple[str, int, int, float | None]]
) -> None:
    """Append ``rows`` (key, step, timestamp, value) to a run's history and update latest."""
    if not rows:
        return
    conn = session.connection()
    if dialect == "postgresql":
        raw: Any = conn.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy(  # type: ignore[union-attr]
                "COPY metrics (run_id, key, step, timestamp, value) FROM STDIN"
            ) as copy,
        ):
            for key, step, ts, value in rows:
                copy.write_row((run_id, key, step, ts, value))
    else:
        conn.exec_driver_sql(
            _SQLITE_INSERT, [(run_id, key, step, ts, value) for key, step, ts, value in rows]
        )
    latest = latest_points(rows)
    conn.execute(
        _UPSERT_LATEST,
        [
            {"run_id": run_id, "key": k, "step": s, "timestamp": t, "value": v}
            for k, (s, t, v) in latest.items()
        ],
    )
