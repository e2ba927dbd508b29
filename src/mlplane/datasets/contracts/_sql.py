"""Custom SQL expectations, run in DuckDB over the stored table files."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mlplane.datasets.contracts._kinds import SQL_FORMATS
from mlplane.datasets.contracts._model import Expectation
from mlplane.errors import InvalidInput


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _run_sql(
    expectations: Sequence[Expectation],
    files: Sequence[str | os.PathLike[str]],
    file_format: str,
) -> dict[str, int]:
    """Rows each query returns, with DuckDB confined to ``files``."""
    import duckdb

    names = ", ".join(e.args["name"] for e in expectations)
    if not files:
        raise InvalidInput(
            f"the contract has SQL expectations ({names}); pass sql_files to run them"
        )
    if file_format not in SQL_FORMATS:
        raise InvalidInput(f"sql_format {file_format!r} is not one of {', '.join(SQL_FORMATS)}")
    paths = [os.path.abspath(os.fspath(p)) for p in files]
    listed = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
    reader = {
        "csv": f"read_csv({listed}, auto_detect=true)",
        "parquet": f"read_parquet({listed})",
        "json": f"read_json({listed}, format='newline_delimited')",
    }[file_format]
    con = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "512MB"})
    try:
        con.execute(f"CREATE VIEW data AS SELECT * FROM {reader}")
        # The queries come from users: they may read `data`, nothing else on this machine.
        con.execute(f"SET allowed_paths = {listed}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        counts = {}
        for e in expectations:
            query = e.args["query"].strip().rstrip(";")
            try:
                row = con.execute(f"SELECT count(*) FROM (\n{query}\n) AS failing").fetchone()
            except duckdb.Error as exc:
                raise InvalidInput(
                    f"contract sql {e.args['name']!r} does not run: {exc}".strip()
                ) from None
            counts[e.args["name"]] = int(row[0]) if row else 0
        return counts
    finally:
        con.close()
