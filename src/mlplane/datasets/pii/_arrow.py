"""Arrow helpers for the scanner: text views of columns and the union pass over blocks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplane.datasets.pii._detectors import _UNION

_BLOCK_BYTES = 4096  # text per block in the union pass


def _is_text(dtype: pa.DataType) -> bool:
    view = getattr(pa.types, "is_string_view", lambda _: False)(dtype)
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or view)


def _bools(arr: pa.Array) -> np.ndarray:
    if arr.null_count:
        arr = arr.fill_null(False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _match(values: pa.Array, pattern: str) -> np.ndarray:
    return _bools(pc.match_substring_regex(values, pattern))


def _blocks(values: pa.Array, rows: int) -> tuple[pa.Array, np.ndarray]:
    """Each run of ``rows`` values as one string, ``\\n`` between values."""
    if values.null_count:  # read null slots as their (normally empty) bytes: no copy
        values = pa.Array.from_buffers(
            values.type, len(values), [None, *values.buffers()[1:3]], offset=values.offset
        )
    offsets = np.append(np.arange(0, len(values), rows), len(values)).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pc.binary_join(lists, pa.scalar("\n", values.type)), offsets


def _text_bytes(values: pa.Array) -> int:
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], dtype=width)
    return int(offsets[values.offset + len(values)] - offsets[values.offset])


def _candidate_rows(columns: list[pa.Array]) -> list[np.ndarray]:
    """Rows of each text array that may hold PII: those of blocks where the union matches.

    One kernel call covers all arrays: compiling the union and warming its DFA
    costs about a millisecond a call, as much as scanning a megabyte. Blocks
    are small, so the rows of a hit block are few enough to match per row.
    """
    found = [np.empty(0, dtype=np.int64) for _ in columns]
    firsts: dict[pa.DataType, list[tuple[int, pa.Array, np.ndarray]]] = {}
    for i, values in enumerate(columns):
        if len(values) and values.null_count < len(values):
            per_row = max(1, _text_bytes(values) // len(values))
            rows = min(1024, max(1, _BLOCK_BYTES // per_row))
            firsts.setdefault(values.type, []).append((i, *_blocks(values, rows)))
    for group in firsts.values():
        joined_all = [joined for _, joined, _ in group]
        hits = _match(joined_all[0] if len(group) == 1 else pa.concat_arrays(joined_all), _UNION)
        start = 0
        for i, joined, offsets in group:
            hit, start = hits[start : start + len(joined)], start + len(joined)
            if hit.any():
                found[i] = np.flatnonzero(np.repeat(hit, np.diff(offsets)))
    return found


def _text_values(col: pa.Array) -> pa.Array:
    """The text a column's detection reads: a dictionary's values, or the column itself."""
    values = col.dictionary if pa.types.is_dictionary(col.type) else col
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    return values.cast(pa.string())  # string_view: the kernels here read offsets


def _as_text(col: pa.Array, out_type: pa.DataType) -> pa.Array:
    try:
        return col.cast(out_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], out_type)
