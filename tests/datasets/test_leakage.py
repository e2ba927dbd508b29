"""Train/test leakage: exact overlap counts, planted leaks flagged, honest features and ids not."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplane.datasets.leakage import LeakageReport, check_leakage
from mlplane.errors import InvalidInput


def _score(report: LeakageReport, column: str) -> tuple[str, float, bool]:
    found = next(f for f in report.features if f.column == column)
    return found.metric, found.score, found.suspicious


def _binary(n: int, seed: int, first_id: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pa.table(
        {
            "id": [f"row-{first_id + i}" for i in range(n)],  # unique per row
            "noise": rng.normal(size=n),
            "noise_cat": rng.choice(["a", "b", "c"], n),
            "leak": y + rng.normal(0, 0.05, n),
            "leak_cat": np.where(y == 1, "yes", "no"),
            "constant": np.ones(n),
            "label": y,
        }
    )


# --- split overlap ------------------------------------------------------------------------


def _splits_with_nulls() -> tuple[pa.Table, pa.Table]:
    train = pa.table(
        {
            "a": pa.array([1, 2, None, 2, 5], pa.int64()),
            "b": pa.array(["x", "y", None, "y", "z"]),
            "f": pa.array([0.0, 1.5, math.nan, 1.5, 2.0]),
            "label": [0, 1, 0, 0, 1],  # the target is not compared
        }
    )
    test = pa.table(
        {
            "a": pa.array([2, None, 7, 1, 1], pa.int64()),
            "b": pa.array(["y", None, "q", "x", "w"]),
            "f": pa.array([1.5, None, 1.0, -0.0, 0.0]),  # null equals NaN, -0.0 equals 0.0
            "label": [0, 1, 1, 1, 1],
        }
    )
    return train, test


def test_whole_row_overlap_counts_null_rows_and_duplicates() -> None:
    train, test = _splits_with_nulls()
    o = check_leakage(train, test).overlap
    assert o.by == ["a", "b", "f"]
    assert (o.train_rows, o.test_rows) == (5, 5)
    assert o.in_both == 3  # test rows 0, 1 (all missing) and 3
    assert o.fraction == pytest.approx(0.6)
    assert o.examples == [0, 1, 3]
    assert (o.duplicates_train, o.duplicates_test) == (1, 0)


def test_overlap_by_key_one_name_or_several() -> None:
    train, test = _splits_with_nulls()
    o = check_leakage(train, test, key="a").overlap
    assert o.by == ["a"]
    assert (o.in_both, o.examples) == (4, [0, 1, 3, 4])  # a null key equals a null key
    assert (o.duplicates_train, o.duplicates_test) == (1, 1)
    o = check_leakage(train, test, key=["a", "b"]).overlap
    assert (o.by, o.in_both, o.examples) == (["a", "b"], 3, [0, 1, 3])


def test_overlap_across_dtype_mismatch_compares_values_and_warns() -> None:
    train = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "s": ["a", "b", "c"]})
    test = pa.table({"k": pa.array([3.0, 4.0], pa.float64()), "s": ["c", "b"]})
    report = check_leakage(train, test)
    assert (report.overlap.in_both, report.overlap.examples) == (1, [0])
    assert any("'k' is int64 in train but double in test" in w for w in report.warnings)


def test_empty_splits_report_zeros() -> None:
    schema = pa.schema([("a", pa.int64()), ("label", pa.int64())])
    report = check_leakage(schema.empty_table(), schema.empty_table())
    o = report.overlap
    assert (o.in_both, o.fraction, o.examples, o.train_rows, o.test_rows) == (0, 0.0, [], 0, 0)
    assert report.features == [] and not report.leaky
    assert any("no train row has a target" in w for w in report.warnings)


_ints = st.one_of(st.none(), st.integers(-2, 2))
_floats = st.one_of(st.none(), st.sampled_from([math.nan, -0.0, 0.0, 1.5]))
_strs = st.one_of(st.none(), st.sampled_from(["", "a", "b"]))
_rows = st.lists(st.tuples(_ints, _floats, _strs), max_size=12)
_MISSING = object()


def _norm(value: object) -> object:
    return _MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _table(rows: list[tuple[int | None, float | None, str | None]]) -> pa.Table:
    cols: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    types = [pa.int64(), pa.float64(), pa.string()]
    return pa.table({n: pa.array(c, t) for n, c, t in zip("ifs", cols, types, strict=True)})


@settings(max_examples=60, deadline=None)
@given(_rows, _rows, st.sampled_from([None, ["s"], ["i", "f"]]))
def test_overlap_matches_brute_force_sets(
    train_rows: list[tuple[int | None, float | None, str | None]],
    test_rows: list[tuple[int | None, float | None, str | None]],
    key: list[str] | None,
) -> None:
    index = {"i": 0, "f": 1, "s": 2}

    def proj(row: tuple[int | None, float | None, str | None]) -> tuple[object, ...]:
        picked = [row[index[c]] for c in key] if key else list(row)
        return tuple(_norm(v) for v in picked)

    seen = {proj(r) for r in train_rows}
    hits = [i for i, r in enumerate(test_rows) if proj(r) in seen]
    o = check_leakage(_table(train_rows), _table(test_rows), key=key).overlap
    assert o.in_both == len(hits)
    assert o.examples == hits[:5]
    assert o.duplicates_train == len(train_rows) - len(seen)
    assert o.duplicates_test == len(test_rows) - len({proj(r) for r in test_rows})


# --- suspicious features ------------------------------------------------------------------


def test_planted_leaks_flagged_honest_features_and_ids_not() -> None:
    report = check_leakage(_binary(3000, 1), _binary(1000, 2, first_id=3000), target="label")
    assert report.target == "label"
    assert _score(report, "leak")[0] == "auc" and _score(report, "leak")[2]
    assert _score(report, "leak_cat")[:2] == ("encoded_auc", 1.0) and _score(report, "leak_cat")[2]
    for honest in ("noise", "noise_cat"):
        assert 0.4 < _score(report, honest)[1] < 0.6 and not _score(report, honest)[2]
    # Every test id is new, so all of them get the global rate: no signal at all.
    assert _score(report, "id") == ("encoded_auc", 0.5, False)
    assert _score(report, "constant") == ("auc", 0.5, False)
    assert [f.column for f in report.features][:2] == ["leak", "leak_cat"]
    scores = [f.score for f in report.features]
    assert scores == sorted(scores, reverse=True)
    assert report.leaky and report.overlap.in_both == 0


def test_label_noise_still_flagged_and_threshold_configurable() -> None:
    train, test = _binary(3000, 3), _binary(1000, 4, first_id=3000)
    y = train.column("label").to_numpy()
    flipped = np.where(np.arange(len(y)) % 100 == 0, 1 - y, y)  # 1 % of labels wrong
    train = train.set_column(3, "leak", pa.array(flipped.astype(float)))
    assert _score(check_leakage(train, test, target="label"), "leak")[2]
    strict = check_leakage(train, test, target="label", auc_threshold=0.999)
    assert not _score(strict, "leak")[2]


def test_missingness_that_tracks_the_target_is_flagged() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 2000)
    values = rng.normal(size=2000)
    table = pa.table(
        {
            "num": pa.array(values, mask=y == 1),
            "cat": pa.array(np.where(rng.random(2000) < 0.5, "p", "q"), mask=y == 1),
            "label": y,
        }
    )
    report = check_leakage(table.slice(0, 1500), table.slice(1500))
    assert _score(report, "num")[2] and _score(report, "cat")[2]


def test_multiclass_copy_of_target_flagged_noise_not() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 4, 3000)
    table = pa.table(
        {
            "copy": y * 10.0,  # raw one-vs-rest AUC of a middle class would be 0.5
            "noise": rng.normal(size=3000),
            "cls": pa.array(np.array(["a", "b", "c", "d"])[y]),
        }
    )
    report = check_leakage(table.slice(0, 2000), table.slice(2000), target="cls")
    assert _score(report, "copy") == ("encoded_auc", 1.0, True)
    assert not _score(report, "noise")[2]


def test_numeric_target_near_copy_flagged() -> None:
    rng = np.random.default_rng(7)
    y = rng.normal(size=3000)
    table = pa.table(
        {
            "near": y + rng.normal(0, 0.01, 3000),
            "noise": rng.normal(size=3000),
            "sign": np.where(y > 0, "pos", "neg"),
            "id": [str(i) for i in range(3000)],
            "target": y,
        }
    )
    report = check_leakage(table.slice(0, 2000), table.slice(2000))
    assert report.target == "target"
    metric, score, flagged = _score(report, "near")
    assert metric == "abs_spearman" and score > 0.99 and flagged
    assert _score(report, "noise")[1] < 0.2 and not _score(report, "noise")[2]
    metric, score, flagged = _score(report, "sign")
    assert metric == "encoded_abs_corr" and 0.6 < score < 0.95 and not flagged
    assert _score(report, "id") == ("encoded_abs_corr", 0.0, False)
    looser = check_leakage(table.slice(0, 2000), table.slice(2000), corr_threshold=0.5)
    assert _score(looser, "sign")[2]


def test_sampling_is_seeded_and_reported() -> None:
    train, test = _binary(3000, 8), _binary(1000, 9, first_id=3000)
    one = check_leakage(train, test, sample=500, seed=3)
    assert one.to_json() == check_leakage(train, test, sample=500, seed=3).to_json()
    assert any("sample of 500 of 3,000 train rows" in w for w in one.warnings)
    assert _score(one, "leak")[2]


# --- target detection, schema, errors, output ---------------------------------------------


def test_target_detected_by_name_only() -> None:
    train, test = _binary(200, 10), _binary(100, 11, first_id=200)
    assert check_leakage(train, test).target == "label"
    names = [*train.column_names[:-1], "outcome"]
    unnamed = check_leakage(train.rename_columns(names), test.rename_columns(names))
    assert unnamed.target is None and unnamed.features == []
    assert any("feature scoring skipped" in w for w in unnamed.warnings)
    # With no target, the would-be target is just another compared column.
    assert "outcome" in unnamed.overlap.by
    both = train.append_column("y", train.column("label"))
    ambiguous = check_leakage(both, test.append_column("y", test.column("label")))
    assert ambiguous.target is None
    assert any("several columns could be the target (label, y)" in w for w in ambiguous.warnings)


def test_schema_warnings() -> None:
    train = pa.table({"a": [1, 2], "b": ["x", "y"], "old": [0, 0], "label": [0, 1]})
    test = pa.table({"a": [3, 4], "b": [1, 2], "new": [0, 0], "label": [1, 0]})
    warnings = check_leakage(train, test).warnings
    assert "columns only in train: old" in warnings
    assert "columns only in test: new" in warnings
    assert "column 'b' is string in train but int64 in test" in warnings
    dictionary = train.set_column(1, "b", train.column("b").dictionary_encode())
    assert not any("'b' is" in w for w in check_leakage(dictionary, train).warnings)


def test_invalid_input_says_what_to_change() -> None:
    train, test = _binary(50, 12), _binary(50, 13)
    with pytest.raises(
        InvalidInput, match=r"key column 'uid' is not in the train split.*id, noise"
    ):
        check_leakage(train, test, key="uid")
    with pytest.raises(InvalidInput, match="not in the test split"):
        check_leakage(train, test.drop_columns(["id"]), key=["id", "noise"])
    with pytest.raises(InvalidInput, match="target column 'outcome' is not in the train split"):
        check_leakage(train, test, target="outcome")
    with pytest.raises(InvalidInput, match="share no column"):
        check_leakage(pa.table({"a": [1]}), pa.table({"b": [1]}))
    with pytest.raises(InvalidInput, match="besides the target"):
        check_leakage(pa.table({"a": [1], "label": [0]}), pa.table({"label": [1]}))
    with pytest.raises(InvalidInput, match="key is empty"):
        check_leakage(train, test, key=[])
    with pytest.raises(InvalidInput, match="auc_threshold"):
        check_leakage(train, test, auc_threshold=0.3)
    with pytest.raises(InvalidInput, match="sample"):
        check_leakage(train, test, sample=0)


def test_json_and_summary_carry_no_values() -> None:
    train, test = _binary(300, 14), _binary(100, 15, first_id=300)
    test = pa.concat_tables([test, train.slice(10, 2)])
    report = check_leakage(train, test)
    data = json.loads(report.to_json())
    assert data["leaky"] is True and data["overlap"]["in_both"] == 2
    assert data["overlap"]["examples"] == [100, 101]
    text = report.summary()
    assert "2 of 102 test rows" in text and "leak: auc" in text and "LEAKY" in text
    assert "row-10" not in report.to_json() + text
    honest = ["leak", "leak_cat"]
    clean = check_leakage(
        _binary(300, 16).drop_columns(honest), _binary(100, 17, first_id=300).drop_columns(honest)
    )
    assert not clean.leaky and clean.summary().endswith("no leakage found")


def test_target_stored_as_bool_in_one_split_and_int_in_other_still_scored() -> None:
    train, test = _binary(600, 18), _binary(200, 19, first_id=600)
    train = train.set_column(6, "label", train.column("label").cast(pa.bool_()))
    report = check_leakage(train, test)
    assert "column 'label' is bool in train but int64 in test" in report.warnings
    assert _score(report, "leak_cat") == ("encoded_auc", 1.0, True)


def test_nested_columns_skipped_but_not_as_key() -> None:
    lists = pa.array([[1], [2], [1, 2]])
    train = pa.table({"a": [1, 2, 3], "l": lists, "label": [0, 1, 0]})
    test = pa.table({"a": [3, 4], "l": lists.slice(0, 2), "label": [1, 0]})
    report = check_leakage(train, test)
    assert (report.overlap.by, report.overlap.in_both) == (["a"], 1)
    assert "columns not compared for overlap (nested types): l" in report.warnings
    assert "nested columns not scored: l" in report.warnings
    with pytest.raises(InvalidInput, match="use scalar key columns"):
        check_leakage(train, test, key="l")
