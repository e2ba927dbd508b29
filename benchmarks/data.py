"""Data benchmark: ``mlplane data add`` against ``dvc add``, measured in the same run.

    .venv/bin/python benchmarks/data.py [--quick] [--json PATH]

Installs DVC in a cached virtualenv under ``.bench/``, generates the data once
under ``.bench/data/`` (deterministic), then runs both command lines on the
same files, each against a fresh store, and prints the figures side by side
with their ratios, next to what the machine itself can do (read, hash) on the
same files. Timings on a shared machine are noisy: read the ratios. See
``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
DVC_SPEC = "dvc>=3.50,<4"
GEN_VERSION = "2"  # bump when the generators change: the cached data is made again
MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Sizes:
    big_bytes: int = GIB  # 4 CSV + 2 Parquet files
    small_files: int = 100_000  # 1-10 KB each
    append_bytes: int = 220 * 1000 * 1000  # the CSV that grows by 1 %
    append_fraction: float = 0.01
    profile_rows: int = 10_000_000  # x 20 columns, one Parquet file

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            big_bytes=128 * MIB,
            small_files=10_000,
            append_bytes=64 * 1000 * 1000,
            profile_rows=1_000_000,
        )


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the data (numpy and pyarrow, seeded: every run makes the same bytes) --------------------------

_WORDS = [
    "order",
    "return",
    "refund",
    "shipped",
    "late",
    "damaged",
    "great",
    "price",
    "quality",
    "support",
    "fast",
    "slow",
    "box",
    "blue",
    "red",
    "size",
    "fits",
    "small",
    "large",
    "works",
    "broke",
    "again",
    "never",
    "always",
    "love",
    "hate",
    "fine",
    "missing",
    "extra",
    "gift",
    "fragile",
    "label",
    "courier",
    "weekend",
    "tracking",
]
_CATEGORIES = [f"cat_{i:02d}" for i in range(50)]
_COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CN", "ES", "IT", "NL", "SE"]
_DEVICES = ["ios", "android", "web", "desktop", "tv"]
_BASE_MS = 1_767_225_600_000  # 2026-01-01, so every run writes the same timestamps


def _events(seed: int, start: int, n: int) -> Any:
    """``n`` rows of a realistic event table (ints, floats, strings, timestamps), from ``start``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng([seed, start])
    comments = pa.array(
        [" ".join(rng.choice(_WORDS, int(k))) for k in rng.integers(2, 9, 4096)]
    )  # a pool: free text repeats in real logs, and drawing it per row is slow
    ids = np.arange(start, start + n, dtype=np.int64)
    ts = _BASE_MS + ids * 40 + rng.integers(0, 40, n)
    return pa.table(
        {
            "event_id": ids,
            "user_id": rng.integers(1, 5_000_000, n),
            "event_time": pa.array(ts, pa.timestamp("ms")),
            "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
            "score": rng.random(n),
            "quantity": rng.integers(1, 20, n).astype(np.int32),
            "category": pc.take(pa.array(_CATEGORIES), rng.zipf(1.3, n) % len(_CATEGORIES)),
            "country": pc.take(pa.array(_COUNTRIES), rng.integers(0, len(_COUNTRIES), n)),
            "device": pc.take(pa.array(_DEVICES), rng.integers(0, len(_DEVICES), n)),
            "comment": pc.take(comments, rng.integers(0, len(comments), n)),
            "is_member": rng.random(n) < 0.3,
        }
    )


_BATCH_ROWS = 250_000


def write_csv(path: Path, seed: int, target_bytes: int, *, start: int = 0) -> int:
    """A CSV of about ``target_bytes``; returns its row count."""

    probe = _events(seed, start, 20_000)
    per_row = _csv_bytes(probe) / probe.num_rows
    rows = int(target_bytes / per_row)
    append_csv(path, seed, start, rows, header=True)
    return rows


def append_csv(path: Path, seed: int, start: int, rows: int, *, header: bool = False) -> None:
    import pyarrow.csv as pacsv

    with open(path, "ab" if not header else "wb") as fh:
        for i in range(start, start + rows, _BATCH_ROWS):
            t = _events(seed, i, min(_BATCH_ROWS, start + rows - i))
            opts = pacsv.WriteOptions(include_header=header and i == start)
            pacsv.write_csv(t, fh, opts)


