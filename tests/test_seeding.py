from __future__ import annotations

import importlib.util
import os
import random
import sys

import numpy as np
import pytest

from mlplane import seeding
from mlplane.errors import InvalidInput
from mlplane.seeding import last_seed, seed_everything


@pytest.fixture(autouse=True)
def _restore_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # seed_everything writes process-wide state; give it back after each test.
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "random"))
    monkeypatch.setattr(seeding, "_last_seed", None)


def test_python_and_numpy_repeat() -> None:
    seed_everything(42)
    first = (random.random(), np.random.rand())
    seed_everything(42)
    assert (random.random(), np.random.rand()) == first
    seed_everything(43)
    assert (random.random(), np.random.rand()) != first


def test_returns_tags_and_sets_hash_seed_for_children() -> None:
    tags = seed_everything(7)

    assert tags["mlplane.seed"] == "7"
    libs = tags["mlplane.seed.libs"].split(",")
    assert libs[:2] == ["python", "numpy"]
    torch_installed = "torch" in sys.modules or importlib.util.find_spec("torch") is not None
    assert ("torch" in libs) == torch_installed
    assert os.environ["PYTHONHASHSEED"] == "7"


def test_last_seed() -> None:
    assert last_seed() is None
    seed_everything(2**32 - 1)
    assert last_seed() == 2**32 - 1
    with pytest.raises(InvalidInput):
        seed_everything(-1)
    assert last_seed() == 2**32 - 1


def test_numpy_integers_are_accepted() -> None:
    assert seed_everything(np.int64(5))["mlplane.seed"] == "5"  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "42", None, True])
def test_invalid_seeds(seed: object) -> None:
    with pytest.raises(InvalidInput, match="seed must be an integer"):
        seed_everything(seed)  # type: ignore[arg-type]


def test_deterministic_without_torch_adds_no_claim() -> None:
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed")
    assert "mlplane.seed.deterministic" not in seed_everything(1, deterministic=True)


class FakeTorch:
    """Records the calls seed_everything makes; torch itself is not installed here."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        outer = self

        class Cuda:
            @staticmethod
            def is_available() -> bool:
                return True

            @staticmethod
            def manual_seed_all(seed: int) -> None:
                outer.calls.append(("cuda.manual_seed_all", seed))

        class Cudnn:
            deterministic = False
            benchmark = True

        self.cuda = Cuda
        self.backends = type("Backends", (), {"cudnn": Cudnn})

    def manual_seed(self, seed: int) -> None:
        self.calls.append(("manual_seed", seed))

    def use_deterministic_algorithms(self, mode: bool) -> None:
        self.calls.append(("use_deterministic_algorithms", mode))


def test_torch_is_seeded_when_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = FakeTorch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)

    tags = seed_everything(3, deterministic=True)

    assert tags == {
        "mlplane.seed": "3",
        "mlplane.seed.libs": "python,numpy,torch",
        "mlplane.seed.deterministic": "true",
    }
    assert torch.calls == [
        ("manual_seed", 3),
        ("cuda.manual_seed_all", 3),
        ("use_deterministic_algorithms", True),
    ]
    assert torch.backends.cudnn.deterministic is True
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_torch_failure_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = FakeTorch()
    torch.manual_seed = None  # type: ignore[assignment,method-assign]
    monkeypatch.setitem(sys.modules, "torch", torch)

    assert seed_everything(3)["mlplane.seed.libs"] == "python,numpy"
