"""Every route of the server, sent as every kind of caller, against the permission it declares
(:mod:`mlplane.server.permissions`).

One real server with token authentication holds one project (``default``: MLflow's API
addresses it without naming it) with an experiment, a run with a metric and an artifact,
a logged model, a dataset version and a model version. Each route gets one concrete request
(path parameters filled with those ids; bodies minimal but valid enough to reach the
service's permission check), sent as:

* no token, an expired token, a revoked token: 401 on every route but the open ones;
* a token for another project, a viewer, a contributor, an approver and an admin of the
  project, a platform admin: a caller whose role lacks the declared level gets 403, never
  2xx; one that has it gets neither 401 nor 403, and never a 5xx (a 4xx for a body that is
  only minimal, or for a resource an earlier caller deleted, is fine).

Searches over every project (:data:`FILTERING`) answer a caller without the role with 200
and leave out what it may not read, rather than 403: for them the test checks that the
answer names nothing of the project. No route answers 404 to hide a resource from a caller
who lacks the role: every denial in this matrix is a 403.

Callers go one after the other over every route, the ones that change nothing first, so
that a resource a contributor deletes is gone only for the callers allowed to touch it.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.routing import iter_route_contexts
from sklearn.tree import DecisionTreeClassifier

from mlplane.config import load_settings
from mlplane.security import local_admin
from mlplane.security.access import ROLE_PERMISSIONS, Permission
from mlplane.server.app import create_app
from mlplane.server.permissions import Access, declared
from mlplane.services import Services
from mlplane.tracking.entities import MetricColumns
from tests.conftest import ServerProcess

ROOT = local_admin("root")
MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
UNAUTHENTICATED = ("no token", "expired", "revoked")
ROLES = {"viewer": "vic", "contributor": "cora", "approver": "april", "admin": "adam"}
CALLERS = (*UNAUTHENTICATED, "other project", *ROLES, "platform admin")
"""In the order they are sent: those that may change state last, the broadest last of all."""

FILTERING = frozenset(
    {
        ("GET", "/api/v1/experiments"),
        ("POST", "experiments/search"),
        ("GET", "experiments/search"),
        ("GET", "registered-models/search"),
        ("GET", "model-versions/search"),
    }
)
"""Searches across projects: (method, path without the MLflow prefix)."""


Route = tuple[str, str, Access]


def _routes(home: Path) -> list[tuple[str, str, Access | None]]:
    """(method, path template, declared level) of every route of the app, HEAD aside."""
    svc = Services.from_settings(load_settings(home=home, auth="token"))
    try:
        app = create_app(svc.settings, svc)
    finally:
        svc.close()
    out = []
    for ctx in iter_route_contexts(app.routes):
        extra = getattr(ctx, "openapi_extra", None)
        for method in sorted((ctx.methods or set()) - {"HEAD"}):
            out.append((method, ctx.path or "", declared(method, ctx.path or "", extra)))
    return out


@dataclass
class Project:
    home: Path
    url: str
    tokens: dict[str, str | None]
    experiment: str
    experiment_name: str
    run: str
    logged_model: str
    upload: str
    model_file: str
    dataset_files: bytes
    model_folder: bytes
    markers: tuple[str, ...]
    """What a search must not show to a caller without a role in the project."""


def _tar(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return buf.getvalue()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    home = tmp_path_factory.mktemp("matrix")
    svc = Services.from_settings(load_settings(home=home))
    ids = svc.identities
    tokens: dict[str, str | None] = {"no token": None}
    tokens["platform admin"] = ids.bootstrap(ROOT, "boss").secret
    for role, name in ROLES.items():
        ids.create_identity(ROOT, name)
        ids.grant(ROOT, name, "default", role)
        tokens[role] = ids.create_token(ROOT, name).secret
    ids.create_identity(ROOT, "olga")
    ids.grant(ROOT, "olga", "other", "admin")
    tokens["other project"] = ids.create_token(ROOT, "olga").secret
    tokens["expired"] = ids.create_token(ROOT, "adam", expires_in_ms=1).secret
    revoked = ids.create_token(ROOT, "adam")
    ids.revoke_token(ROOT, revoked.info.token_id)
    tokens["revoked"] = revoked.secret

    name = f"matrix-{uuid.uuid4().hex[:8]}"
    eid = svc.tracking.create_experiment(ROOT, name)
    run = svc.tracking.create_run(ROOT, eid, run_name="r").info.run_id
    metric = MetricColumns(["m"], [0.5], [1], [0])
    svc.tracking.log_batch(ROOT, run, metrics=metric, params={"p": "1"})
    src = home / "a.txt"
    src.write_text("hello")
    svc.tracking.log_artifact(ROOT, run, "a.txt", src)
    lm = svc.tracking.create_logged_model(ROOT, eid, name="lm").model_id
    svc.tracking.log_model_artifact(ROOT, lm, "m.txt", src)
    upload = svc.tracking.create_upload(ROOT, "run", run, "big.bin", 1)
    data = home / "data"
    data.mkdir()
    (data / "d.csv").write_text("a,b\n1,2\n3,4\n")
    svc.data.add(ROOT, "ds", data)
    x = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    model = DecisionTreeClassifier(max_depth=2).fit(x, (x["a"] > 9).astype(int))
    version = svc.registry.register(ROOT, "mdl", model)
    _, folder, _ = svc.registry.fetch(ROOT, "mdl@1")
    svc.registry.register(ROOT, "mdl", model)  # a second version to canary, shadow and split
    svc.deployments.create(ROOT, "mdl", "mdl@1")
    mlmodel = home / "MLmodel"  # the run's "m" folder: a source for MLflow's version create
    mlmodel.write_text("flavors: {}\n")
    svc.tracking.log_artifact(ROOT, run, "m/MLmodel", mlmodel)
    time.sleep(0.005)  # let the 1 ms token run out
    srv = ServerProcess(home, env={"MLPLANE_AUTH": "token"})
    try:
        yield Project(
            home=home,
            url=srv.url,
            tokens=tokens,
            experiment=eid,
            experiment_name=name,
            run=run,
            logged_model=lm,
            upload=upload,
            model_file=version.files[0].path,
            dataset_files=_tar(data),
            model_folder=_tar(Path(folder)),
            markers=(name, run, lm, "mdl"),
        )
    finally:
        srv.stop()
        svc.close()


@dataclass
class Call:
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _v1(method: str, key: str, path: str, p: Project) -> Call:
    """The /api/v1 request of a route: ``key`` is its template without the prefix, ``path``
    the template filled in."""
    e, r = p.experiment, p.run
    tar = {"Content-Type": "application/x-tar"}
    bodies: dict[tuple[str, str], Callable[[], Call]] = {
        ("POST", "/experiments"): lambda: Call(path, json={"name": "made-in-v1"}),
        ("GET", "/experiments/by-name"): lambda: Call(path, {"name": p.experiment_name}),
        ("PATCH", "/experiments/{experiment_id}"): lambda: Call(path, json={"description": "d"}),
        ("PUT", "/experiments/{experiment_id}/tags/{key:path}"): lambda: Call(
            path, json={"value": "v"}
        ),
        ("POST", "/runs"): lambda: Call(path, json={"experiment_id": e}),
        ("POST", "/runs/search"): lambda: Call(path, json={"experiment_ids": [e]}),
        ("POST", "/runs/heartbeat"): lambda: Call(path, json={"run_ids": [r]}),
        ("PATCH", "/runs/{run_id}"): lambda: Call(path, json={"run_name": "r2"}),
        ("POST", "/runs/{run_id}/log-batch"): lambda: Call(path, json={"params": {"q": "1"}}),
        ("POST", "/runs/{run_id}/inputs"): lambda: Call(
            path, json={"inputs": [{"kind": "dataset", "name": "ds", "version": "1"}]}
        ),
        ("PUT", "/runs/{run_id}/artifacts/{path:path}"): lambda: Call(path, content=b"x"),
        ("POST", "/datasets/{name}/versions"): lambda: Call(
            path, content=p.dataset_files, headers=tar
        ),
        ("POST", "/datasets/{ref}/tags"): lambda: Call(path, json={"tag": "t"}),
        ("POST", "/datasets/{ref}/samples"): lambda: Call(path, json={"fraction": 0.5}),
        ("POST", "/gc"): lambda: Call(path, json={"dry_run": True}),
        ("POST", "/models/{name}/versions"): lambda: Call(
            path, content=p.model_folder, headers=tar
        ),
        ("PUT", "/models/{name}/aliases/{alias}"): lambda: Call(path, json={"version": 1}),
        ("PUT", "/models/{name}/policy"): lambda: Call(path, json={}),
        ("PATCH", "/model-versions/{ref}/card"): lambda: Call(path, json={}),
        ("PUT", "/model-versions/{ref}/tags/{key}"): lambda: Call(path, json={"value": "v"}),
        ("POST", "/signing-keys"): lambda: Call(path, json={}),
        ("POST", "/deployments"): lambda: Call(path, json={"name": "made", "model": "mdl@1"}),
        ("PATCH", "/deployments/{name}/config"): lambda: Call(path, json={"max_wait_ms": 3}),
        ("POST", "/deployments/{name}/canary"): lambda: Call(
            path, json={"model": "mdl@2", "interval": "1h"}
        ),
        ("PUT", "/deployments/{name}/shadow"): lambda: Call(
            path, json={"model": "mdl@2", "percent": 10}
        ),
        ("PUT", "/deployments/{name}/ab"): lambda: Call(
            path, json={"variants": [["mdl@1", 50], ["mdl@2", 50]]}
        ),
        ("PUT", "/deployments/{name}/route"): lambda: Call(path, json={"model": "mdl@1"}),
        ("POST", "/deployments/{name}/feedback"): lambda: Call(
            path, json={"request_id": "r1-0123", "label": 1}
        ),
    }
    return bodies.get((method, key), lambda: Call(path))()


def _mlflow(method: str, key: str, path: str, p: Project) -> Call:
    e, r, lm = p.experiment, p.run, p.logged_model
    mv = {"name": "mdl", "version": "1"}
    run_art = f"{e}/{r}/artifacts"
    calls: dict[tuple[str, str], Call] = {
        ("POST", "/experiments/create"): Call(path, json={"name": "made-in-mlflow"}),
        ("GET", "/experiments/get"): Call(path, {"experiment_id": e}),
        ("GET", "/experiments/get-by-name"): Call(path, {"experiment_name": p.experiment_name}),
        ("POST", "/experiments/search"): Call(path, json={}),
        ("POST", "/experiments/update"): Call(
            path, json={"experiment_id": e, "new_name": p.experiment_name}
        ),
        ("POST", "/experiments/delete"): Call(path, json={"experiment_id": e}),
        ("POST", "/experiments/restore"): Call(path, json={"experiment_id": e}),
        ("POST", "/experiments/set-experiment-tag"): Call(
            path, json={"experiment_id": e, "key": "k", "value": "v"}
        ),
        ("POST", "/experiments/delete-experiment-tag"): Call(
            path, json={"experiment_id": e, "key": "k"}
        ),
        ("GET", "/metrics/get-history"): Call(path, {"run_id": r, "metric_key": "m"}),
        ("GET", "/metrics/get-history-bulk-interval"): Call(
            path, {"run_ids": r, "metric_key": "m"}
        ),
        ("GET", "/artifacts/list"): Call(path, {"run_id": r}),
        ("POST", "/runs/create"): Call(path, json={"experiment_id": e}),
        ("GET", "/runs/get"): Call(path, {"run_id": r}),
        ("POST", "/runs/update"): Call(path, json={"run_id": r, "run_name": "r3"}),
        ("POST", "/runs/delete"): Call(path, json={"run_id": r}),
        ("POST", "/runs/restore"): Call(path, json={"run_id": r}),
        ("POST", "/runs/log-metric"): Call(
            path, json={"run_id": r, "key": "m", "value": 1.0, "timestamp": 1}
        ),
        ("POST", "/runs/log-parameter"): Call(path, json={"run_id": r, "key": "q2", "value": "1"}),
        ("POST", "/runs/set-tag"): Call(path, json={"run_id": r, "key": "t", "value": "v"}),
        ("POST", "/runs/delete-tag"): Call(path, json={"run_id": r, "key": "t"}),
        ("POST", "/runs/log-batch"): Call(
            path, json={"run_id": r, "params": [{"key": "q3", "value": "1"}]}
        ),
        ("POST", "/runs/log-model"): Call(
            path,
            json={
                "run_id": r,
                "model_json": json.dumps(
                    {"artifact_path": "m", "flavors": {}, "utc_time_created": "t", "run_id": r}
                ),
            },
        ),
        ("POST", "/runs/log-inputs"): Call(path, json={"run_id": r, "models": [{"model_id": lm}]}),
        ("POST", "/runs/outputs"): Call(
            path, json={"run_id": r, "models": [{"model_id": lm, "step": 0}]}
        ),
        ("POST", "/runs/search"): Call(path, json={"experiment_ids": [e]}),
        ("POST", "/registered-models/create"): Call(path, json={"name": "made-in-mlflow"}),
        ("GET", "/registered-models/get"): Call(path, {"name": "mdl"}),
        ("PATCH", "/registered-models/update"): Call(
            path, json={"name": "mdl", "description": "d"}
        ),
        ("POST", "/registered-models/rename"): Call(path, json={"name": "mdl", "new_name": "mdl"}),
        ("DELETE", "/registered-models/delete"): Call(path, json={"name": "mdl"}),
        ("POST", "/registered-models/set-tag"): Call(
            path, json={"name": "mdl", "key": "k", "value": "v"}
        ),
        ("DELETE", "/registered-models/delete-tag"): Call(path, json={"name": "mdl", "key": "k"}),
        ("POST", "/registered-models/get-latest-versions"): Call(path, json={"name": "mdl"}),
        ("POST", "/registered-models/alias"): Call(path, json={**mv, "alias": "champ"}),
        ("DELETE", "/registered-models/alias"): Call(path, json={"name": "mdl", "alias": "champ"}),
        ("GET", "/registered-models/alias"): Call(path, {"name": "mdl", "alias": "champ"}),
        ("POST", "/model-versions/create"): Call(
            path, json={"name": "mdl", "source": f"runs:/{r}/m", "run_id": r}
        ),
        ("GET", "/model-versions/get"): Call(path, mv),
        ("PATCH", "/model-versions/update"): Call(path, json={**mv, "description": "d"}),
        ("DELETE", "/model-versions/delete"): Call(path, json=mv),
        ("POST", "/model-versions/transition-stage"): Call(
            path, json={**mv, "stage": "Staging", "archive_existing_versions": False}
        ),
        ("GET", "/model-versions/get-download-uri"): Call(path, mv),
        ("POST", "/model-versions/set-tag"): Call(path, json={**mv, "key": "k", "value": "v"}),
        ("DELETE", "/model-versions/delete-tag"): Call(path, json={**mv, "key": "k"}),
        ("POST", "/logged-models"): Call(path, json={"experiment_id": e}),
        ("POST", "/logged-models/search"): Call(path, json={"experiment_ids": [e]}),
        ("PATCH", "/logged-models/{model_id}"): Call(path, json={"status": "LOGGED_MODEL_READY"}),
        ("PATCH", "/logged-models/{model_id}/tags"): Call(
            path, json={"tags": [{"key": "k", "value": "v"}]}
        ),
        ("POST", "/logged-models/{model_id}/params"): Call(
            path, json={"params": [{"key": "p", "value": "1"}]}
        ),
        ("GET", "/logged-models/{model_id}/artifacts/files"): Call(
            path, {"artifact_file_path": "m.txt"}
        ),
        # The proxied artifact store (its own prefix, kept whole in ``key``).
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/{path:path}"): Call(path, content=b"x"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts"): Call(path, {"path": run_art}),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/{path:path}"): Call(
            path, json={"path": "big.bin", "num_parts": 1}
        ),
        ("PUT", "/api/2.0/mlflow-artifacts/mpu/parts/{upload_id}/{part_number}"): Call(
            path, content=b"x"
        ),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/{path:path}"): Call(
            path, json={"path": "big.bin", "upload_id": p.upload, "parts": []}
        ),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/abort/{path:path}"): Call(
            path, json={"path": "big.bin", "upload_id": p.upload}
        ),
    }
    return calls.get((method, key), Call(path))


def _fill(method: str, template: str, p: Project) -> str:
    """The template with every path parameter set to an id of the project."""
    artifacts = "/api/2.0/mlflow-artifacts/"
    if template.startswith(artifacts + "artifacts/"):
        file = "up.bin" if method in ("PUT", "DELETE") else "a.txt"
        path_value = f"{p.experiment}/{p.run}/artifacts/{file}"
    elif template.startswith(artifacts + "mpu/"):
        path_value = f"{p.experiment}/{p.run}/artifacts"
    elif "/datasets/" in template:
        path_value = "d.csv"
    elif "/model-versions/" in template:
        path_value = p.model_file
    elif method == "PUT":
        path_value = "up.txt"
    else:
        path_value = "a.txt"
    values = {
        "experiment_id": p.experiment,
        "run_id": p.run,
        "model_id": p.logged_model,
        "key:path": "k",
        "key": "k",
        "tag_key:path": "k",
        "alias": "champ",
        "path:path": path_value,
        "name": "ds" if "/datasets/" in template else "mdl",
        "ref": "ds@1" if "/datasets/" in template else "mdl@1",
        "version": "1",
        # A random id: the route must refuse it whoever calls (a live one would be a
        # credential, which is the point of the capability).
        "upload_id": uuid.uuid4().hex,
        "part_number": "1",
    }
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    assert "{" not in out, f"no value for a parameter of {template}"
    return out


def _call(method: str, template: str, p: Project) -> Call:
    path = _fill(method, template, p)
    if template.startswith("/api/v1/"):
        return _v1(method, template.removeprefix("/api/v1"), path, p)
    for prefix in MLFLOW_PREFIXES:
        if template.startswith(prefix + "/"):
            return _mlflow(method, template[len(prefix) :], path, p)
    return _mlflow(method, template, path, p)


def _may(caller: str, level: Access) -> bool:
    """Whether ``caller`` holds ``level`` on the project."""
    if level in (Access.OPEN, Access.CAPABILITY):
        return True
    if caller in UNAUTHENTICATED:
        return False
    if level == Access.AUTHENTICATED or caller == "platform admin":
        return True
    if caller not in ROLES or level == Access.PLATFORM:
        return False
    return Permission(level.value) in ROLE_PERMISSIONS[caller]


def _destructive(route: Route) -> bool:
    method, path, _ = route
    return method == "DELETE" or any(w in path for w in ("delete", "rename", "abort"))


def _verdict(
    method: str, template: str, level: Access, caller: str, resp: httpx.Response, p: Project
) -> str | None:
    """What is wrong with ``resp``, or None."""
    status = resp.status_code
    if status >= 500:
        return f"server error {status}"
    ui = template == "/" or template.startswith("/ui/")
    if level == Access.OPEN and ui:
        # ``/`` redirects to the UI; the login form refuses a post from no page of ours.
        return None if status in (200, 303, 307, 403) else f"open UI route answered {status}"
    if level == Access.OPEN:
        return None if status == 200 else f"open route answered {status}"
    if caller in UNAUTHENTICATED and ui and method == "GET" and not template.startswith("/ui/api/"):
        # A browser asking for a page is sent to the login page, and back after it.
        location = resp.headers.get("location", "")
        ok = status == 303 and location.startswith("/ui/login?next=")
        return None if ok else f"expected 303 to the login page, got {status} {location}"
    if level == Access.CAPABILITY:
        # A made-up upload id, whoever sends it: refused as unknown, never taken.
        return None if status == 404 else f"capability route with a random id answered {status}"
    if caller in UNAUTHENTICATED:
        return None if status == 401 else f"expected 401, got {status}"
    if _may(caller, level):
        return f"allowed caller refused with {status}" if status in (401, 403) else None
    key = template
    for prefix in MLFLOW_PREFIXES:
        key = key.removeprefix(prefix + "/")
    if (method, key) in FILTERING and status == 200:
        leaked = [m for m in p.markers if m in resp.text]
        return f"search shows {leaked} to a caller without the role" if leaked else None
    return None if status == 403 else f"expected 403, got {status}"


def test_every_route_declares_its_permission(tmp_path: Path) -> None:
    missing = [f"{m} {path}" for m, path, level in _routes(tmp_path) if level is None]
    assert not missing, f"routes without a declared permission: {missing}"


def test_route_by_caller_matrix(project: Project) -> None:
    found = _routes(project.home)
    routes: list[Route] = [(m, path, level) for m, path, level in found if level is not None]
    assert len(routes) == len(found) > 150  # all declared; the app itself, not an empty shell
    # Destructive routes last within each caller's pass, so the rest see the data whole.
    routes.sort(key=_destructive)
    problems: list[str] = []
    sent = 0
    with httpx.Client(base_url=project.url, timeout=30) as http:
        for caller in CALLERS:
            token = project.tokens[caller]
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            for method, template, level in routes:
                call = _call(method, template, project)
                resp = http.request(
                    method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    content=call.content,
                    headers={**auth, **call.headers},
                )
                sent += 1
                wrong = _verdict(method, template, level, caller, resp, project)
                if wrong:
                    problems.append(
                        f"{caller:>14} {method:6} {template} [{level}]: {wrong}: {resp.text[:160]}"
                    )
    assert sent == len(routes) * len(CALLERS)
    assert not problems, f"{len(problems)} of {sent} answers broke the matrix:\n" + "\n".join(
        problems
    )
