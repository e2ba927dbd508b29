"""SQL over dataset versions with DuckDB: ``SELECT … FROM 'transactions@3'``.

Every quoted ``'name@version'`` in the query is replaced by a DuckDB table
function over that version's table files, fetched into the bounded local
cache of decrypted versions. DuckDB streams the files; its threads and memory
are bounded so a query over a large version does not take the machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlplane.errors import InvalidInput

REF = re.compile(r"'([A-Za-z0-9][A-Za-z0-9_.\-]{0,249}@[A-Za-z0-9][A-Za-z0-9_.\-]{0,99})'")
_READERS = {
    "csv": "read_csv([{files}], auto_detect=true, union_by_name=true)",
    "parquet": "read_parquet([{files}], union_by_name=true)",
    "json": "read_json([{files}], format='newline_delimited')",
}


def refs_in(query: str) -> list[str]:
    """The ``name@version`` references a query reads, in order, without repeats."""
    return list(dict.fromkeys(REF.findall(query)))


def rewrite(query: str, tables: dict[str, tuple[str, Sequence[Path]]]) -> str:
    """Replace each ``'name@version'`` by a reader over its files (format, paths)."""

    def sub(m: re.Match[str]) -> str:
        fmt, files = tables[m.group(1)]
        listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        return _READERS[fmt].format(files=listed)

    return REF.sub(sub, query)


def connect(memory_limit: str = "1GB", threads: int = 2) -> Any:
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute(f"SET threads={int(threads)}")
    return con


def run(
    query: str,
    resolve: Callable[[str], tuple[str, Sequence[Path]]],
    *,
    con: Any = None,
) -> Any:
    """Run ``query``; ``resolve(ref)`` gives a version's table format and local files.

    Returns a DuckDB relation (fetch it as Arrow, or COPY it to a file, streaming).
    """
    import duckdb

    refs = refs_in(query)
    if not refs:
        raise InvalidInput(
            "the query names no dataset version: write FROM 'name@version' "
            "(e.g. FROM 'transactions@3' or 'transactions@latest')"
        )
    sql = rewrite(query, {ref: resolve(ref) for ref in refs})
    con = con or connect()
    try:
        return con.sql(sql)
    except duckdb.Error as exc:
        raise InvalidInput(f"the query failed: {exc}") from None
