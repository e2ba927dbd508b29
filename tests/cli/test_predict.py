"""``mlplane predict`` end to end: the registry, files, dataset versions, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplane.client import Client
from mlplane.config import load_settings
from tests.cli.helpers import Invoke
from tests.serving.batch_helpers import FEATURES, Store, make_store, table, write_parquet


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_store(tmp_path_factory.mktemp("store"))


def predict(cli: Invoke, store: Store, *args: str) -> tuple[int, str]:
    r = cli("--uri", str(store.home), "predict", *args)
    return r.exit_code, r.output


def test_predict_parquet_and_csv(cli: Invoke, store: Store, tmp_path: Path) -> None:
    df = table(1_000)
    data = write_parquet(df, tmp_path / "in.parquet", row_group_size=250)
    out = tmp_path / "preds.parquet"
    code, text = predict(
        cli, store, "fraud@champion", "--input", str(data), "--output", str(out),
        "--passthrough", "id, customer_id", "--batch-rows", "250", "--workers", "2", "--json",
    )  # fmt: skip
    assert code == 0, text
    summary = json.loads(text)
    assert summary["rows"] == 1_000 and summary["parts"] == 4 and summary["model"] == "fraud@1"
    assert summary["columns"] == ["id", "customer_id", "prediction"]
    assert summary["output"] == str(out) and summary["rows_per_s"] > 0
    got = pq.read_table(out).to_pandas()
    assert got["id"].tolist() == df["id"].tolist()
    np.testing.assert_array_equal(got["prediction"].to_numpy(), store.v1.predict(df[FEATURES]))

    df.to_csv(tmp_path / "in.csv", index=False)
    code, text = predict(
        cli, store, "models:/fraud/2", "-i", str(tmp_path / "in.csv"), "-o", str(out),
        "--overwrite", "--proba",
    )  # fmt: skip
    assert code == 0, text
    for word in ("rows", "1,000", "rows/s", str(out), "proba_1"):
        assert word in text
    got = pq.read_table(out).to_pandas()
    np.testing.assert_array_equal(got["prediction"].to_numpy(), store.v2.predict(df[FEATURES]))


def test_predict_a_dataset_version(cli: Invoke, store: Store, tmp_path: Path) -> None:
    df = table(600, seed=3)
    src = tmp_path / "scoring"
    src.mkdir()
    write_parquet(df[:400], src / "a.parquet", row_group_size=100)
    df[400:].to_csv(src / "b.csv", index=False)  # a version may mix table files
    c = Client(settings=load_settings(home=store.home))
    try:
        c.transport.add_dataset("scoring", src, project="default", progress=None)
    finally:
        c.close()
    for spec in ("data:scoring@1", "scoring@latest"):
        out = tmp_path / f"{spec.replace(':', '-').replace('@', '-')}.parquet"
        code, text = predict(
            cli, store, "fraud@1", "--input", spec, "--output", str(out), "--passthrough", "id"
        )
        assert code == 0, text
        got = pq.read_table(out).to_pandas()
        assert got["id"].tolist() == df["id"].tolist()
        expected = store.v1.predict(df[FEATURES])
        np.testing.assert_array_equal(got["prediction"].to_numpy(), expected)


def test_bad_input_exits_1_and_writes_nothing(cli: Invoke, store: Store, tmp_path: Path) -> None:
    data = write_parquet(table(40).drop(columns=["c"]), tmp_path / "in.parquet", 10)
    out = tmp_path / "p.parquet"
    cases = [
        (["nope@1", "-i", str(data)], "nope"),
        (["fraud@9", "-i", str(data)], "fraud"),
        (["fraud@1", "-i", str(tmp_path / "missing.parquet")], "does not exist"),
        (["fraud@1", "-i", "data:nodata@1"], "nodata"),
        (["fraud@1", "-i", str(data)], "no column 'c', which the model needs"),
        (["fraud@1", "-i", str(data), "--executor", "spark"], "unknown executor"),
    ]
    for args, message in cases:
        code, text = predict(cli, store, *args, "-o", str(out))
        assert code == 1, (args, text)
        assert "error:" in text and message in text, (args, text)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["in.parquet"]
    out.write_bytes(b"x")
    good = write_parquet(table(40), tmp_path / "good.parquet", 10)
    code, text = predict(cli, store, "fraud@1", "-i", str(good), "-o", str(out))
    assert code == 1 and "--overwrite" in text and out.read_bytes() == b"x"


def _wait_for_parts(parts_dir: Path, n: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = len(list(parts_dir.glob("part-*.parquet"))) if parts_dir.is_dir() else 0
        if found >= n:
            return found
        assert proc.poll() is None, f"predict ended before {n} parts: {proc.stdout}"
        time.sleep(0.01)
    raise AssertionError(f"fewer than {n} parts after 120 s")


@pytest.mark.slow
def test_kill_9_then_resume_redoes_only_missing_parts(
    cli: Invoke, store: Store, tmp_path: Path
) -> None:
    df = table(6_000, seed=7)
    # 300 row groups of 20 rows, a part each: slow enough to kill part-way with one worker.
    data = write_parquet(df, tmp_path / "in.parquet", row_group_size=20)
    out = tmp_path / "p.parquet"
    args = ["fraud@champion", "-i", str(data), "-o", str(out), "--batch-rows", "20",
            "--passthrough", "id", "--json"]  # fmt: skip
    env = {**os.environ, "MLPLANE_URI": str(store.home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlplane.cli", "predict", *args, "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the kill takes the workers too
    )
    try:
        _wait_for_parts(tmp_path / "p.parquet.parts", 5, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    parts_dir = tmp_path / "p.parquet.parts"
    before = sorted(parts_dir.glob("part-*.parquet"))
    assert 5 <= len(before) < 300
    first = pq.read_table(before[0])
    pred = first.schema.get_field_index("prediction")
    marked = pa.array(np.full(first.num_rows, -1))
    pq.write_table(first.set_column(pred, "prediction", marked), before[0])

    # The model behind the alias moved: the old parts must not be mixed with its output.
    assert cli("--uri", str(store.home), "models", "promote", "fraud", "2",
               "--to", "champion").exit_code == 0  # fmt: skip
    try:
        code, text = predict(cli, store, *args)
        assert code == 1 and "another model" in text and "--restart" in text, text
    finally:
        assert cli("--uri", str(store.home), "models", "promote", "fraud", "1",
                   "--to", "champion").exit_code == 0  # fmt: skip

    code, text = predict(cli, store, *args, "--workers", "2")
    assert code == 0, text
    summary = json.loads(text)
    assert (summary["parts"], summary["parts_resumed"]) == (300, len(before))
    got = pq.read_table(out).to_pandas()
    assert got["id"].tolist() == df["id"].tolist()
    want = store.v1.predict(df[FEATURES])
    want[: first.num_rows] = -1  # the kept part, not predicted again
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    assert not parts_dir.exists()