def _csv_bytes(table: Any) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return int(sink.getvalue().size)


def write_parquet(path: Path, seed: int, target_bytes: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    probe = _events(seed, 0, _BATCH_ROWS * 4)  # one full row group: sizes scale from it
    sink = pa.BufferOutputStream()
    pq.write_table(probe, sink)
    rows = int(target_bytes / (sink.getvalue().size / probe.num_rows))
    with pq.ParquetWriter(path, probe.schema) as w:  # pyarrow defaults: snappy, 1M-row groups
        for i in range(0, rows, _BATCH_ROWS * 4):
            w.write_table(_events(seed, i, min(_BATCH_ROWS * 4, rows - i)))
    return rows


def write_wide_parquet(path: Path, rows: int) -> None:
    """``rows`` x 20 columns for the profile: 8 numeric, 6 string, 3 timestamp, 3 more numeric."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def part(start: int, n: int) -> Any:
        rng = np.random.default_rng([7, start])
        ev = _events(7, start, n)
        extra = {
            "age": rng.integers(18, 90, n).astype(np.int16),
            "balance": rng.normal(1000, 250, n),
            "clicks": rng.poisson(3, n).astype(np.int32),
            "latency_ms": rng.gamma(2.0, 30.0, n).astype(np.float32),
            "plan": pc.take(pa.array(["free", "pro", "team", "enterprise"]), rng.integers(0, 4, n)),
            "segment": pc.take(pa.array([f"s{i}" for i in range(200)]), rng.integers(0, 200, n)),
            "signup_time": pa.array(_BASE_MS - rng.integers(0, 10**10, n), pa.timestamp("ms")),
            "last_seen": pa.array(_BASE_MS + rng.integers(0, 10**9, n), pa.timestamp("ms")),
            "rating": rng.integers(1, 6, n).astype(np.int8),
        }
        cols = {**{k: ev[k] for k in ev.column_names}, **extra}
        assert len(cols) == 20
        return pa.table(cols)

    first = part(0, 1000)
    with pq.ParquetWriter(path, first.schema) as w:
        for i in range(0, rows, 1_000_000):
            w.write_table(part(i, min(1_000_000, rows - i)))


def write_small_files(root: Path, count: int) -> None:
    """``count`` files of 1-10 KB in folders of 1,000: half JSON annotations (compress well),
    half random bytes standing in for images (do not compress)."""
    import numpy as np

    rng = np.random.default_rng(11)
    sizes = rng.integers(1024, 10 * 1024 + 1, count)
    noise = rng.bytes(32 * MIB)
    offsets = rng.integers(0, len(noise) - 10 * 1024, count)
    for i in range(count):
        folder = root / f"{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = int(sizes[i])
        if i % 2:
            (folder / f"img_{i:06d}.jpg").write_bytes(noise[offsets[i] : offsets[i] + size])
        else:
            (folder / f"ann_{i:06d}.json").write_bytes(_annotation(i, size))


def _annotation(i: int, size: int) -> bytes:
    head = f'{{"id": {i}, "label": "{_CATEGORIES[i % 50]}", "boxes": ['
    boxes = []
    n = len(head)
    k = 0
    while n < size - 3:
        x, y = (i * 31 + k * 17) % 640, (i * 7 + k * 29) % 480
        box = f"[{x}, {y}, {(k * 13) % 200 + 8}, {(i + k) % 150 + 8}]"
        boxes.append(box)
        n += len(box) + 2
        k += 1
    text = (head + ", ".join(boxes) + "]}").encode()
    return text[:size] if len(text) > size else text.ljust(size)


def ensure_data(sz: Sizes) -> dict[str, Path]:
    """Generate the data once per size (cached under ``.bench/data``)."""
    base = BENCH / "data"
    out = {
        "big": base / f"big-{sz.big_bytes // MIB}MiB",
        "small": base / f"small-{sz.small_files}",
        "append": base / f"append-{sz.append_bytes // 1_000_000}MB.csv",
        "profile": base / f"wide-{sz.profile_rows}rows.parquet",
    }

    def once(path: Path, make: Callable[[Path], None]) -> None:
        marker = path.with_name(path.name + ".done")
        if marker.is_file() and marker.read_text() == GEN_VERSION and path.exists():
            return
        log(f"generating {path.relative_to(ROOT)}")
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        marker.write_text(GEN_VERSION)

    def big(path: Path) -> None:
        path.mkdir()
        csv_share, pq_share = sz.big_bytes * 3 // 4, sz.big_bytes // 4
        for i in range(4):
            write_csv(path / f"events_{i}.csv", 100 + i, csv_share // 4)
        for i in range(2):
            write_parquet(path / f"events_{4 + i}.parquet", 200 + i, pq_share // 2)

    once(out["big"], big)
    once(out["small"], lambda p: write_small_files(p, sz.small_files))
    once(out["append"], lambda p: write_csv(p, 300, sz.append_bytes))
    once(out["profile"], lambda p: write_wide_parquet(p, sz.profile_rows))
    return out


def files_of(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in files_of(path)) if path.exists() else 0


# -- the machine's limits on the same files -------------------------------------------------------


def machine_limits(path: Path) -> dict[str, float]:
    """Page-cache read, BLAKE3 (one thread, all threads) and md5, in bytes/s, same files."""
    import blake3
    import numpy as np
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    files = files_of(path)
    total = sum(p.stat().st_size for p in files)
    buf = bytearray(8 * MIB)
    view = memoryview(buf)

    def scan(update: Callable[[memoryview], object] | None) -> float:
        t0 = time.perf_counter()
        for p in files:
            with open(p, "rb", buffering=0) as fh:
                while n := fh.readinto(buf):  # type: ignore[attr-defined]
                    if update is not None:
                        update(view[:n])
        return total / (time.perf_counter() - t0)

    scan(None)  # warm the page cache
    out = {"read": max(scan(None) for _ in range(2))}
    one = blake3.blake3(max_threads=1)
    out["blake3_1"] = scan(one.update)
    # The threaded figure hashes whole files (mmap), as a multi-threaded BLAKE3 tool would.
    t0 = time.perf_counter()
    for p in files:
        blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(p)
    out["blake3_all"] = total / (time.perf_counter() - t0)
    md5 = hashlib.md5()
    out["md5"] = scan(md5.update)
    # What compressing and encrypting cost on one core, on a 64 MiB sample of the CSV files.
    heads = []
    for p in (p for p in files if p.suffix == ".csv"):
        with open(p, "rb") as fh:
            heads.append(fh.read(16 * MIB))
    sample = b"".join(heads)[: 64 * MIB]
    t0 = time.perf_counter()
    packed = zstandard.ZstdCompressor(level=1).compress(sample)
    out["zstd1_csv"] = len(sample) / (time.perf_counter() - t0)
    out["zstd1_csv_ratio"] = len(packed) / len(sample)
    from pyfastcdc import FastCDC

    t0 = time.perf_counter()
    for _ in FastCDC(avg_size=1 << 20).cut_buf(sample):
        pass
    out["fastcdc"] = len(sample) / (time.perf_counter() - t0)
    out["csv_bytes"] = sum(p.stat().st_size for p in files if p.suffix == ".csv")
    key = AESGCM(np.random.default_rng(0).bytes(32))
    t0 = time.perf_counter()
    for i in range(0, len(sample), 4 * MIB):
        key.encrypt(b"\0" * 12, sample[i : i + 4 * MIB], None)
    out["aes_gcm"] = len(sample) / (time.perf_counter() - t0)
    out["bytes"] = total
    out["cores"] = os.cpu_count() or 1
    return out


# -- the two command lines -----------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    # Bytecode is cached, as in a normal install (pip compiles DVC's on install; ours is
    # compiled once before the runs, see compile_ours).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLPLANE_", "DVC_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {**env, "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore", **extra}


@dataclass
class Timing:
    seconds: float
    cpu: float  # user + system seconds of the command and its children
    stdout: str = ""


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> Timing:
    """Run one command after flushing dirty pages (neither side pays the other's writeback)."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        cmd = " ".join([Path(argv[0]).name, *argv[1:3]])
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(dt, cpu, proc.stdout)


class Ours:
    """``mlplane data add`` against a fresh ``MLPLANE_HOME`` (SQLite and blobs under it)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True)
        self.exe = str(Path(sys.executable).parent / "mlplane")
        self.env = _clean_env(MLPLANE_HOME=str(home))

    def add(self, name: str, path: Path) -> Timing:
        """One add with the default output (a line of text), as people run it."""
        return timed([self.exe, "data", "add", name, str(path)], cwd=self.home, env=self.env)

    def blob_bytes(self) -> int:
        return tree_bytes(self.home / "blobs" / "objects")


class Dvc:
    """``dvc add`` in a fresh ``dvc init --no-scm`` project, stock settings."""

    def __init__(self, python: Path, project: Path) -> None:
        self.exe = str(python.parent / "dvc")
        self.project = project
        self.env = _clean_env()
        project.mkdir(parents=True)
        self._run("init", "--no-scm", "-q")
        # Its state database goes with the project, not into a shared system folder.
        self._run("config", "core.site_cache_dir", str(project.parent / (project.name + "-site")))
        self._run("config", "core.check_update", "false")

    def _run(self, *args: str) -> Timing:
        return timed([self.exe, *args], cwd=self.project, env=self.env)

    def bring(self, src: Path, name: str) -> Path:
        """Copy the data into the project (untimed); metadata kept, so files look the same."""
        dest = self.project / name
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
        return dest

    def add(self, name: str) -> Timing:
        return self._run("add", name)

    def cache_bytes(self) -> int:
        return tree_bytes(self.project / ".dvc" / "cache")


def compile_ours() -> None:
    """Compile mlplane's bytecode, as ``pip install`` does for a wheel (an editable install
    leaves it to the first run, which would time the compiler)."""
    import mlplane

    package = Path(mlplane.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True,
                   capture_output=True)  # fmt: skip


def ensure_dvc_venv(venv: Path) -> tuple[Path, str]:
    """DVC's python and version, creating its virtualenv once (cached)."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not (marker.is_file() and python.is_file()):
        venv.parent.mkdir(parents=True, exist_ok=True)
        if not python.is_file():
            subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DVC_SPEC], check=True)
        code = "import dvc; print(dvc.__version__)"
        out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
        marker.write_text(out.stdout.strip() + "\n")
    return python, marker.read_text().strip()


