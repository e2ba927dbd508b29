"""The one streaming pass over a version's table files, before anything is stored.

Each record batch goes through PII detection (and masking, hashing or dropping
by policy), then the quality contract and the profiler see the batch as it
will be stored. When a policy changed something, the transformed batches are
written to a private work folder in the file's own format and that file is
what gets chunked: the unmasked bytes never reach the store. Memory stays
bounded by the batch size whatever the size of the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mlplane.datasets import profile as profile_mod
from mlplane.datasets.contracts import Contract, ContractCheck
from mlplane.datasets.passes import PassResult, TableResult
from mlplane.datasets.pii import PiiPolicy, PiiScanner, detect_columns
from mlplane.errors import InvalidInput

BATCH_ROWS = 262_144
# Cells per batch: memory stays bounded by the batch whatever the width (20 columns: the
# rows above), and narrow tables get longer batches, so less Python per row.
_BATCH_CELLS = 20 * BATCH_ROWS
_CSV_BLOCK = 8 << 20  # a CSV batch is a block: ~60,000 rows, few enough batches for Python


def _batches(path: str | Path, fmt: str, rel: str) -> tuple[pa.Schema, pa.Schema, Any]:
    """The file's schema, the schema its batches come in, and the batches.

    Text columns come dictionary-encoded (the second schema): Parquet and CSV decode them
    so, without building the strings, and PII detection and the profile then read each
    distinct value of a batch once instead of every cell.
    """
    try:
        if fmt == "parquet":
            # Buffered column reads and no read-ahead: pyarrow's defaults hold whole row
            # groups (a million rows each) plus the next ones, over 1 GiB for wide files.
            scan = pads.ParquetFragmentScanOptions(
                pre_buffer=False, use_buffered_stream=True, buffer_size=1 << 20
            )
            schema = pads.dataset(
                str(path), format=pads.ParquetFileFormat(default_fragment_scan_options=scan)
            ).schema
            text = [f.name for f in schema if _is_text(f.type)]
            file_format: Any = pads.ParquetFileFormat(
                read_options=pads.ParquetReadOptions(dictionary_columns=text),
                default_fragment_scan_options=scan,
            )
            batches = pads.dataset(str(path), format=file_format).to_batches(
                batch_size=_batch_rows(schema), batch_readahead=0, fragment_readahead=0
            )
        elif fmt == "csv":
            read = pacsv.ReadOptions(block_size=_CSV_BLOCK)
            schema = pads.dataset(str(path), format=pads.CsvFileFormat(read_options=read)).schema
            # The types fixed from the first block: inferring again per block costs as much
            # as the parse itself.
            convert = pacsv.ConvertOptions(column_types=_encoded(schema))
            file_format = pads.CsvFileFormat(read_options=read, convert_options=convert)
            batches = pads.dataset(str(path), format=file_format).to_batches(
                batch_size=_batch_rows(schema)
            )
        else:
            dataset = pads.dataset(str(path), format=fmt)
            schema = dataset.schema
            batches = dataset.to_batches(batch_size=_batch_rows(schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise InvalidInput(f"{rel} is not a readable {_kind(fmt)} file: {exc}") from None
    encoded = _encoded(schema)
    return schema, encoded, (_encode(b, encoded) for b in _guarded_iter(rel, fmt, batches))


def _batch_rows(schema: pa.Schema) -> int:
    return max(16_384, min(1 << 20, _BATCH_CELLS // max(1, len(schema))))


def _is_text(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def _encoded(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its text columns dictionary-encoded."""
    return pa.schema(
        [f.with_type(pa.dictionary(pa.int32(), f.type)) if _is_text(f.type) else f for f in schema],
        metadata=schema.metadata,
    )


