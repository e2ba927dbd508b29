"""Signatures: inference, JSON, conversion of every input kind, and enforcement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplane.errors import InvalidInput
from mlplane.registry.signature import (
    ColumnSpec,
    Signature,
    enforce,
    enforce_tensor,
    infer_signature,
    to_frame,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype=np.int64),
            "i32": np.array([1, 2, 3], dtype=np.int32),
            "f": [0.5, np.nan, 2.0],
            "b": [True, False, True],
            "s": ["a", "b", "c"],
            "d": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]).astype(
                "datetime64[ns]"
            ),
            "cat": pd.Categorical(["x", "y", "x"]),
            "n": pd.array([1, None, 3], dtype="Int64"),
        }
    )


def types(sig: Signature) -> dict[str, str]:
    return {c.name: c.type for c in sig.inputs}


def test_infer_from_frame_names_each_dtype(frame: pd.DataFrame) -> None:
    sig = infer_signature(frame)
    assert types(sig) == {
        "i": "int64",
        "i32": "int32",
        "f": "float64",
        "b": "bool",
        "s": "string",
        "d": "datetime64[ns]",
        "cat": "string",
        "n": "int64",
    }
    assert sig.outputs is None


def test_infer_from_object_columns_looks_at_values() -> None:
    frame = pd.DataFrame(
        {
            "s": pd.Series(["a", None], dtype=object),
            "i": pd.Series([1, 2], dtype=object),
            "by": pd.Series([b"x", b"y"], dtype=object),
            "mixed": pd.Series(["a", 1], dtype=object),
        }
    )
    assert types(infer_signature(frame)) == {
        "s": "string",
        "i": "int64",
        "by": "binary",
        "mixed": "object",
    }


def test_infer_from_numpy_arrow_and_records() -> None:
    array = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert infer_signature(array).inputs == (
        ColumnSpec("x0", "float32"),
        ColumnSpec("x1", "float32"),
    )
    table = pa.table({"a": [1, 2], "s": ["x", "y"]})
    expected = {"a": "int64", "s": "string"}
    assert types(infer_signature(table)) == expected
    assert types(infer_signature(table.to_batches()[0])) == expected
    assert types(infer_signature([{"a": 1, "s": "x"}, {"a": 2, "s": "y"}])) == expected
    assert types(infer_signature({"a": [1, 2], "s": ["x", "y"]})) == expected


def test_infer_tensor_and_outputs() -> None:
    images = np.zeros((4, 8, 8), dtype=np.float32)
    sig = infer_signature(images, np.zeros((4, 2)))
    assert sig.inputs == (ColumnSpec("input", "float32", (-1, 8, 8)),)
    assert sig.tensor_input is not None
    assert sig.outputs == (ColumnSpec("y0", "float64"), ColumnSpec("y1", "float64"))
    assert infer_signature(np.zeros((2, 1)), np.array([0, 1])).outputs == (
        ColumnSpec("y", "int64"),
    )
    series = pd.Series(["a", "b"], name="label")
    assert infer_signature(np.zeros((2, 1)), series).outputs == (ColumnSpec("label", "string"),)


def test_json_round_trip(frame: pd.DataFrame) -> None:
    sig = infer_signature(frame, np.array([0.1, 0.2, 0.3]))
    assert Signature.from_json(sig.to_json()) == sig
    tensor = Signature([ColumnSpec("input", "float32", (-1, 3))], None)
    assert Signature.from_json(tensor.to_json()) == tensor
    assert Signature.from_dict(tensor.to_dict()) == tensor


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"outputs": null}', '{"inputs": [{"name": "a", "type": "nope"}]}']
)
def test_from_json_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidInput):
        Signature.from_json(text)


def test_repeated_input_names_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="repeat"):
        Signature([ColumnSpec("a", "int64"), ColumnSpec("a", "float64")])


def test_to_frame_names_numpy_columns_from_signature() -> None:
    sig = Signature([ColumnSpec("a", "float64"), ColumnSpec("b", "float64")])
    frame = to_frame(np.array([[1.0, 2.0]]), sig)
    assert list(frame.columns) == ["a", "b"]
    assert list(to_frame(np.array([[1.0, 2.0]]), None).columns) == ["x0", "x1"]
    with pytest.raises(InvalidInput, match=r"3 columns but the model expects 2"):
        to_frame(np.zeros((1, 3)), sig)
    with pytest.raises(InvalidInput, match="tensor"):
        to_frame(np.zeros((1, 2, 2)), sig)


def test_to_frame_rejects_other_kinds() -> None:
    with pytest.raises(InvalidInput, match=r"builtins\.set"):
        to_frame({1, 2}, None)


def test_to_frame_single_record_and_empty_list() -> None:
    assert to_frame({"a": 1, "s": "x"}, None).shape == (1, 2)
    sig = Signature([ColumnSpec("a", "float64")])
    assert list(to_frame([], sig).columns) == ["a"]


def test_enforce_names_missing_columns_and_expected() -> None:
    sig = Signature([ColumnSpec("a", "int64"), ColumnSpec("b", "string")])
    with pytest.raises(InvalidInput) as err:
        enforce(sig, pd.DataFrame({"a": [1], "c": [2]}))
    assert "['b']" in str(err.value) and "['a', 'b']" in str(err.value)
    assert err.value.details["missing"] == ["b"]


def test_enforce_drops_extra_orders_and_casts_safely() -> None:
    sig = Signature(
        [
            ColumnSpec("f", "float64"),
            ColumnSpec("i", "int64"),
            ColumnSpec("w", "int64"),
            ColumnSpec("d", "datetime64[ns]"),
        ]
    )
    data = pd.DataFrame(
        {
            "extra": ["x", "y"],
            "w": [1.0, 2.0],  # whole floats
            "i": np.array([1, 2], dtype=np.int32),
            "f": [1, 2],  # ints
            "d": ["2024-01-01", "2024-01-02"],
        }
    )
    out = enforce(sig, data)
    assert list(out.columns) == ["f", "i", "w", "d"]
    assert out.dtypes.astype(str).tolist() == ["float64", "int64", "int64", "datetime64[ns]"]
    assert out["w"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("spec", "values", "found"),
    [
        (ColumnSpec("x", "float64"), ["1.5", "2"], "string"),
        (ColumnSpec("x", "int64"), [1.5, 2.0], "float64"),
        (ColumnSpec("x", "int64"), [1.0, np.nan], "float64"),
        (ColumnSpec("x", "int8"), [1, 1000], "int64"),
        (ColumnSpec("x", "string"), [1, 2], "int64"),
        (ColumnSpec("x", "bool"), [0, 1], "int64"),
        (ColumnSpec("x", "datetime64[ns]"), ["yesterday", "x"], "string"),
    ],
)
def test_enforce_unsafe_casts_name_column_and_types(
    spec: ColumnSpec, values: list[object], found: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        enforce(Signature([spec]), pd.DataFrame({"x": values}))
    message = str(err.value)
    assert "'x'" in message and spec.type in message and found in message
    assert err.value.details == {"column": "x", "expected": spec.type, "found": found}


def test_enforce_object_type_accepts_anything() -> None:
    sig = Signature([ColumnSpec("x", "object")])
    data = pd.DataFrame({"x": pd.Series([1, "a"], dtype=object)})
    assert enforce(sig, data) is data


def test_enforce_tensor_checks_shape_and_kind() -> None:
    spec = ColumnSpec("input", "float32", (-1, 2, 2))
    out = enforce_tensor(spec, np.zeros((3, 2, 2), dtype=np.float64))
    assert out.dtype == np.float32
    assert enforce_tensor(spec, np.zeros((1, 2, 2), dtype=np.int64)).dtype == np.float32
    with pytest.raises(InvalidInput, match="shape"):
        enforce_tensor(spec, np.zeros((3, 2, 3)))
    with pytest.raises(InvalidInput, match="float32"):
        enforce_tensor(spec, np.full((1, 2, 2), "a"))


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 6))
    kinds = draw(st.lists(st.sampled_from(["int", "float", "bool", "str"]), min_size=1, max_size=5))
    columns: dict[str, pd.Series] = {}
    for i, kind in enumerate(kinds):
        if kind == "int":
            values = st.integers(-(2**63), 2**63 - 1)
            dtype = "int64"
        elif kind == "float":
            values = st.floats(allow_nan=True, allow_infinity=True)
            dtype = "float64"
        elif kind == "bool":
            values = st.booleans()
            dtype = "bool"
        else:
            values = st.text(max_size=4)
            dtype = "str"
        data = draw(st.lists(values, min_size=rows, max_size=rows))
        columns[f"{kind}_{i}"] = pd.Series(data, dtype=dtype)
    return pd.DataFrame(columns)


@settings(max_examples=60, deadline=None)
@given(frames())
def test_infer_then_enforce_is_identity(frame: pd.DataFrame) -> None:
    sig = Signature.from_json(infer_signature(frame).to_json())
    pd.testing.assert_frame_equal(enforce(sig, frame), frame)
