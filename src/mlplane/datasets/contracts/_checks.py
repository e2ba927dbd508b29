"""The streaming pass: :class:`ContractCheck` folds record batches into a report."""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa

from mlplane.datasets.contracts._columns import _CHECKS, _At, _Check
from mlplane.datasets.contracts._kinds import _kernel_type, _value_type
from mlplane.datasets.contracts._model import Contract, Expectation
from mlplane.datasets.contracts._report import ContractReport, ExpectationResult, _n
from mlplane.datasets.contracts._sql import _run_sql
from mlplane.errors import InvalidInput


class ContractCheck:
    """Check a contract over record batches in one streaming pass.

    Call :meth:`update` for every batch of every table file, in file order,
    then :meth:`finish` once.

    Args:
        contract: The contract to check.
        schema: The Arrow schema every batch follows.
        now: The time ``freshness`` measures from (default: now, UTC; naive
            means UTC).

    Raises:
        InvalidInput: The contract does not fit the schema.
    """

    def __init__(
        self, contract: Contract, schema: pa.Schema, *, now: datetime | None = None
    ) -> None:
        contract.validate_schema(schema, source="the table")
        now = now or datetime.now(UTC)
        self.now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        self._contract = contract
        self._rows = 0
        self._offsets: dict[str, int] = {}
        self._segments: list[tuple[int, str, int]] = []  # (ordinal, file, row) per run of a file
        self._types = {
            name: schema.field(schema.get_all_field_indices(name)[0]).type
            for name in contract.columns
        }
        self._checks: list[_Check | None] = []
        self._by_column: dict[str, list[_Check]] = {}
        for exp in contract.expectations:
            check = None
            if exp.column is not None:
                dtype = _value_type(self._types[exp.column])
                check = _CHECKS[exp.kind](exp, dtype if exp.kind == "type" else _kernel_type(dtype))
                self._by_column.setdefault(exp.column, []).append(check)
            self._checks.append(check)

    def update(self, batch: pa.RecordBatch, *, file: str) -> None:
        """Fold one record batch of ``file`` into the check.

        Args:
            batch: The next batch; rows are numbered on from the previous
                batch of the same file.
            file: The table file the batch comes from, as reports should name it.

        Raises:
            InvalidInput: The batch lacks a contract column or its type cannot
                be cast to the schema's.
        """
        if not batch.num_rows:
            return
        row = self._offsets.get(file, 0)
        if not self._segments or self._segments[-1][1] != file:
            self._segments.append((self._rows, file, row))
        at = _At(file, row, self._rows)
        for name, checks in self._by_column.items():
            arr = self._column(batch, name, file)
            for check in checks:
                check.update(arr, at)
        self._rows += batch.num_rows
        self._offsets[file] = row + batch.num_rows

    def _column(self, batch: pa.RecordBatch, name: str, file: str) -> pa.Array:
        found = batch.schema.get_all_field_indices(name)
        if not found:
            raise InvalidInput(
                f"contract names column {name!r}, which {file} does not have;"
                f" its columns: {', '.join(batch.schema.names)}"
            )
        arr, want = batch.column(found[0]), _value_type(self._types[name])
        if pa.types.is_dictionary(arr.type):  # the table pass reads text dictionary-encoded
            arr = arr.dictionary_decode()
        if arr.type != want:
            try:
                arr = arr.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidInput(
                    f"column {name!r} of {file} has type {arr.type}, which cannot be read as"
                    f" the table's {want}"
                ) from None
        return arr.cast(pa.large_string()) if pa.types.is_string_view(arr.type) else arr

    def _locate(self, ordinal: int) -> tuple[str, int]:
        i = bisect.bisect_right(self._segments, ordinal, key=lambda s: s[0]) - 1
        start, file, row = self._segments[i]
        return file, row + ordinal - start

    def finish(
        self, sql_files: Sequence[str | os.PathLike[str]] = (), *, sql_format: str = "csv"
    ) -> ContractReport:
        """Finish the pass and run custom SQL.

        Args:
            sql_files: The stored table files, exposed to custom SQL as a
                DuckDB view named ``data``.
            sql_format: ``csv``, ``parquet`` or ``json`` (JSON Lines).

        Returns:
            The report; failing data never raises.

        Raises:
            InvalidInput: SQL expectations without files, an unknown format,
                or a query DuckDB cannot run.
        """
        sql = [e for e in self._contract.expectations if e.kind == "sql"]
        counts = _run_sql(sql, sql_files, sql_format) if sql else {}
        results = []
        for exp, check in zip(self._contract.expectations, self._checks, strict=True):
            if check is not None:
                results.append(check.result(self))
            elif exp.kind == "row_count":
                results.append(self._row_count(exp))
            else:
                n, name = counts[exp.args["name"]], exp.args["name"]
                seen = f"{_n(n, 'row')} returned by {name}"
                results.append(
                    ExpectationResult("sql", None, exp.severity, not n, n, [], seen, name)
                )
        return ContractReport(results)

    def _row_count(self, exp: Expectation) -> ExpectationResult:
        lo, hi, n = exp.args.get("min"), exp.args.get("max"), self._rows
        seen = _n(n, "row")
        if lo is not None and n < lo:
            seen += f" < min {lo}"
        elif hi is not None and n > hi:
            seen += f" > max {hi}"
        ok = "<" not in seen and ">" not in seen
        return ExpectationResult("row_count", None, exp.severity, ok, int(not ok), [], seen)
