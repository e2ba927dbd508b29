"""The PII scanner: detection, report tallies and the mask/hash/drop transforms per batch."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplane.datasets.pii._arrow import (
    _as_text,
    _blocks,
    _bools,
    _candidate_rows,
    _is_text,
    _match,
    _text_values,
)
from mlplane.datasets.pii._detectors import _DETECTORS, _REST, _Detector, _name_hint
from mlplane.datasets.pii._policy import PiiPolicy
from mlplane.datasets.pii._report import _MAX_EXAMPLES, ColumnFinding, PiiReport
from mlplane.errors import InvalidInput

_REDACTED = "[REDACTED]"  # explicit mask on a cell where nothing was detected
_CACHE_MAX = 1 << 16  # HMAC tokens kept per scanner


@dataclass(frozen=True, slots=True)
class _Hits:
    positions: np.ndarray  # indices of values with any PII
    kinds: dict[str, np.ndarray]  # kind -> bool, aligned with positions
    residual: pa.Array  # the transformed values at positions


@dataclass(frozen=True, slots=True)
class _Plan:
    index: int
    name: str
    action: str  # mask | hash | drop | allow | block | none
    hint: str | None
    whole: bool  # cells with nothing detected are transformed whole (explicit policy, hint)
    scan: bool  # a text column without a name hint: pattern detection
    explicit: bool


@dataclass
class _Tally:
    kinds: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    examples: list[tuple[str, int]] = field(default_factory=list)


class PiiScanner:
    """Detects PII in record batches and applies a policy to them, one batch at a time.

    One scanner serves all table files of a version (same schema); row
    positions in the report are 0-based within each file.

    Which action a column gets: a per-column policy; else ``drop`` if the
    column is in ``drop_columns``; else the default. A default ``drop`` cannot
    be decided mid-stream for batches already written, so under it only
    name-hint columns and ``drop_columns`` are dropped, and PII found in any
    other column is reported as ``block`` (the version is refused rather than
    stored with PII the user asked to drop); run :func:`detect_columns` first
    and pass its result as ``drop_columns``.

    Under ``mask`` and ``hash`` each detected value inside a cell is replaced
    (``[EMAIL]`` or ``pii_`` + 20 hex digits of its HMAC-SHA256). Cells of
    name-hint columns, and cells where nothing was detected in a column with
    an explicit per-column ``mask``/``hash``, are replaced whole
    (``[PERSON_NAME]``, ``[REDACTED]``, or the HMAC of the exact cell text).

    Args:
        schema: The schema of every batch.
        policy: The policy, from :func:`parse_policy`.
        hmac_key: Key for ``hash`` tokens; at least 16 bytes when anything may be hashed.
        drop_columns: Columns to drop (from a detect-only pre-pass).

    Raises:
        InvalidInput: The policy or ``drop_columns`` names a column the schema
            lacks, or the key is too short.
    """

    def __init__(
        self,
        schema: pa.Schema,
        policy: PiiPolicy,
        *,
        hmac_key: bytes,
        drop_columns: Collection[str] = (),
    ) -> None:
        names = list(schema.names)
        for what, wanted in (("PII policy", policy.columns), ("drop_columns", drop_columns)):
            missing = sorted(set(wanted) - set(names))
            if missing:
                raise InvalidInput(
                    f"{what} names column(s) {', '.join(missing)} that the table lacks; "
                    f"its columns are: {', '.join(names)}"
                )
        self.schema = schema
        self._plans = [self._plan(i, f, policy, set(drop_columns)) for i, f in enumerate(schema)]
        if any(p.action == "hash" for p in self._plans) and len(hmac_key) < 16:
            raise InvalidInput("hmac_key must be at least 16 bytes to hash PII")
        # HMAC (RFC 2104) from precomputed pad states: twice as fast as hmac.digest per value.
        key = bytes(hmac_key)
        key = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._tokens: dict[str, str] = {}
        self._tallies = {p.name: _Tally() for p in self._plans}
        self._offsets: dict[str, int] = {}
        self._changed = False
        fields = [self._out_field(f, p) for f, p in zip(schema, self._plans, strict=True)]
        self._out_types = [f.type for f in fields]
        kept = [f for f, p in zip(fields, self._plans, strict=True) if p.action != "drop"]
        self.output_schema = pa.schema(kept, metadata=schema.metadata)

    @staticmethod
    def _plan(index: int, f: pa.Field, policy: PiiPolicy, drops: set[str]) -> _Plan:
        hint = _name_hint(f.name)
        explicit = policy.columns.get(f.name)
        if explicit is not None:
            action = explicit
        elif f.name in drops:
            action = "drop"
        elif policy.default == "drop":
            action = "drop" if hint else "block"
        else:
            action = policy.default or "none"
        dtype = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        whole = hint is not None or explicit in ("mask", "hash")
        return _Plan(
            index,
            f.name,
            action,
            hint,
            whole,
            _is_text(dtype) and hint is None,
            explicit is not None,
        )

    @staticmethod
    def _out_field(f: pa.Field, plan: _Plan) -> pa.Field:
        if plan.action not in ("mask", "hash") or not (plan.whole or plan.scan):
            return f
        dtype = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        return f.with_type(pa.large_string() if pa.types.is_large_string(dtype) else pa.string())

    @property
    def changed(self) -> bool:
        """Whether any value was transformed or any column dropped so far."""
        return self._changed

    def process(self, batch: pa.RecordBatch, *, file: str) -> pa.RecordBatch:
        """Detect PII in one batch, record it, and return the batch the policy allows to store.

        Args:
            batch: The next batch of ``file``; its schema must be the scanner's.
            file: The table file it comes from (named in report examples).

        Returns:
            The batch to store, with :attr:`output_schema`.

        Raises:
            InvalidInput: The batch's schema differs from the scanner's.
        """
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise InvalidInput(
                f"batch of {file!r} does not have the schema the scanner was made for"
            )
        offset = self._offsets.get(file, 0)
        scanned = [p for p in self._plans if p.scan]
        texts = [_text_values(batch.column(p.index)) for p in scanned]
        candidates = dict(zip((p.index for p in scanned), _candidate_rows(texts), strict=True))
        out = []
        for plan in self._plans:
            column, hit_rows, kinds = self._column(
                plan, batch.column(plan.index), candidates.get(plan.index)
            )
            tally = self._tallies[plan.name]
            tally.kinds.update(kinds)
            tally.rows += len(hit_rows)
            room = _MAX_EXAMPLES - len(tally.examples)
            tally.examples.extend((file, offset + int(r)) for r in hit_rows[:room])
            if plan.action == "drop":
                self._changed = True
            else:
                out.append(column)
        self._offsets[file] = offset + batch.num_rows
        return pa.RecordBatch.from_arrays(out, schema=self.output_schema)

    def report(self) -> PiiReport:
        """The findings so far, in schema order."""
        columns = [
            ColumnFinding(
                column=p.name,
                kinds=dict(t.kinds),
                rows=t.rows,
                examples=list(t.examples),
                name_hint=p.hint,
                action=p.action,
            )
            for p in self._plans
            if (t := self._tallies[p.name]).rows
            or p.action == "drop"
            or (p.explicit and p.action in ("mask", "hash"))
        ]
        return PiiReport(columns)

    # One column of one batch: (array to store, rows with PII, cells per kind).
    def _column(
        self, plan: _Plan, col: pa.Array, candidates: np.ndarray | None
    ) -> tuple[pa.Array, np.ndarray, dict[str, int]]:
        transform = plan.action in ("mask", "hash")
        out_type = self._out_types[plan.index]
        if plan.hint is not None:
            rows = np.flatnonzero(_bools(col.is_valid()))
            kinds = {plan.hint: len(rows)} if len(rows) else {}
            if transform:
                col = self._whole(_as_text(col, out_type), plan.action, f"[{plan.hint.upper()}]")
                self._changed |= bool(len(rows))
            return col, rows, kinds
        if candidates is None:
            if transform and plan.whole:
                col = self._whole(_as_text(col, out_type), plan.action, _REDACTED)
                self._changed |= col.null_count < len(col)
            return col, np.empty(0, dtype=np.int64), {}
        dictionary = pa.types.is_dictionary(col.type)
        values = _text_values(col)
        hits = self._scan(values, candidates, "hash" if plan.action == "hash" else "mask")
        if not len(hits.positions) and not transform:
            return col, hits.positions, {}  # the common case: nothing found, nothing to map
        hit = np.zeros(len(values), dtype=bool)
        hit[hits.positions] = True
        if dictionary:
            valid = _bools(col.is_valid())
            codes = col.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            entry = np.zeros((len(hits.kinds) + 1, len(values) + 1), dtype=bool)
            entry[0, :-1] = hit
            for i, mask in enumerate(hits.kinds.values(), 1):
                entry[i, hits.positions[mask]] = True
            per_row = entry[:, np.where(valid, codes, len(values))]  # the extra entry: null rows
            rows = np.flatnonzero(per_row[0])
            kinds = {k: int(per_row[i].sum()) for i, k in enumerate(hits.kinds, 1)}
        else:
            rows = hits.positions
            kinds = {k: int(v.sum()) for k, v in hits.kinds.items()}
        if not transform:
            return col, rows, {k: n for k, n in kinds.items() if n}
        new = values
        if len(hits.positions):
            new = pc.replace_with_mask(values, pa.array(hit), hits.residual)
        if plan.whole:
            rest = _bools(values.is_valid()) & ~hit
            if rest.any():
                whole = self._whole(values.filter(pa.array(rest)), plan.action, _REDACTED)
                new = pc.replace_with_mask(new, pa.array(rest), whole)
        if dictionary:
            new = new.take(col.indices)
        self._changed |= bool(len(rows)) or (plan.whole and new.null_count < len(new))
        return new.cast(out_type), rows, {k: n for k, n in kinds.items() if n}

    def _whole(self, text: pa.Array, action: str, marker: str) -> pa.Array:
        if action == "mask":
            return pc.if_else(
                text.is_valid(), pa.scalar(marker, text.type), pa.scalar(None, text.type)
            )
        return self._tokens_for(text)

    def _token(self, value: str) -> str:
        token = self._tokens.get(value)
        if token is None:
            if len(self._tokens) >= _CACHE_MAX:
                self._tokens.clear()
            inner, outer = self._inner.copy(), self._outer.copy()
            inner.update(value.encode())
            outer.update(inner.digest())
            token = self._tokens[value] = "pii_" + outer.hexdigest()[:20]
        return token

    def _scan(self, values: pa.Array, positions: np.ndarray, mode: str) -> _Hits:
        """Find, validate and replace (markers or tokens) the PII in text values."""
        if not len(positions):
            return _Hits(positions, {}, values[:0])
        residual = values.take(positions)
        # Before each detector, one pass over the candidates joined tells whether it (with
        # many candidates) or any after it can still match: fewer kernel calls, each of
        # which costs a regex compilation, than a pass per row and detector.
        dense = len(positions) > 4096
        kinds: dict[str, np.ndarray] = {}
        for i, det in enumerate(_DETECTORS):
            if i or dense:
                joined = _blocks(residual, 1 << 16)[0]
                if i and not _match(joined, _REST[i]).any():
                    break
                if dense and not _match(joined, det.pattern).any():
                    continue
            found = _match(residual, det.pattern)
            if not found.any():
                continue
            if det.accept is None and mode == "mask":
                residual = pc.replace_substring_regex(residual, det.pattern, det.marker)
            else:
                rows = np.flatnonzero(found)
                new, ok = self._replace(det, residual.take(rows), mode)
                found[rows[~ok]] = False
                if ok.any():
                    residual = pc.replace_with_mask(
                        residual, pa.array(found), new.filter(pa.array(ok))
                    )
            kinds[det.kind] = kinds[det.kind] | found if det.kind in kinds else found
        any_hit = np.logical_or.reduce([*kinds.values(), np.zeros(len(positions), dtype=bool)])
        keep = np.flatnonzero(any_hit)
        return _Hits(positions[keep], {k: v[keep] for k, v in kinds.items()}, residual.take(keep))

    def _replace(self, det: _Detector, texts: pa.Array, mode: str) -> tuple[pa.Array, np.ndarray]:
        """Replace the valid matches of ``det`` in texts that match it; which ones had any."""
        if mode == "hash" and det.normalise_all is not None:
            # A cell that is one match (an email column) is hashed without a Python pass.
            first = pc.extract_regex(texts, f"(?P<v>{det.pattern})").field("v")
            whole = _bools(pc.equal(pc.binary_length(first), pc.binary_length(texts)))
            if whole.any():
                tokens = self._tokens_for(det.normalise_all(first.filter(pa.array(whole))))
                texts = pc.replace_with_mask(texts, pa.array(whole), tokens)
            if whole.all():
                return texts, whole
            rest = np.flatnonzero(~whole)
            out, ok = self._substitute(det, texts.take(rest).to_pylist(), mode)
            texts = pc.replace_with_mask(texts, pa.array(~whole), pa.array(out, texts.type))
            whole[rest] = ok
            return texts, whole
        out, ok = self._substitute(det, texts.to_pylist(), mode)
        return pa.array(out, texts.type), ok

    def _substitute(
        self, det: _Detector, texts: list[str], mode: str
    ) -> tuple[list[str], np.ndarray]:
        """Python pass over candidate cells: validate each match, replace the valid ones."""
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            text = match.group(0)
            span = (0, len(text)) if det.accept is None else det.accept(text)
            if span is None:
                return text
            count += 1
            start, end = span
            value = text[start:end]
            new = det.marker if mode == "mask" else self._token(det.normalise(value))
            return text[:start] + new + text[end:]

        out, ok = [], np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(texts):
            count = 0
            out.append(det.py.sub(replace, text))
            ok[i] = count > 0
        return out, ok

    def _tokens_for(self, texts: pa.Array) -> pa.Array:
        """HMAC tokens of text values, computed once per distinct value."""
        encoded = texts.dictionary_encode()
        tokens = [self._token(v) for v in encoded.dictionary.to_pylist()]
        return pa.array(tokens, texts.type).take(encoded.indices)


def detect_columns(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> set[str]:
    """Columns with any finding (patterns or a name hint with values), detecting only.

    The pre-pass for a default ``drop`` policy: pass the result to
    :class:`PiiScanner` as ``drop_columns``.

    Args:
        schema: The schema of every batch.
        batches: The batches of all table files of the version.

    Returns:
        The names of the columns where PII was found.
    """
    scanner = PiiScanner(schema, PiiPolicy(), hmac_key=b"")
    for batch in batches:
        scanner.process(batch, file="")
    return {c.column for c in scanner.report().columns if c.rows}
