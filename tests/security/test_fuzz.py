"""Property-based fuzzing of every operation in the server's own OpenAPI document, with
schemathesis, against a real server with token authentication, sent as a platform admin
(so that requests get past authentication and permission checks into the routes' own
parsing and the services).

What is checked, and why only that:

* **No 5xx, anywhere.** Whatever a client sends, a malformed body, a wrong type, an id
  that does not exist, is the client's error and must be answered with a 4xx. A 5xx is
  a bug in the server (an unmapped exception, input that was never validated).
* **Response schema conformance where a route declares a response model**, i.e. on 2xx
  answers. Our routes document their success body (FastAPI's ``response_model``) and
  FastAPI's stock 422 schema, but every error answer is ``application/problem+json``
  (or MLflow's ``{"error_code", "message"}`` on its API), mapped once in
  :mod:`mlplane.server.errors`. Holding error bodies to the undocumented or stock shapes
  would only fail on the documentation, so conformance is checked on documented
  successes only; the error shapes have their own tests.

Requests are generated both valid (positive) and invalid (negative) per the schema, a
few per operation, from a fixed seed (``derandomize``) and without shrinking, so a run is
reproducible and bounded. Operations that delete go last, so the seeded data (an
experiment, a run with a metric and an artifact, a dataset, a model version) is whole
for every other operation. No operation is left out: the routes that read a raw body
(artifact and multipart part uploads, dataset and model versions as tar streams) and the
MLflow routes that parse their own JSON document no body, so schemathesis sends them
without one, which is a client error like any other and must be a 4xx.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import response_schema_conformance
from sklearn.tree import DecisionTreeClassifier

from mlplane.config import load_settings
from mlplane.security import local_admin
from mlplane.services import Services
from mlplane.tracking.entities import MetricColumns
from tests.conftest import ServerProcess

ROOT = local_admin("root")
EXAMPLES = 4
"""Per operation and generation mode: enough to vary each parameter, small enough to keep
the ~180 operations well under a minute and a half on two cores."""


@dataclass
class Fuzzed:
    url: str
    token: str
    ids: dict[str, str]
    """Seeded ids by path parameter name; ``name``, ``ref`` and ``path`` for models (the
    dataset ones are under ``ds_name``, ``ds_ref`` and ``ds_path``)."""


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)

    def by_status_5xx(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home = tmp_path_factory.mktemp("fuzz")
    svc = Services.from_settings(load_settings(home=home))
    token = svc.identities.bootstrap(ROOT, "boss").secret
    # Some data, so that lists and searches answer with bodies to hold to their schemas.
    eid = svc.tracking.create_experiment(ROOT, f"fuzz-{uuid.uuid4().hex[:8]}")
    run = svc.tracking.create_run(ROOT, eid, run_name="r").info.run_id
    svc.tracking.log_batch(ROOT, run, metrics=MetricColumns(["m"], [0.5], [1], [0]))
    src = home / "a.txt"
    src.write_text("hello")
    svc.tracking.log_artifact(ROOT, run, "a.txt", src)
    data = home / "data"
    data.mkdir()
    (data / "d.csv").write_text("a,b\n1,2\n3,4\n")
    svc.data.add(ROOT, "ds", data)
    x = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    version = svc.registry.register(
        ROOT, "mdl", DecisionTreeClassifier(max_depth=2).fit(x, x["a"] > 9)
    )
    svc.registry.set_alias(ROOT, "mdl", "champ", 1)
    lm = svc.tracking.create_logged_model(ROOT, eid, name="lm").model_id
    svc.tracking.log_model_artifact(ROOT, lm, "m.txt", src)
    ids = {
        "experiment_id": eid,
        "run_id": run,
        "model_id": lm,
        "name": "mdl",
        "ref": "mdl@1",
        "version": "1",
        "alias": "champ",
        "path": version.files[0].path,
        "ds_name": "ds",
        "ds_ref": "ds@1",
        "ds_path": "d.csv",
        "run_path": "a.txt",
    }
    srv = ServerProcess(home, env={"MLPLANE_AUTH": "token"})
    try:
        yield Fuzzed(url=srv.url, token=token, ids=ids)
    finally:
        srv.stop()
        svc.close()


def _fuzz(op: schemathesis.APIOperation, mode: GenerationMode, f: Fuzzed, tally: Tally) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {f.token}"

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # No shrinking: every finding is recorded rather than raised, so there is nothing
        # to shrink, and it is what makes a failing run take minutes.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case: schemathesis.Case) -> None:
        resp = case.call(base_url=f.url, session=session, timeout=30)
        tally.sent += 1
        tally.by_status[resp.status_code] = tally.by_status.get(resp.status_code, 0) + 1
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        if resp.status_code >= 500:
            tally.problems.append(f"{where}: {resp.status_code} {resp.text[:300]}")
        elif 200 <= resp.status_code < 300:
            try:
                case.validate_response(resp, checks=[response_schema_conformance])
            except AssertionError as exc:
                tally.problems.append(f"{where}: body does not match its schema: {exc}"[:600])

    try:
        one()
    except Unsatisfiable:
        # Negative mode on an operation with nothing it can make invalid: no parameters,
        # or only strings that take any value. Positive mode has still sent it.
        if mode is GenerationMode.POSITIVE:
            raise
        tally.unsatisfiable.append(f"{op.method.upper()} {op.path}")


def _with_seeded_ids(spec: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """``spec`` with the seeded id of its kind as the example of each path parameter.

    Random strings in the path only ever reach "not found"; schemathesis mixes examples
    into what it generates, so part of the requests reach the services with a live
    resource and a fuzzed query or body.
    """
    for template, item in spec["paths"].items():
        for op in item.values():
            for param in op.get("parameters", []):
                name = param["name"]
                if param["in"] != "path" or name not in ids:
                    continue
                if "/datasets/" in template and f"ds_{name}" in ids:
                    name = f"ds_{name}"
                elif template.startswith("/api/v1/runs/") and name == "path":
                    name = "run_path"
                param["example"] = ids[name]
    return spec


def test_fuzz_every_operation(
    fuzzed: Fuzzed, record_property: Callable[[str, object], None]
) -> None:
    spec = httpx.get(
        fuzzed.url + "/openapi.json",
        headers={"Authorization": f"Bearer {fuzzed.token}"},
        timeout=30,
    ).json()
    schema = schemathesis.openapi.from_dict(_with_seeded_ids(spec, fuzzed.ids))
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) > 150  # the app itself, not an empty shell
    # Deletes last, so that the seeded data is there for everything else.
    ops.sort(key=lambda op: op.method.upper() == "DELETE" or "delete" in op.path)
    tally = Tally()
    started = time.monotonic()
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, mode, fuzzed, tally)
    took = time.monotonic() - started
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.by_status.items()))
    print(
        f"\nfuzzed {len(ops)} operations with {tally.sent} requests in {took:.1f} s;"
        f" statuses {statuses}; {tally.by_status_5xx()} 5xx; {len(tally.problems)} problems"
    )
    record_property("fuzz_requests", tally.sent)
    record_property("fuzz_server_errors", tally.by_status_5xx())
    assert tally.sent >= len(ops)  # every operation was sent at least once
    assert not tally.problems, f"{len(tally.problems)} of {tally.sent} answers:\n" + "\n".join(
        tally.problems
    )
