"""Shared by the batch inference tests: a store with a registered model, and input tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

import mlplane
from mlplane import fluent

FEATURES = ["a", "b", "c"]


def table(n: int, seed: int = 0) -> pd.DataFrame:
    """Features a, b, c and two id columns, in a shuffled id order (so order is checked)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": rng.permutation(n).astype("int64"),
            "customer_id": rng.integers(1000, 9999, n),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.normal(size=n),
        }
    )


def write_parquet(df: pd.DataFrame, path: Path, row_group_size: int) -> Path:
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size
    )
    return path


@dataclass
class Store:
    home: Path
    v1: Any
    """The model registered as fraud@1 (alias champion), as fitted."""
    v2: Any
    """fraud@2: another model, not behind an alias."""


def make_store(home: Path) -> Store:
    """An embedded store under ``home`` with two versions of ``fraud``; champion -> 1."""
    x = table(400, seed=1)[FEATURES]
    y = (x["a"] + x["b"] > x["c"]).astype(int)
    v1 = LogisticRegression().fit(x, y)
    v2 = LogisticRegression().fit(x, 1 - y)
    fluent.set_tracking_uri(str(home))
    try:
        mlplane.registry.register("fraud", v1, input_example=x[:5])
        mlplane.registry.register("fraud", v2, input_example=x[:5])
        mlplane.registry.set_alias("fraud", "champion", 1)
    finally:
        fluent.set_tracking_uri(None)
    return Store(home, v1, v2)
