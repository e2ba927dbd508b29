"""Reproducible samples of a version, stored as versions of their own.

A row is kept when a keyed hash of (seed, file, row index) falls under the
fraction, so the same seed always keeps the same rows, whatever the batch
sizes, and a larger fraction keeps a superset of a smaller one's rows. Files
that are not tables (images, …) are sampled whole, by a hash of their path.
The sample records which version it came from and how.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from mlplane import projects
from mlplane.datasets.entities import AddResult
from mlplane.errors import InvalidInput
from mlplane.security import Principal

if TYPE_CHECKING:  # NumPy loads when a sample is drawn, not with the data service
    import numpy as np

_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _splitmix(x: np.ndarray) -> np.ndarray:
    import numpy as np

    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
        return x ^ (x >> np.uint64(31))


def _key(seed: int, text: str) -> np.uint64:
    import numpy as np

    return np.uint64(int.from_bytes(blake3.blake3(f"{seed}\0{text}".encode()).digest()[:8], "big"))


def keep_mask(seed: int, file: str, start: int, n: int, fraction: float) -> np.ndarray:
    """Which of rows ``start … start+n-1`` of ``file`` the sample keeps."""
    import numpy as np

    rows = np.arange(start, start + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        u = (_splitmix(rows ^ _key(seed, file)) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return u < fraction


def _check(fraction: float) -> None:
    if not (isinstance(fraction, int | float) and 0.0 < float(fraction) <= 1.0):
        raise InvalidInput(f"fraction must be in (0, 1], e.g. 0.01 for 1 %; got {fraction!r}")


class SamplingMixin:
    """The sample use case of :class:`~mlplane.datasets.service.DataService`."""

    get: Any
    add: Any
    materialize: Any

    def sample(
        self,
        p: Principal,
        ref: str,
        *,
        fraction: float,
        seed: int = 0,
        into: str | None = None,
        project: str = projects.DEFAULT_PROJECT,
        progress: Callable[[int], None] | None = None,
    ) -> AddResult:
        """Store a reproducible sample of ``ref`` as a version of ``into``
        (default ``<name>-sample``); rows of tables, whole files otherwise."""
        from mlplane.datasets import profile as profile_mod

        _check(fraction)
        source = self.get(p, ref, project=project)
        target = into or f"{source.name}-sample"
        if target == source.name:
            raise InvalidInput(
                "a sample goes to its own dataset (default <name>-sample), so that "
                f"{source.name}@latest stays the full data; pick another --into"
            )
        with tempfile.TemporaryDirectory(prefix="mlplane-sample-") as tmp:
            src, out = Path(tmp, "src"), Path(tmp, "out")
            self.materialize(p, source.ref, src, project=project)
            kept = 0
            for f in source.files:
                fmt = profile_mod.table_format(f.path)
                if fmt is None:
                    if keep_mask(seed, "files", _path_index(f.path), 1, fraction)[0]:
                        dest = out / f.path
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(src / f.path, dest)
                        kept += 1
                    continue
                _sample_table(src / f.path, out / f.path, fmt, f.path, seed, fraction)
                kept += 1
            if not kept:
                raise InvalidInput(
                    f"a {fraction} sample of {source.ref} keeps no file: use a larger fraction"
                )
            return self.add(
                p,
                target,
                out,
                project=project,
                progress=progress,
                pii=source.pii_policy,
                derived_from=source.ref,
                derivation={"op": "sample", "fraction": fraction, "seed": seed},
            )


def _path_index(path: str) -> int:
    return int.from_bytes(blake3.blake3(path.encode()).digest()[:7], "big")


def _sample_table(src: Path, dest: Path, fmt: str, rel: str, seed: int, fraction: float) -> None:
    import pyarrow as pa
    import pyarrow.dataset as pads

    from mlplane.datasets.pipeline import BATCH_ROWS, _Writer

    dataset = pads.dataset(str(src), format=fmt)
    writer = _Writer(dest, fmt, dataset.schema)
    start = 0
    try:
        for batch in dataset.to_batches(batch_size=BATCH_ROWS):
            mask = keep_mask(seed, rel, start, batch.num_rows, fraction)
            start += batch.num_rows
            writer.write(batch.filter(pa.array(mask)))
    finally:
        writer.close()
