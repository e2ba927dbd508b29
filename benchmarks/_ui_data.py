"""The runs ``benchmarks/ui.py`` loads into both stores: the same names, params and
metrics on each side (this file is imported by both interpreters, so it uses only the
standard library)."""

from __future__ import annotations

import math
import random

BASE_TS = 1_765_000_000_000


def run_spec(i: int) -> tuple[str, dict[str, str], dict[str, float]]:
    """Run ``i``: its name, five params and five metrics (one point each)."""
    rnd = random.Random(i)
    params = {
        "lr": str(round(10 ** rnd.uniform(-4, -1), 6)),
        "depth": str(rnd.randint(2, 12)),
        "model": rnd.choice(["rf", "gbm", "mlp", "lr"]),
        "batch": str(rnd.choice([32, 64, 128, 256])),
        "seed": str(i),
    }
    metrics = {
        "acc": rnd.random(),
        "loss": rnd.random() * 2,
        "f1": rnd.random(),
        "auc": 0.5 + rnd.random() / 2,
        "latency_ms": rnd.uniform(1, 50),
    }
    return f"run-{i:05d}", params, metrics


def curve(i: int, steps: int) -> list[tuple[int, float]]:
    """A training curve of ``steps`` points for run ``i`` (the compare and run pages)."""
    rnd = random.Random(-i - 1)
    rate = rnd.uniform(0.002, 0.02)
    return [(s, math.exp(-s * rate) + 0.05 * rnd.random()) for s in range(steps)]
