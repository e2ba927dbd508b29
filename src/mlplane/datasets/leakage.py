"""Train/test leakage check: rows both splits share, and features that give the target away.

**Split overlap.** Each row of both splits becomes one 64-bit hash over the compared columns
(the key columns, or else every column both splits share except the target). Hashes are
computed a whole column at a time with :func:`pandas.util.hash_array` and mixed per row, so
there is no Python loop per row. A column whose type differs between the splits is first cast
to a common type (to string when Arrow knows none). Nulls and float NaN are the same "missing"
value, so two rows missing in the same places are equal, and ``-0.0`` equals ``0.0``. A test
row is *in both* when its hash occurs in train; the duplicates of a split are its rows whose
hash occurs earlier in that split.

**Suspicious features.** With a target, every other shared column is scored on its own, on a
seeded sample of at most ``sample`` rows per split whose target is present:

- class target (at most 20 distinct values): a numeric feature gets ``max(auc, 1 - auc)`` of
  its ROC AUC against a binary target on train (``auc``); a categorical one is target-rate
  encoded on train and its one-vs-rest macro AUC is measured on test (``encoded_auc``), with
  the global rate for categories train never saw, so a per-row id scores 0.5 rather than 1.
  With more than two classes numeric features are scored the same way after being cut into
  at most 20 train quantile bins (their exact values when they have no more): a raw
  one-vs-rest AUC cannot see a middle class, so a copy of the target would pass.
- numeric target: ``|Spearman|`` on train for numeric features (``abs_spearman``); for
  categorical ones, ``|Pearson|`` on test of the train-fitted mean encoding
  (``encoded_abs_corr``).

A missing feature value is a category of its own, or ranks below every number. A score at
or above the threshold (0.98 for AUCs, 0.95 for correlations) means the feature is the target,
or nearly a function of it, and it is flagged.

Limits: two different rows share a hash with a probability of about n²/2⁶⁵; near-duplicates
(rounding, case, whitespace) are not found; nested columns (lists, structs, maps) are neither
compared nor scored; scores look at one feature at a time and, for numeric features on train,
only at monotone relations, so a leak spread over several columns or a non-monotone one goes
unflagged; a non-numeric target with more than 20 values is not scored; scores come from a
sample, so one close to its threshold can move with ``seed``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import roc_auc_score

from mlplane.errors import InvalidInput

Metric = Literal["auc", "abs_spearman", "encoded_auc", "encoded_abs_corr"]
_FeatureFn = Callable[[pa.ChunkedArray, pa.ChunkedArray], "tuple[Metric, float] | None"]

_TARGET_NAMES = ("target", "label", "y", "class")
_MAX_CLASSES = 20
_BINS = 20
_EXAMPLES = 5
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
_HASH_START = np.uint64(0xCBF29CE484222325)
_HASH_MIX = np.uint64(0x100000001B3)

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Overlap:
    """Rows found in both splits, compared by ``by``; ``examples`` are test row indices."""

    by: list[str]
    test_rows: int
    train_rows: int
    in_both: int
    fraction: float
    examples: list[int]
    duplicates_train: int
    duplicates_test: int


@dataclass(frozen=True, slots=True)
class FeatureScore:
    """How well one feature alone predicts the target (1.0: it is the target)."""

    column: str
    metric: Metric
    score: float
    suspicious: bool


@dataclass(frozen=True, slots=True)
class LeakageReport:
    """Result of :func:`check_leakage`; ``features`` are sorted by score, highest first."""

    overlap: Overlap
    target: str | None
    features: list[FeatureScore]
    warnings: list[str]

    @property
    def leaky(self) -> bool:
        """Whether a test row is also in train or a feature is suspicious."""
        return self.overlap.in_both > 0 or any(f.suspicious for f in self.features)

    def to_json(self) -> str:
        """The report as a JSON object, with ``leaky`` added."""
        return json.dumps({**asdict(self), "leaky": self.leaky}, allow_nan=False)

    def summary(self) -> str:
        """The report as a few human-readable lines."""
        o = self.overlap
        by = ", ".join(o.by) if len(o.by) <= 3 else f"{len(o.by)} shared columns"
        line = (
            f"overlap by {by}: {o.in_both:,} of {o.test_rows:,} test rows ({o.fraction:.2%})"
            " are also in train"
        )
        if o.examples:
            line += ", e.g. test rows " + ", ".join(map(str, o.examples))
        lines = [
            line,
            f"duplicates: {o.duplicates_train:,} in train, {o.duplicates_test:,} in test",
        ]
        if self.target is not None:
            lines.append(f"target: {self.target} ({len(self.features)} features scored)")
            flagged = sum(f.suspicious for f in self.features)
            shown = self.features[: max(5, flagged)]  # flagged ones score highest
            lines += [
                f"  {f.column}: {f.metric} {f.score:.3f}" + ("  SUSPICIOUS" if f.suspicious else "")
                for f in shown
            ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append("result: LEAKY" if self.leaky else "result: no leakage found")
        return "\n".join(lines)


def check_leakage(
    train: pa.Table,
    test: pa.Table,
    *,
    key: str | Sequence[str] | None = None,
    target: str | None = None,
    auc_threshold: float = 0.98,
    corr_threshold: float = 0.95,
    sample: int = 200_000,
    seed: int = 0,
) -> LeakageReport:
    """Look for rows shared by a train and a test split, and for features that leak the target.

    Args:
        train: The training split.
        test: The test split.
        key: Column(s) identifying a row; without it whole rows are compared over the columns
            both splits share, the target excepted.
        target: The target column. Without it a column named exactly ``target``, ``label``,
            ``y`` or ``class`` is used when there is exactly one in both splits; otherwise
            feature scoring is skipped, and a warning says so.
        auc_threshold: AUC at or above which a feature is flagged.
        corr_threshold: Absolute correlation at or above which a feature is flagged.
        sample: Most rows per split used to score features (the overlap uses all rows).
        seed: Seed of that sample.

    Returns:
        The overlap, the feature scores and schema warnings.

    Raises:
        InvalidInput: A key or target column is missing from a split, the splits share no
            column to compare, or a parameter is out of range.
    """
    _check_params(auc_threshold, corr_threshold, sample)
    for name, table in (("train", train), ("test", test)):
        twice = sorted(n for n, count in Counter(table.column_names).items() if count > 1)
        if twice:
            raise InvalidInput(f"the {name} split has duplicated columns {twice}; rename them")
    warnings = _schema_warnings(train, test)
    in_test = set(test.column_names)
    shared = [n for n in train.column_names if n in in_test]
    if key is not None:
        keys = [key] if isinstance(key, str) else list(dict.fromkeys(key))
        if not keys:
            raise InvalidInput("key is empty; name at least one column, or pass no key")
        _require(keys, train, test, "key")
    tgt = _resolve_target(train, test, target, warnings)
    if key is None:
        keys = [n for n in shared if n != tgt]
        if not keys:
            raise InvalidInput(
                "the splits share no column to compare"
                + (f" besides the target {tgt!r}" if tgt in shared else "")
                + f"; train has {_names(train.column_names)}, test has {_names(test.column_names)}"
            )
    overlap = _overlap(train, test, keys, strict=key is not None, warnings=warnings)
    features: list[FeatureScore] = []
    if tgt is not None:
        scorer = _Scorer(auc_threshold, corr_threshold, warnings)
        features = scorer.score(train, test, tgt, [n for n in shared if n != tgt], sample, seed)
    features.sort(key=lambda f: (-f.score, f.column))
    return LeakageReport(overlap=overlap, target=tgt, features=features, warnings=warnings)


def _check_params(auc_threshold: float, corr_threshold: float, sample: int) -> None:
    if not 0.5 < auc_threshold <= 1.0:
        raise InvalidInput(f"auc_threshold must be in (0.5, 1], not {auc_threshold}")
    if not 0.0 < corr_threshold <= 1.0:
        raise InvalidInput(f"corr_threshold must be in (0, 1], not {corr_threshold}")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise InvalidInput(f"sample must be a positive number of rows, not {sample!r}")


def _names(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit]) or "no columns"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _require(columns: Sequence[str], train: pa.Table, test: pa.Table, what: str) -> None:
    for split, table in (("train", train), ("test", test)):
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise InvalidInput(
                f"{what} column {', '.join(map(repr, missing))} is not in the {split} split;"
                f" its columns are: {_names(table.column_names)}"
            )


def _resolve_target(
    train: pa.Table, test: pa.Table, target: str | None, warnings: list[str]
) -> str | None:
    if target is not None:
        _require([target], train, test, "target")
        return target
    found = [n for n in _TARGET_NAMES if n in train.column_names and n in test.column_names]
    if len(found) == 1:
        return found[0]
    if found:
        warnings.append(
            f"several columns could be the target ({', '.join(found)}); feature scoring"
            " skipped: name the target column"
        )
    else:
        warnings.append(
            "no target column given, and none named target, label, y or class in both splits;"
            " feature scoring skipped: name the target column to score features"
        )
    return None


def _plain(t: pa.DataType) -> pa.DataType:
    """The type without its storage variants: dictionaries decoded, large strings as strings."""
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def _schema_warnings(train: pa.Table, test: pa.Table) -> list[str]:
    out = []
    for split, a, b in (("train", train, test), ("test", test, train)):
        only = [n for n in a.column_names if n not in b.column_names]
        if only:
            out.append(f"columns only in {split}: {_names(only)}")
    for field in train.schema:
        if field.name in test.column_names:
            other = test.schema.field(field.name).type
            if _plain(field.type) != _plain(other):
                out.append(f"column {field.name!r} is {field.type} in train but {other} in test")
    return out


def _align(a: pa.ChunkedArray, b: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Both columns cast to one type, so equal values hash and encode alike.

    Raises:
        pa.ArrowException: Neither a common type nor string fits (nested types).
    """
    ta, tb = _plain(a.type), _plain(b.type)
    # Arrow promotes no bool to a number; as 0/1 they still match a target written as ints.
    if pa.types.is_boolean(ta) and (pa.types.is_integer(tb) or pa.types.is_floating(tb)):
        ta = pa.int8()
    if pa.types.is_boolean(tb) and (pa.types.is_integer(ta) or pa.types.is_floating(ta)):
        tb = pa.int8()
    a, b = a.cast(ta), b.cast(tb)
    if ta == tb:
        return a, b
    try:
        schemas = [pa.schema([("c", ta)]), pa.schema([("c", tb)])]
        common = pa.unify_schemas(schemas, promote_options="permissive").field("c").type
        return a.cast(common), b.cast(common)
    except pa.ArrowException:
        return a.cast(pa.string()), b.cast(pa.string())