# -- in process ------------------------------------------------------------------------------------


def ours_in_process(home: Path, name: str, path: Path) -> dict[str, float]:
    """Without interpreter start-up: the add and the unchanged re-add, then the storing
    step alone (``store_files``, in a second home), fresh and again."""
    from mlplane import Client
    from mlplane.datasets.storing import store_files

    out: dict[str, float] = {}
    files = [(p.relative_to(path).as_posix() if path.is_dir() else p.name, p)
             for p in files_of(path)]  # fmt: skip
    client = Client(str(home / "add"))
    try:
        os.sync()
        t0 = time.perf_counter()
        client.transport.add_dataset(name, path, project="default", progress=None)
        out["add_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.transport.add_dataset(name, path, project="default", progress=None)
        out["readd_seconds"] = time.perf_counter() - t0
    finally:
        client.close()
    client = Client(str(home / "store"))
    try:
        services = client.transport.services  # type: ignore[attr-defined]
        os.sync()
        t0 = time.perf_counter()
        res = store_files(services.db, services.chunks, files)
        out["store_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        store_files(services.db, services.chunks, files)
        out["store_again_seconds"] = time.perf_counter() - t0
    finally:
        client.close()
    out["bytes_in"], out["bytes_stored"] = res.bytes_in, res.bytes_stored
    return out


# -- the profile (a child process, so its peak memory is its own) ---------------------------------


def _peak_rss() -> int:
    """This process's peak resident memory, in bytes.

    ``VmHWM``, not ``getrusage().ru_maxrss``: on Linux a child's ``ru_maxrss`` starts at
    its parent's peak (it is carried through fork and exec), and the parent here has
    just held gigabytes of data.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def profile_child(path: str, reader: str) -> dict[str, Any]:
    """Profile (and check a contract over) a Parquet file; ``reader`` is ``dataset``
    (``pyarrow.dataset(...).to_batches``, as the service reads tables) or ``buffered``
    (the same with buffered column reads and no read-ahead)."""
    import pyarrow.dataset as pads

    from mlplane.datasets.profile import Profiler

    if reader == "buffered":
        options = pads.ParquetFragmentScanOptions(
            pre_buffer=False, use_buffered_stream=True, buffer_size=1 << 20
        )
        dataset = pads.dataset(
            path, format=pads.ParquetFileFormat(default_fragment_scan_options=options)
        )
        batches = dataset.to_batches(batch_size=65_536, batch_readahead=0, fragment_readahead=0)
    else:
        dataset = pads.dataset(path, format="parquet")
        batches = dataset.to_batches(batch_size=65_536)
    schema = dataset.schema
    try:
        from mlplane.datasets.contracts import ContractCheck, load_contract
    except ImportError as exc:
        check = None
        note = f"contracts not measured: mlplane.datasets.contracts does not import ({exc})"
    else:
        contract = load_contract(
            {
                "columns": {
                    "event_id": {"not_null": True, "unique": True},
                    "amount": {"not_null": True, "between": [0, 1_000_000]},
                    "country": {"in_set": _COUNTRIES},
                    "rating": {"between": [1, 5]},
                    "plan": {"in_set": ["free", "pro", "team", "enterprise"]},
                }
            }
        )
        check = ContractCheck(contract, schema)
        note = "not_null, unique, between and in_set on 5 columns"
    before = _peak_rss()
    prof = Profiler(schema)
    rows = 0
    t0 = time.perf_counter()
    for batch in batches:
        prof.update(batch)
        if check is not None:
            check.update(batch, file=Path(path).name)
        rows += batch.num_rows
    result = prof.result()
    passed = None
    if check is not None:
        passed = bool(getattr(check.finish(), "passed", True))
    dt = time.perf_counter() - t0
    return {"rows": rows, "columns": len(result.columns), "seconds": dt, "peak_rss": _peak_rss(),
            "rss_before": before, "contract": check is not None, "contract_passed": passed,
            "reader": reader, "note": note}  # fmt: skip


def measure_profile(path: Path, reader: str) -> dict[str, Any]:
    os.sync()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--profile-child", str(path), reader],
        capture_output=True, text=True, env=_clean_env(),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"profile child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- the scenarios -------------------------------------------------------------------------------


def scenario_add(name: str, src: Path, tmp: Path, dvc_python: Path) -> dict[str, Any]:
    """Fresh add, then an unchanged re-add, on both sides; then ours in process. Nothing is
    deleted until the end of the run: on ext4, deleting many files slows the creation of
    new ones for a minute or more, which would tax whichever side runs next."""
    size, count = tree_bytes(src), len(files_of(src))
    r: dict[str, Any] = {"bytes": size, "files": count}
    log(f"  DVC: copy {count:,} files into a fresh project (untimed), dvc add, dvc add again")
    dvc = Dvc(dvc_python, tmp / f"dvc-{name}")
    dvc.bring(src, name)
    r["dvc_add"] = asdict(dvc.add(name))
    r["dvc_readd"] = asdict(dvc.add(name))
    r["dvc_cache_bytes"] = dvc.cache_bytes()
    log("  ours: mlplane data add, then again")
    ours = Ours(tmp / f"ours-{name}")
    r["ours_add"] = asdict(ours.add(name, src))
    r["ours_blob_bytes"] = ours.blob_bytes()
    again = ours.add(name, src)
    r["ours_readd"] = asdict(again)
    r["ours_readd_created"] = "no new version" not in again.stdout
    log("  ours in process: the add and the re-add, then the storing step alone")
    r["in_process"] = ours_in_process(tmp / f"inproc-{name}", name, src)
    return r


def scenario_append(src: Path, tmp: Path, dvc_python: Path, fraction: float) -> dict[str, Any]:
    """Add a CSV, append ``fraction`` more rows, add again: what each store grows by."""
    import pyarrow.csv as pacsv

    rows = pacsv.read_csv(src).num_rows
    extra = max(1, int(rows * fraction))
    size = src.stat().st_size
    r: dict[str, Any] = {"bytes": size, "rows": rows, "appended_rows": extra}
    log(f"  DVC: add, append {extra:,} rows, add again")
    dvc = Dvc(dvc_python, tmp / "dvc-append")
    work = dvc.bring(src, "table.csv")
    dvc.add("table.csv")
    before = dvc.cache_bytes()
    work.chmod(0o644)  # DVC may leave the workspace copy read-only
    append_csv(work, 300, rows, extra)
    r["grown_bytes"] = work.stat().st_size - size
    r["dvc_add"] = asdict(dvc.add("table.csv"))
    r["dvc_new_bytes"] = dvc.cache_bytes() - before
    log("  ours: add, append the same rows, add again")
    ours = Ours(tmp / "ours-append")
    work = tmp / "ours-append-data" / "table.csv"
    work.parent.mkdir()
    shutil.copy2(src, work)
    ours.add("table", work)
    before = ours.blob_bytes()
    append_csv(work, 300, rows, extra)
    r["ours_add"] = asdict(ours.add("table", work))
    r["ours_new_blob_bytes"] = ours.blob_bytes() - before
    return r


# -- report ----------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    ours: float
    dvc: float | None
    unit: str
    higher_is_better: bool
    in_process: float | None = None
    goal: float | None = None  # a ratio to reach, ours against DVC
    goal_text: str = "-"
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better ours is (throughput up, time and bytes down)."""
        if self.dvc is None or not self.ours or not self.dvc:
            return None
        return self.ours / self.dvc if self.higher_is_better else self.dvc / self.ours


def _cpu(o: dict[str, Any], d: dict[str, Any]) -> str:
    return f"CPU time ours {o['cpu']:.1f} s, DVC {d['cpu']:.1f} s"


def figures(r: dict[str, Any]) -> list[Figure]:
    out = []
    big = r["big"]
    mb, ip = big["bytes"] / 1e6, big["in_process"]
    stored = big["ours_blob_bytes"]
    label = "1 GiB" if big["bytes"] >= GIB else f"{big['bytes'] / MIB:,.0f} MiB"
    note = (
        f"{big['files']} files, {big['bytes'] / MIB:,.0f} MiB; ours compressed and encrypted "
        f"them to {stored / MIB:,.0f} MiB ({stored / big['bytes']:.0%}), DVC's cache holds "
        f"{big['dvc_cache_bytes'] / MIB:,.0f} MiB; {_cpu(big['ours_add'], big['dvc_add'])}; "
        f"in process, the add took {ip['add_seconds']:.1f} s, of which the storing step "
        f"{ip['store_seconds']:.1f} s ({mb / ip['store_seconds']:,.0f} MB/s; measured alone) and "
        f"the rest (mostly the table pass: profile, PII scan) "
        f"{ip['add_seconds'] - ip['store_seconds']:.1f} s"
    )
    floor = storing_floor(r["limits"])
    note += (
        f"; no add that chunks, hashes, compresses (zstd 1) and encrypts every byte on these "
        f"{r['limits']['cores']} cores can take less than {floor:.2f} s, so nothing doing that "
        f"work can be more than {big['dvc_add']['seconds'] / floor:.1f}x DVC's add here, "
        f"before any table pass (see the machine table)"
    )
    out.append(Figure(f"add {label} (4 CSV + 2 Parquet)", mb / big["ours_add"]["seconds"],
                      mb / big["dvc_add"]["seconds"], "MB/s", True, mb / ip["add_seconds"],
                      2, ">= 2x", note=note))  # fmt: skip
    note = (
        f"both skip unchanged files by (size, mtime, inode); "
        f"{_cpu(big['ours_readd'], big['dvc_readd'])}"
        + ("; ours made a NEW VERSION" if big["ours_readd_created"] else "")
    )
    ours_s, dvc_s = big["ours_readd"]["seconds"], big["dvc_readd"]["seconds"]
    out.append(Figure(f"re-add {label}, unchanged", ours_s, dvc_s, "s", False,
                      ip["readd_seconds"], note=note))  # fmt: skip
    sm = r["small"]
    n, ip = sm["files"], sm["in_process"]
    note = (
        f"{n:,} files, {sm['bytes'] / MIB:,.0f} MiB; {_cpu(sm['ours_add'], sm['dvc_add'])}; "
        f"in process, the storing step alone {ip['store_seconds']:.1f} s "
        f"({n / ip['store_seconds']:,.0f} files/s)"
    )
    out.append(Figure(f"add {n:,} small files (1-10 KB)", sm["ours_add"]["seconds"],
                      sm["dvc_add"]["seconds"], "s", False, ip["add_seconds"], 5, ">= 5x",
                      note=note))  # fmt: skip
    note = (
        f"{_cpu(sm['ours_readd'], sm['dvc_readd'])}; in process, the storing step alone "
        f"{ip['store_again_seconds']:.2f} s"
    )
    out.append(Figure(f"re-add {n:,} small files, unchanged", sm["ours_readd"]["seconds"],
                      sm["dvc_readd"]["seconds"], "s", False, ip["readd_seconds"], 5, ">= 5x",
                      note=note))  # fmt: skip
    ap = r["append"]
    ours_new = ap["ours_new_blob_bytes"]
    pct_ours, pct_dvc = ours_new / ap["bytes"] * 100, ap["dvc_new_bytes"] / ap["bytes"] * 100
    note = (
        f"{ap['bytes'] / 1e6:,.0f} MB CSV, {ap['rows']:,} rows, +{ap['appended_rows']:,} rows "
        f"(+{ap['grown_bytes'] / 1e6:.1f} MB); our blob folder grew {ours_new / 1e6:.2f} MB "
        f"(new chunks, compressed and encrypted), DVC's cache grew "
        f"{ap['dvc_new_bytes'] / 1e6:,.1f} MB; the second add took ours "
        f"{ap['ours_add']['seconds']:.1f} s, DVC {ap['dvc_add']['seconds']:.1f} s"
    )
    out.append(Figure("append 1 % rows to a CSV, add again: new bytes", pct_ours, pct_dvc,
                      "% of file", False, None, None, "<= 3 % of the file", pct_ours <= 3,
                      note=note))  # fmt: skip
    for key, how in (
        ("profile", "pyarrow.dataset(...).to_batches(batch_size=65536), as the service reads"),
        ("profile_buffered", "the same with buffered column reads (pre_buffer=False, "
         "use_buffered_stream=True) and no read-ahead"),
    ):  # fmt: skip
        if not (pr := r.get(key)):
            continue
        what = "profile + contract" if pr["contract"] else "profile"
        note = (
            f"{pr['rows']:,} rows x {pr['columns']} columns, one Parquet file (1M-row groups); "
            f"{how}; in a child process, peak RSS {pr['peak_rss'] / MIB:,.0f} MiB "
            f"({pr['rss_before'] / MIB:,.0f} MiB before the first batch); contract: "
            f"{pr['note']}; no DVC equivalent"
        )
        name = f"{what}, {pr['rows'] / 1e6:g}M rows x 20 columns"
        if key == "profile_buffered":
            name += ", buffered reads"
        # The goal is the service's reader (buffered); pyarrow's default scanner is shown
        # for what it would cost, not judged.
        judged = key == "profile_buffered"
        goal = (
            f"peak < 1 GiB ({pr['peak_rss'] / MIB:,.0f} MiB)"
            if judged
            else (f"for information ({pr['peak_rss'] / MIB:,.0f} MiB)")
        )
        out.append(Figure(name, pr["rows"] / pr["seconds"], None, "rows/s", True, None, None,
                          goal, pr["peak_rss"] < GIB if judged else None,
                          note=note))  # fmt: skip
    for f in out:
        if f.met is None and f.goal is not None and f.ratio is not None:
            f.met = f.ratio >= f.goal
    return out


def storing_floor(lim: dict[str, float]) -> float:
    """The least wall time to cut, hash, compress (zstd 1, the CSV bytes: Parquet pages are
    probed and kept as they are) and encrypt every byte, with every core busy and nothing
    else to do, from the single-thread rates measured on the same files."""
    total, csv = lim["bytes"], lim["csv_bytes"]
    cpu = total / lim["fastcdc"] + total / lim["blake3_1"] + csv / lim["zstd1_csv"]
    cpu += total / lim["aes_gcm"]
    return cpu / lim["cores"]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.2f}"


def render(figs: list[Figure], r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=max(Console().width, 118))
    t = Table(title=f"mlplane data add vs DVC {r['dvc_version']}: command lines, start-up included")
    cols = ("scenario", "ours", "DVC", "unit", "ours is", "goal", "", "ours, in process")
    for col in cols:
        t.add_column(col, justify="left" if col in ("scenario", "unit", "goal", "") else "right")
    for i, f in enumerate(figs, 1):
        ratio = "-" if f.ratio is None else f"{f.ratio:,.1f}x"
        verdict = "" if f.met is None else ("[green]met" if f.met else "[red]not met")
        cells = (_fmt(f.ours), _fmt(f.dvc), f.unit, ratio, f.goal_text, verdict)
        t.add_row(f"{f.name} ({i})", *cells, _fmt(f.in_process))
    out.print(t)
    for i, f in enumerate(figs, 1):
        out.print(f"  ({i}) {f.note}")
    lim, big = r["limits"], r["big"]
    cli = big["bytes"] / big["ours_add"]["seconds"]
    store = big["bytes"] / big["in_process"]["store_seconds"]
    m = Table(title=f"The machine on the same {lim['bytes'] / MIB:,.0f} MiB ({lim['cores']} cores)")
    for col in ("limit", "rate", "ours, CLI add / limit", "ours, storing step / limit"):
        m.add_column(col, justify="left" if col == "limit" else "right")
    rows = (
        ("read, from the page cache", lim["read"]),
        ("BLAKE3, one thread", lim["blake3_1"]),
        ("BLAKE3, all threads", lim["blake3_all"]),
        ("md5, one thread (DVC's hash)", lim["md5"]),
        (f"zstd level 1, one thread, CSV (to {lim['zstd1_csv_ratio']:.0%})", lim["zstd1_csv"]),
        ("AES-256-GCM, one thread", lim["aes_gcm"]),
        ("FastCDC cutting, one thread", lim["fastcdc"]),
        (f"all four on {lim['cores']} cores (the floor of any such add)",
         lim["bytes"] / storing_floor(lim)),
    )  # fmt: skip
    for label, rate in rows:
        shown = f"{rate / GIB:,.2f} GiB/s" if rate >= GIB else f"{rate / MIB:,.0f} MiB/s"
        m.add_row(label, shown, f"{cli / rate:.0%}", f"{store / rate:.0%}")
    out.print(m)
    goals = [f for f in figs if f.met is not None]
    missed = [f.name for f in goals if not f.met]
    out.print(
        f"Summary: {len(goals) - len(missed)} of {len(goals)} goals met"
        + (f" (not met: {'; '.join(missed)})" if missed else "")
        + f"; wall time {r['wall_seconds'] / 60:.1f} min. Timings are noisy here: compare ratios."
    )


# -- main ------------------------------------------------------------------------------------------


def run(sz: Sizes, tmp: Path) -> dict[str, Any]:
    r: dict[str, Any] = {"sizes": asdict(sz)}
    log("DVC virtualenv")
    dvc_python, r["dvc_version"] = ensure_dvc_venv(BENCH / "dvc-venv")
    compile_ours()
    data = ensure_data(sz)
    log("machine limits on the 1 GiB set")
    r["limits"] = machine_limits(data["big"])
    log("add the mixed set (CSV + Parquet)")
    r["big"] = scenario_add("big", data["big"], tmp, dvc_python)
    log(f"add {sz.small_files:,} small files")
    r["small"] = scenario_add("small", data["small"], tmp, dvc_python)
    log("append 1 % to a CSV")
    r["append"] = scenario_append(data["append"], tmp, dvc_python, sz.append_fraction)
    log(f"profile {sz.profile_rows:,} rows x 20 columns (child process)")
    r["profile"] = measure_profile(data["profile"], "dataset")
    r["profile_buffered"] = measure_profile(data["profile"], "buffered")
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="128 MiB and 10,000 files, for a smoke run"
    )
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (the stores)")
    ap.add_argument("--profile-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile_child:
        sys.stdout.write(json.dumps(profile_child(*args.profile_child)) + "\n")
        return 0
    sz = Sizes.quick() if args.quick else Sizes()
    BENCH.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="data-", dir=BENCH))
    t0 = time.perf_counter()
    try:
        r = run(sz, tmp)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if args.keep:
            log(f"kept {tmp.relative_to(ROOT)}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    r["wall_seconds"] = time.perf_counter() - t0
    figs = figures(r)
    render(figs, r)
    if args.json:
        r["figures"] = [{**asdict(f), "ratio": f.ratio} for f in figs]
        args.json.write_text(json.dumps(r, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