def _encode(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch in ``schema``'s types: text dictionary-encoded where the reader did not."""
    columns = []
    for arr, f in zip(batch.columns, schema, strict=True):
        if arr.type != f.type:
            if pa.types.is_dictionary(f.type) and not pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_encode()
            arr = arr.cast(f.type) if arr.type != f.type else arr
        columns.append(arr)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _decoded(schema: pa.Schema, encoded: set[str]) -> pa.Schema:
    """``schema`` with the columns of ``encoded`` back to their text type."""
    return pa.schema(
        [
            f.with_type(f.type.value_type)
            if f.name in encoded and pa.types.is_dictionary(f.type)
            else f
            for f in schema
        ],
        metadata=schema.metadata,
    )


def _decode(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = [
        arr if arr.type == f.type else arr.cast(f.type)
        for arr, f in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _kind(fmt: str) -> str:
    return {"csv": "CSV", "parquet": "Parquet", "json": "JSON Lines"}.get(fmt, fmt)


class _Writer:
    """Writes transformed batches in the source file's format."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fmt = fmt
        self._fh: Any = None
        if fmt == "csv":
            self._w: Any = pacsv.CSVWriter(str(path), schema)
        elif fmt == "parquet":
            self._w = pq.ParquetWriter(str(path), schema)
        else:
            self._w = None
            self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, batch: pa.RecordBatch) -> None:
        if self._w is not None:
            self._w.write(batch) if self.fmt == "csv" else self._w.write_batch(batch)
            return
        lines = [orjson.dumps(row, default=str) for row in batch.to_pylist()]
        self._fh.write(b"\n".join(lines) + (b"\n" if lines else b""))

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
        if self._fh is not None:
            self._fh.close()


def scan_tables(
    files: Sequence[tuple[str, str | Path]],
    *,
    contract: Contract | None,
    policy: PiiPolicy,
    hmac_key: bytes,
    workdir: Path,
) -> PassResult:
    """Run PII handling, the contract and the profile over every table file of a version.

    Raises:
        InvalidInput: a file cannot be read as its format says, or the contract does not
            fit the table (unknown column, tables of different columns under one contract).
    """
    tables = [(rel, path, fmt) for rel, path in files if (fmt := profile_mod.table_format(rel))]
    out = PassResult()
    if contract is not None and not tables:
        raise InvalidInput("a contract needs table files (CSV, Parquet or JSON Lines) to check")
    check: ContractCheck | None = None
    first_columns: list[str] | None = None
    stored_for_sql: list[Path] = []
    for rel, path, fmt in tables:
        schema, physical, batches = _batches(path, fmt, rel)
        encoded = {f.name for f, g in zip(schema, physical, strict=True) if f.type != g.type}
        drop: set[str] = set()
        if policy.default == "drop":
            _, _, again = _batches(path, fmt, rel)
            drop = detect_columns(physical, again)
        scanner = PiiScanner(physical, policy, hmac_key=hmac_key, drop_columns=drop)
        out_schema = scanner.output_schema
        stored_schema = _decoded(out_schema, encoded)
        if contract is not None:
            if first_columns is None:
                contract.validate_schema(out_schema, source=rel)
                first_columns = out_schema.names
                check = ContractCheck(contract, out_schema)
            elif out_schema.names != first_columns:
                raise InvalidInput(
                    f"a contract checks one table, but {rel} has columns "
                    f"{', '.join(out_schema.names)} and {tables[0][0]} has "
                    f"{', '.join(first_columns)}: add them as separate datasets"
                )
        transforms = _transforms(policy, schema, drop)
        target = workdir / "masked" / rel
        writer = _Writer(target, fmt, stored_schema) if transforms else None
        profiler = profile_mod.Profiler(stored_schema)
        try:
            for batch in batches:
                clean = scanner.process(batch, file=rel)
                profiler.update(clean)
                if check is not None:
                    check.update(clean, file=rel)
                if writer is not None:
                    writer.write(_decode(clean, stored_schema))
        finally:
            if writer is not None:
                writer.close()
        changed = writer is not None and scanner.changed
        if writer is not None and not changed:
            target.unlink(missing_ok=True)
        stored = target if changed else Path(path)
        stored_for_sql.append(stored)
        out.tables[rel] = TableResult(profiler.result(), scanner.report(), stored, changed)
    if check is not None:
        formats = {fmt for _, _, fmt in tables}
        if len(formats) > 1 and any(e.kind == "sql" for e in contract.expectations):  # type: ignore[union-attr]
            raise InvalidInput(
                "SQL expectations read one kind of table file, but this version mixes "
                f"{', '.join(sorted(_kind(f) for f in formats))}: add them as separate datasets"
            )
        out.quality = check.finish(stored_for_sql, sql_format=formats.pop())
    return out


def _transforms(policy: PiiPolicy, schema: pa.Schema, drop: set[str]) -> bool:
    """Whether this policy may change the file (so the pass must write a copy)."""
    acting = {"mask", "hash", "drop"}
    if drop or policy.default in acting:
        return True
    return any(a in acting for c, a in policy.columns.items() if c in schema.names)


def _guarded_iter(rel: str, fmt: str, batches: Any) -> Any:
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise InvalidInput(f"{rel} is not a readable {_kind(fmt)} file: {exc}") from None
        yield batch
