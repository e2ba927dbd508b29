"""End-to-end UI tests: a real ``mlplane server`` (token auth) on a loopback port, driven by
a real headless Chromium through Playwright.

One store is seeded per test session (:class:`Seeded`): an experiment with three runs
(params, metric curves, artifacts of each previewable kind, a dataset input), a dataset
with two versions (one holding e-mail addresses), a model with two versions trained by
those runs, a ``champion`` alias, and a deployment splitting traffic between them.
Tokens: a platform admin, and a viewer, a contributor and an approver of ``default``.

Chromium is Debian's (``/usr/bin/chromium``, or ``MLPLANE_CHROMIUM``); ``.ci/run``
installs it. A failing test leaves a screenshot of its page under
``.ui-screenshots/`` (or ``MLPLANE_UI_SCREENSHOTS``), named after the test.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlplane.config import load_settings
from mlplane.security import local_admin
from mlplane.services import Services
from mlplane.tracking.entities import MetricColumns, RunInput
from tests.conftest import ServerProcess

ROOT = local_admin("root")
CHROMIUM = os.environ.get("MLPLANE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("MLPLANE_UI_SCREENSHOTS", ".ui-screenshots"))
STEPS = 100

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install chromium (or set MLPLANE_CHROMIUM)",
        allow_module_level=True,
    )


def png(width: int = 8, height: int = 8) -> bytes:
    """A small valid PNG (a gradient), without an imaging library."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 30 % 256, y * 30 % 256, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass
class Seeded:
    home: Path
    svc: Services
    tokens: dict[str, str]
    experiment_id: str
    experiment: str
    runs: dict[str, str]
    """run name -> run id"""
    dataset: str = "churn"
    model: str = "churn-model"
    deployment: str = "churn-live"
    extra: dict[str, Any] = field(default_factory=dict)


def _seed(home: Path) -> Seeded:
    svc = Services.from_settings(load_settings(home=home))
    ids = svc.identities
    tokens = {"admin": ids.bootstrap(ROOT, "boss").secret}
    for role, name in (("viewer", "vic"), ("contributor", "cora"), ("approver", "april")):
        ids.create_identity(ROOT, name)
        ids.grant(ROOT, name, "default", role)
        tokens[role] = ids.create_token(ROOT, name).secret

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, 300),
            "charges": rng.normal(70, 20, 300).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], 300),
            "email": [f"user{i}@example.com" for i in range(300)],
            "churned": rng.integers(0, 2, 300),
        }
    )
    data = home / "seed-data"
    data.mkdir()
    frame.iloc[:200].to_csv(data / "churn.csv", index=False)
    svc.data.add(ROOT, "churn", data / "churn.csv")
    frame.to_csv(data / "churn.csv", index=False)
    svc.data.add(ROOT, "churn", data / "churn.csv")

    experiment = f"e2e-churn-{uuid.uuid4().hex[:6]}"
    eid = svc.tracking.create_experiment(ROOT, experiment)
    runs: dict[str, str] = {}
    x = frame[["tenure", "charges"]].to_numpy(dtype=float)
    y = frame["churned"].to_numpy()
    for i, (name, lr, depth) in enumerate(
        (("run-a", 0.1, 3), ("run-b", 0.01, 5), ("run-c", 0.001, 7))
    ):
        t0 = 1_765_000_000_000 + i * 3_600_000
        run = svc.tracking.create_run(
            ROOT, eid, run_name=name, start_time=t0, tags={"team": "growth"}
        ).info.run_id
        runs[name] = run
        steps = list(range(STEPS))
        loss = [float(np.exp(-s * lr * 3) + 0.1 * (i + 1) + 0.01 * rng.random()) for s in steps]
        acc = [float(1 - v / 2) for v in loss]
        svc.tracking.log_batch(
            ROOT,
            run,
            metrics=MetricColumns(
                ["loss"] * STEPS + ["accuracy"] * STEPS,
                loss + acc,
                [t0 + s * 1000 for s in steps] * 2,
                steps * 2,
            ),
            params={"lr": str(lr), "depth": str(depth), "optimizer": "adam" if i < 2 else "sgd"},
        )
        files = home / f"artifacts-{name}"
        files.mkdir()
        (files / "notes.txt").write_text(f"notes of {name}\nsecond line\n")
        (files / "plot.png").write_bytes(png())
        frame.head(20).to_csv(files / "sample.csv", index=False)
        for f in sorted(files.iterdir()):
            svc.tracking.log_artifact(ROOT, run, f.name, f)
        svc.tracking.log_inputs(
            ROOT, run, [RunInput(kind="dataset", name="churn", version="2", context="training")]
        )
        model = LogisticRegression(C=1 / (depth + 1)).fit(x, y)
        if name != "run-c":
            svc.registry.register(
                ROOT,
                "churn-model",
                model,
                input_example=pd.DataFrame(x[:5], columns=["tenure", "charges"]),
                run_id=run,
                metrics={"accuracy": acc[-1]},
                params={"lr": lr},
                description=f"trained by {name}",
            )
        svc.tracking.set_terminated(ROOT, run, "FINISHED", end_time=t0 + STEPS * 1000)
    svc.registry.set_alias(ROOT, "churn-model", "champion", 1)
    svc.deployments.create(ROOT, "churn-live", "churn-model@champion")
    svc.deployments.start_ab(ROOT, "churn-live", [("churn-model@1", 70), ("churn-model@2", 30)])
    return Seeded(home, svc, tokens, eid, experiment, runs)


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    s = _seed(tmp_path_factory.mktemp("ui"))
    yield s
    s.svc.close()


@pytest.fixture(scope="session")
def server(seeded: Seeded) -> Iterator[ServerProcess]:
    srv = ServerProcess(seeded.home, env={"MLPLANE_AUTH": "token"})
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(browser: Any, server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose base URL is the server; errors in the
    page's scripts fail the test."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # A page answered with 4xx on purpose logs "Failed to load resource": not a script error.
    pg.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield pg
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / f"{request.node.name}.png"
        try:
            pg.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failing page: {shot}")
        except Exception as exc:  # the page may be gone; the test's own failure stands
            print(f"no screenshot: {exc}")
    context.close()
    assert not errors, f"errors in the page's scripts: {errors}"


def login(page: Any, token: str, target: str = "/ui/") -> None:
    """Sign in through the login page, as a person would, and land on ``target``."""
    page.goto(target)
    assert "/ui/login" in page.url, f"expected the login page, got {page.url}"
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/ui/login" not in url)


def chart_series(page: Any, selector: str) -> list[str]:
    """The series labels of the chart in ``selector`` once drawn, after checking its canvas
    holds drawn pixels."""
    el = page.locator(selector).first
    el.wait_for(state="attached")
    page.wait_for_function(
        "sel => { const e = document.querySelector(sel); return e && e.dataset.rendered === '1'; }",
        arg=selector,
    )
    painted = page.evaluate(
        """sel => {
          const c = document.querySelector(sel + ' canvas');
          if (!c) return false;
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
          return false;
        }""",
        selector,
    )
    assert painted, f"the chart in {selector} drew nothing"
    import json

    return list(json.loads(el.get_attribute("data-series") or "[]"))