def _concat(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    return pa.chunked_array(a.chunks + b.chunks, type=a.type)


def _is_numeric(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_temporal(t)
    )


def _missing(col: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    mask = pc.is_null(col, nan_is_null=True).to_numpy(zero_copy_only=False)
    return np.asarray(mask, dtype=bool)


def _hash_column(col: pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per value; every missing value (null or NaN) gets the same one."""
    t = col.type
    missing = _missing(col)
    vals: np.ndarray
    if pa.types.is_floating(t):
        vals = col.cast(pa.float64()).to_numpy(zero_copy_only=False) + 0.0  # -0.0 becomes 0.0
        vals[missing] = 0.0
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        vals = col.fill_null(pa.scalar(0, t) if pa.types.is_integer(t) else False).to_numpy()
    elif pa.types.is_temporal(t):
        vals = _temporal_ints(col).fill_null(0).to_numpy()
    else:
        if not (pa.types.is_string(t) or pa.types.is_binary(t)):
            col = col.cast(pa.string())
        vals = col.to_numpy(zero_copy_only=False)
        vals[missing] = ""
    hashes = np.asarray(pd.util.hash_array(vals), dtype=np.uint64)
    hashes[missing] = _NULL_HASH
    return hashes


def _temporal_ints(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(pa.int32() if col.type.bit_width == 32 else pa.int64())


def _overlap(
    train: pa.Table, test: pa.Table, by: list[str], *, strict: bool, warnings: list[str]
) -> Overlap:
    n_train = train.num_rows
    rows = np.full(n_train + test.num_rows, _HASH_START, dtype=np.uint64)
    used, skipped = [], []
    for name in by:
        try:
            if pa.types.is_nested(_plain(train.column(name).type)):
                raise pa.ArrowTypeError(name)
            a, b = _align(train.column(name), test.column(name))
            hashes = _hash_column(_concat(a, b))
        except pa.ArrowException:
            if strict:
                raise InvalidInput(
                    f"key column {name!r} is {train.schema.field(name).type} in train and"
                    f" {test.schema.field(name).type} in test; use scalar key columns"
                ) from None
            skipped.append(name)
            continue
        rows = (rows ^ hashes) * _HASH_MIX
        used.append(name)
    if skipped:
        warnings.append(f"columns not compared for overlap (nested types): {_names(skipped)}")
    if not used:
        raise InvalidInput("the splits share no column that can be compared; pass a key")
    in_train = np.asarray(pd.Index(rows[n_train:]).isin(rows[:n_train]), dtype=bool)
    in_both = int(in_train.sum())
    return Overlap(
        by=used,
        test_rows=test.num_rows,
        train_rows=n_train,
        in_both=in_both,
        fraction=in_both / test.num_rows if test.num_rows else 0.0,
        examples=np.flatnonzero(in_train)[:_EXAMPLES].tolist(),
        duplicates_train=n_train - len(pd.unique(rows[:n_train])),
        duplicates_test=test.num_rows - len(pd.unique(rows[n_train:])),
    )


def _as_floats(col: pa.ChunkedArray) -> _Floats:
    """A numeric column as float64, NaN where missing."""
    if pa.types.is_temporal(col.type):
        col = _temporal_ints(col)
    out = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=np.float64)


def _codes(col: pa.ChunkedArray) -> tuple[_Ints, int]:
    """Dense category codes (missing is a category of its own) and their count."""
    if pa.types.is_null(col.type):
        col = col.cast(pa.string())
    encoded = pc.dictionary_encode(col)
    size = max((len(c.dictionary) for c in encoded.chunks), default=0)
    indices = pa.chunked_array([c.indices for c in encoded.chunks], type=pa.int32())
    codes = indices.fill_null(size).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, size + 1


def _bins(train: _Floats, test: _Floats) -> tuple[_Ints, _Ints, int]:
    """Bin codes fitted on train: exact values when few, else quantile bins; missing apart."""
    seen = train[~np.isnan(train)]
    values = np.unique(seen)
    if len(values) <= _BINS:
        n = len(values)

        def code(x: _Floats) -> _Ints:
            pos = np.searchsorted(values, x).clip(0, max(n - 1, 0))
            hit = values[pos] == x if n else np.zeros(len(x), dtype=bool)
            return np.where(np.isnan(x), n + 1, np.where(hit, pos, n)).astype(np.int64)

        return code(train), code(test), n + 2
    finite = seen[np.isfinite(seen)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, _BINS + 1)[1:-1]))

    def cut(x: _Floats) -> _Ints:
        return np.where(np.isnan(x), len(edges) + 1, np.searchsorted(edges, x, side="right"))

    return cut(train), cut(test), len(edges) + 2


def _ranks(x: _Floats) -> _Floats:
    ranked = pd.Series(x).rank(method="average", na_option="top").to_numpy(dtype=np.float64)
    return np.asarray(ranked, dtype=np.float64)


def _abs_corr(a: _Floats, b: _Floats) -> float | None:
    """|Pearson| of a feature ``a`` with a target ``b``; None when the target does not vary."""
    if len(b) < 2 or np.ptp(b) == 0:
        return None
    if np.ptp(a) == 0:
        return 0.0  # a constant carries no signal
    a, b = a - a.mean(), b - b.mean()
    return min(1.0, abs(float((a * b).sum())) / float(np.sqrt((a * a).sum() * (b * b).sum())))


def _sample(present: npt.NDArray[np.bool_], n: int, rng: np.random.Generator) -> _Ints:
    rows = np.flatnonzero(present)
    if len(rows) > n:
        rows = np.sort(rng.choice(rows, n, replace=False))
    return rows.astype(np.int64)


class _Scorer:
    """Single-feature scores of one target; holds the thresholds and the warning list."""

    def __init__(self, auc_threshold: float, corr_threshold: float, warnings: list[str]) -> None:
        self.auc_threshold = auc_threshold
        self.corr_threshold = corr_threshold
        self.warnings = warnings

    def score(
        self,
        train: pa.Table,
        test: pa.Table,
        target: str,
        columns: list[str],
        sample: int,
        seed: int,
    ) -> list[FeatureScore]:
        try:
            y_train, y_test = _align(train.column(target), test.column(target))
        except pa.ArrowException:
            y_train = y_test = None
        if y_train is None or pa.types.is_nested(y_train.type):
            self.warnings.append(f"target {target!r} is not a scalar column; features not scored")
            return []
        rng = np.random.default_rng(seed)
        picked = []
        for split, y in (("train", y_train), ("test", y_test)):
            present = ~_missing(y)
            if pa.types.is_floating(y.type):
                present &= np.isfinite(y.to_numpy(zero_copy_only=False))
            if not present.all():
                self.warnings.append(
                    f"{int((~present).sum()):,} {split} rows without a target value left out"
                    " of feature scoring"
                )
            rows = _sample(present, sample, rng)
            if len(rows) < len(present):
                self.warnings.append(
                    f"features scored on a sample of {len(rows):,} of {len(present):,} {split} rows"
                )
            picked.append(rows)
        if not len(picked[0]):
            self.warnings.append("no train row has a target value; features not scored")
            return []
        train, test = train.take(picked[0]), test.take(picked[1])
        y_train, y_test = y_train.take(picked[0]), y_test.take(picked[1])
        distinct = pc.count_distinct(y_train).as_py()
        if _is_numeric(y_train.type) and distinct > _MAX_CLASSES:
            return self._all(train, test, columns, self._regression(y_train, y_test))
        if distinct > _MAX_CLASSES:
            self.warnings.append(
                f"target {target!r} has {distinct} distinct non-numeric values in train;"
                f" features are scored for at most {_MAX_CLASSES} classes or a numeric target"
            )
            return []
        if distinct < 2:
            self.warnings.append(f"target {target!r} has one value in train; features not scored")
            return []
        return self._all(train, test, columns, self._classes(y_train, y_test))

    def _all(
        self, train: pa.Table, test: pa.Table, columns: list[str], scorer: _FeatureFn
    ) -> list[FeatureScore]:
        out, skipped, unscored = [], [], []
        for name in columns:
            try:
                a, b = _align(train.column(name), test.column(name))
                if pa.types.is_nested(a.type):
                    raise pa.ArrowTypeError(name)
            except pa.ArrowException:
                skipped.append(name)
                continue
            found = scorer(a, b)
            if found is None:
                unscored.append(name)
                continue
            metric, value = found
            limit = self.auc_threshold if metric.endswith("auc") else self.corr_threshold
            out.append(FeatureScore(name, metric, value, value >= limit))
        if skipped:
            self.warnings.append(f"nested columns not scored: {_names(skipped)}")
        if unscored:
            self.warnings.append(
                f"too few rows, or a single target value, in a split to score {_names(unscored)}"
            )
        return out

    def _classes(self, y_train: pa.ChunkedArray, y_test: pa.ChunkedArray) -> _FeatureFn:
        codes, _ = _codes(_concat(y_train, y_test))
        classes, y_tr = np.unique(codes[: len(y_train)], return_inverse=True)
        pos = np.searchsorted(classes, codes[len(y_train) :]).clip(0, len(classes) - 1)
        y_te = np.where(classes[pos] == codes[len(y_train) :], pos, -1)  # -1: unseen class
        k = len(classes)

        def encoded(cat_tr: _Ints, cat_te: _Ints, n_cat: int) -> float | None:
            counts = np.bincount(cat_tr * k + y_tr, minlength=n_cat * k).reshape(n_cat, k)
            totals = counts.sum(axis=1, keepdims=True)
            prior = np.bincount(y_tr, minlength=k) / len(y_tr)
            rates = np.where(totals > 0, counts / np.maximum(totals, 1), prior)[cat_te]
            aucs = []
            for c in range(1, 2) if k == 2 else range(k):
                hit = y_te == c
                if hit.any() and not hit.all():
                    aucs.append(float(roc_auc_score(hit, rates[:, c])))
            return float(np.mean(aucs)) if aucs else None

        def feature(a: pa.ChunkedArray, b: pa.ChunkedArray) -> tuple[Metric, float] | None:
            if _is_numeric(a.type) and k == 2:
                auc = float(roc_auc_score(y_tr == 1, _ranks(_as_floats(a))))
                return "auc", max(auc, 1.0 - auc)
            if _is_numeric(a.type):
                cat_tr, cat_te, n_cat = _bins(_as_floats(a), _as_floats(b))
            else:
                cats, n_cat = _codes(_concat(a, b))
                cat_tr, cat_te = cats[: len(a)], cats[len(a) :]
            score = encoded(cat_tr, cat_te, n_cat)
            return None if score is None else ("encoded_auc", score)

        return feature

    def _regression(self, y_train: pa.ChunkedArray, y_test: pa.ChunkedArray) -> _FeatureFn:
        y_tr, y_te = _as_floats(y_train), _as_floats(y_test)
        y_ranks = _ranks(y_tr)

        def feature(a: pa.ChunkedArray, b: pa.ChunkedArray) -> tuple[Metric, float] | None:
            if _is_numeric(a.type):
                corr = _abs_corr(_ranks(_as_floats(a)), y_ranks)
                return None if corr is None else ("abs_spearman", corr)
            cats, n_cat = _codes(_concat(a, b))
            cat_tr, cat_te = cats[: len(a)], cats[len(a) :]
            counts = np.bincount(cat_tr, minlength=n_cat)
            sums = np.bincount(cat_tr, weights=y_tr, minlength=n_cat)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), y_tr.mean())
            corr = _abs_corr(means[cat_te], y_te)
            return None if corr is None else ("encoded_abs_corr", corr)

        return feature


__all__ = ["FeatureScore", "LeakageReport", "Metric", "Overlap", "check_leakage"]
