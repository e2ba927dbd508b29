"""MLflow's tracking JSON, read and written: request fields, entities out, ids and URIs.

MLflow's wire is protobuf's JSON mapping with two of MLflow's own habits: int64
fields travel as JSON numbers (a client may still send them as strings), and a
message's empty fields are left out. Non-finite doubles travel as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; clients that write bare ``NaN``
tokens (Python's ``json``) are read too.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from mlplane._json import float_out
from mlplane.errors import AlreadyExists, NotFound, PayloadTooLarge, PermissionDenied
from mlplane.security import Principal
from mlplane.server.bodies import read_limited
from mlplane.server.mlflow_api._wire import MlflowError
from mlplane.tracking.entities import Experiment, Metric, Run, RunInfo, RunInput, ViewType

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
"""MLflow's default experiment, used by clients that set none; ours is found by name."""

TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"
TAG_LOGGED_MODELS = "mlflow.log-model.history"
TAG_DATA_CONTEXT = "mlflow.data.context"

KIND_DATASET = "dataset"
KIND_MODEL_INPUT = "model"
KIND_MODEL_OUTPUT = "model-output"
"""Run inputs of these kinds carry MLflow's logged-model inputs and outputs (``name`` is the
model id; an output's ``version`` is its step)."""

_OUR_ARTIFACTS = "mlplane-artifacts:"
_MLFLOW_ARTIFACTS = "mlflow-artifacts:"
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "nan": math.nan}
_VIEW_TYPES = {"1": ViewType.ACTIVE_ONLY, "2": ViewType.DELETED_ONLY, "3": ViewType.ALL}

Body = dict[str, Any]


# -- requests --------------------------------------------------------------------------------


async def read_json(request: Request, limit: int) -> Body:
    """A POST body as a dict; an empty body is ``{}``."""
    try:
        raw = await read_limited(request, limit)
    except PayloadTooLarge as exc:
        raise MlflowError(exc.message) from None
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # bare NaN / Infinity tokens, which orjson refuses
            body = json.loads(raw)
        except ValueError:
            raise MlflowError("the request body is not valid JSON", "MALFORMED_REQUEST") from None
    if not isinstance(body, dict):
        raise MlflowError("the request body must be a JSON object", "MALFORMED_REQUEST")
    return body


def query(request: Request, repeated: Iterable[str] = ()) -> Body:
    """GET parameters as a body; ``repeated`` fields keep every value as a list."""
    params = request.query_params
    out: Body = {k: params[k] for k in params}
    for name in repeated:
        if name in params:
            out[name] = params.getlist(name)
    return out


def string(body: Body, name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or (required and value == ""):
        if required:
            raise MlflowError(f"Missing value for required parameter '{name}'.")
        return None
    if not isinstance(value, str):
        raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected a string")
    return value


def required_string(body: Body, name: str) -> str:
    value = string(body, name, required=True)
    assert value is not None  # string() raised otherwise
    return value


def required_integer(body: Body, name: str) -> int:
    value = integer(body, name, required=True)
    assert value is not None  # integer() raised otherwise
    return value


def integer(body: Body, name: str, *, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise MlflowError(f"Missing value for required parameter '{name}'.")
        return None
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected an integer")
    try:
        number = int(value)
    except ValueError:
        raise MlflowError(
            f"Invalid value {value!r} for parameter '{name}': expected an integer"
        ) from None
    if isinstance(value, float) and number != value:
        raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected an integer")
    return number


def number(value: Any, name: str = "value") -> float:
    """A double as MLflow sends it: a JSON number or ``"NaN"``/``"Infinity"``/``"-Infinity"``."""
    if type(value) is float:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        found = _NONFINITE.get(value)
        if found is not None:
            return found
        try:
            return float(value)
        except ValueError:
            pass
    raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected a number")


def run_id(body: Body) -> str:
    """``run_id``, or the deprecated ``run_uuid`` that older clients send instead."""
    rid = body.get("run_id") or body.get("run_uuid")
    if not rid:
        raise MlflowError("Missing value for required parameter 'run_id'.")
    if not isinstance(rid, str):
        raise MlflowError(f"Invalid value {rid!r} for parameter 'run_id': expected a string")
    return rid


def view_type(value: Any) -> ViewType:
    """A ViewType by name or by its proto number; unset means ACTIVE_ONLY."""
    if value is None or value == "":
        return ViewType.ACTIVE_ONLY
    text = str(value).upper()
    found = _VIEW_TYPES.get(text)
    if found is not None:
        return found
    try:
        return ViewType(text)
    except ValueError:
        raise MlflowError(
            f"Invalid view type {value!r}: use ACTIVE_ONLY, DELETED_ONLY or ALL"
        ) from None


def key_values(body: Body, name: str) -> list[tuple[str, str]]:
    """A repeated ``{key, value}`` field (tags, params) as pairs; a missing value is ``""``."""
    items = body.get(name) or []
    if not isinstance(items, list):
        raise MlflowError(f"Invalid value for parameter '{name}': expected an array")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise MlflowError(f"Invalid value for parameter '{name}[{i}]': expected an object")
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or not key:
            raise MlflowError(f"Missing value for required parameter '{name}[{i}].key'.")
        if value is None:
            value = ""
        elif not isinstance(value, str):
            raise MlflowError(f"Invalid value {value!r} for '{name}[{i}].value': expected a string")
        out.append((key, value))
    return out


def page_token_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except Exception:
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise MlflowError(f"Invalid page token {token!r}: pass back the next_page_token you got")
    return offset


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode()


# -- ids and URIs ----------------------------------------------------------------------------


async def default_experiment_id(request: Request, who: Principal) -> str | None:
    """Our id of MLflow's experiment "0": the default project's "Default", made on first use
    and remembered by the app (an experiment's id never changes). None while it does not
    exist and the caller may not make it."""
    state = request.app.state
    found: str | None = getattr(state, "mlflow_default_experiment_id", None)
    if found is None:
        found = await run_in_threadpool(_find_or_create_default, request.app.state.services, who)
        state.mlflow_default_experiment_id = found
    return found


def _find_or_create_default(svc: Any, who: Principal) -> str | None:
    tracking = svc.tracking
    try:
        return str(tracking.get_experiment_by_name(who, DEFAULT_EXPERIMENT_NAME).experiment_id)
    except NotFound:
        pass
    try:
        return str(tracking.create_experiment(who, DEFAULT_EXPERIMENT_NAME))
    except AlreadyExists:  # another worker made it meanwhile
        return str(tracking.get_experiment_by_name(who, DEFAULT_EXPERIMENT_NAME).experiment_id)
    except PermissionDenied:
        # A viewer's read must not fail because nobody has written yet: until someone who
        # may write makes it, experiment "0" does not exist (and is not remembered).
        return None


class Ids:
    """Experiment ids across the boundary: MLflow's "0" is our default experiment."""

    __slots__ = ("default",)

    def __init__(self, default: str | None) -> None:
        self.default = default

    @classmethod
    async def of(cls, request: Request, who: Principal) -> Ids:
        return cls(await default_experiment_id(request, who))

    def inward(self, experiment_id: Any) -> str:
        if experiment_id is None or experiment_id == "":
            raise MlflowError("Missing value for required parameter 'experiment_id'.")
        text = str(experiment_id)
        if text != DEFAULT_EXPERIMENT_ID:
            return text
        if self.default is None:
            raise NotFound(f"experiment {DEFAULT_EXPERIMENT_ID} does not exist yet")
        return self.default

    def outward(self, experiment_id: str) -> str:
        return DEFAULT_EXPERIMENT_ID if experiment_id == self.default else experiment_id


def artifact_uri_out(uri: str) -> str:
    """Our artifact root as MLflow's proxied-artifact URI, which stock clients resolve against
    the tracking server (``/api/2.0/mlflow-artifacts/artifacts/<path>``)."""
    if uri.startswith(_OUR_ARTIFACTS):
        return _MLFLOW_ARTIFACTS + uri[len(_OUR_ARTIFACTS) :]
    return uri


# -- entities out ----------------------------------------------------------------------------


def _pairs(items: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


def experiment_out(exp: Experiment, ids: Ids) -> Body:
    tags = dict(exp.tags)
    if exp.description and TAG_NOTE not in tags:
        tags[TAG_NOTE] = exp.description
    out: Body = {
        "experiment_id": ids.outward(exp.experiment_id),
        "name": exp.name,
        "artifact_location": artifact_uri_out(exp.artifact_location),
        "lifecycle_stage": exp.lifecycle_stage,
        "last_update_time": exp.last_update_time,
        "creation_time": exp.creation_time,
    }
    if tags:
        out["tags"] = _pairs(tags)
    return out


def run_info_out(info: RunInfo, ids: Ids) -> Body:
    out: Body = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,
        "run_name": info.run_name,
        "experiment_id": ids.outward(info.experiment_id),
        "user_id": info.user_id,
        "status": info.status,
        "start_time": info.start_time,
        "artifact_uri": artifact_uri_out(info.artifact_uri),
        "lifecycle_stage": info.lifecycle_stage,
    }
    if info.end_time is not None:
        out["end_time"] = info.end_time
    return out


def run_out(run: Run, ids: Ids) -> Body:
    info, data = run.info, run.data
    tags = dict(data.tags)
    # Runs made through /api/v1 carry their name and parent as fields only; MLflow's
    # clients and UI read them from these tags.
    tags[TAG_RUN_NAME] = info.run_name
    if info.parent_run_id and TAG_PARENT_RUN not in tags:
        tags[TAG_PARENT_RUN] = info.parent_run_id
    run_data: Body = {"tags": _pairs(tags)}
    if data.metrics:
        run_data["metrics"] = _latest_out(data.metrics, data.metric_points)
    if data.params:
        run_data["params"] = _pairs(data.params)
    out: Body = {"info": run_info_out(info, ids), "data": run_data}
    datasets, models_in, models_out = [], [], []
    for inp in run.inputs:
        if inp.kind == KIND_MODEL_INPUT:
            models_in.append({"model_id": inp.name})
        elif inp.kind == KIND_MODEL_OUTPUT:
            models_out.append({"model_id": inp.name, "step": int(inp.version or 0)})
        else:
            datasets.append(_dataset_out(inp))
    inputs: Body = {}
    if datasets:
        inputs["dataset_inputs"] = datasets
    if models_in:
        inputs["model_inputs"] = models_in
    out["inputs"] = inputs
    out["outputs"] = {"model_outputs": models_out} if models_out else {}
    return out


def _latest_out(metrics: Mapping[str, float], points: Mapping[str, tuple[int, int]]) -> list[Body]:
    """A run's latest value of each metric, with its time and step where the store gave
    them. Inlined: a search page holds thousands of these (25 runs x 51 metrics)."""
    out = []
    for key, value in metrics.items():
        m: Body = {
            "key": key,
            # finite floats as they are; NaN and the infinities as MLflow spells them
            "value": value if type(value) is float and value - value == 0 else float_out(value),
        }
        point = points.get(key)
        if point is not None:
            m["timestamp"], m["step"] = point
        out.append(m)
    return out


def metric_out(m: Metric) -> Body:
    return {"key": m.key, "value": float_out(m.value), "timestamp": m.timestamp, "step": m.step}


# -- dataset inputs --------------------------------------------------------------------------


def _dataset_out(inp: RunInput) -> Body:
    dataset: Body = {"name": inp.name, "digest": inp.digest, "source": inp.source}
    dataset["source_type"] = inp.source_type or _source_type(inp.source)
    if inp.schema:
        dataset["schema"] = inp.schema
    if inp.profile:
        dataset["profile"] = inp.profile
    out: Body = {"dataset": dataset}
    if inp.context:
        out["tags"] = [{"key": TAG_DATA_CONTEXT, "value": inp.context}]
    return out


def _source_type(source: str) -> str:
    """MLflow's source type, recovered from the source's own shape, for inputs logged
    without one (our own SDK's, and those stored before it was kept). MLflow writes a
    source as JSON (``{"uri": ...}``, ``{"url": ...}``,
    ``{"tags": ...}`` for code); mlplane dataset versions are ``mlplane-data:`` references."""
    if source.startswith("mlplane-data:"):
        return "mlplane"
    try:
        parsed = orjson.loads(source)
    except orjson.JSONDecodeError:
        return "external"
    if not isinstance(parsed, dict):
        return "external"
    if "url" in parsed:
        return "http"
    if "tags" in parsed:
        return "code"
    uri = parsed.get("uri")
    if isinstance(uri, str):
        scheme = uri.partition("://")[0] if "://" in uri else ""
        return {"": "local", "file": "local", "s3": "s3", "gs": "gcs"}.get(scheme, scheme)
    return "external"


def dataset_inputs_in(items: Any) -> list[RunInput]:
    if not isinstance(items, list):
        raise MlflowError("Invalid value for parameter 'datasets': expected an array")
    out = []
    for i, item in enumerate(items):
        dataset = item.get("dataset") if isinstance(item, dict) else None
        if not isinstance(dataset, dict):
            raise MlflowError(f"Missing value for required parameter 'datasets[{i}].dataset'.")
        for field in ("name", "digest", "source"):
            if not isinstance(dataset.get(field), str):
                raise MlflowError(
                    f"Missing value for required parameter 'datasets[{i}].dataset.{field}'."
                )
        for field in ("source_type", "schema", "profile"):
            if dataset.get(field) is not None and not isinstance(dataset[field], str):
                raise MlflowError(
                    f"Invalid value for parameter 'datasets[{i}].dataset.{field}': "
                    "expected a string"
                )
        tags = dict(key_values(item, "tags"))
        out.append(
            RunInput(
                kind=KIND_DATASET,
                name=dataset["name"],
                digest=dataset["digest"],
                source=dataset["source"],
                context=tags.get(TAG_DATA_CONTEXT, ""),
                source_type=dataset.get("source_type") or "",
                schema=dataset.get("schema") or "",
                profile=dataset.get("profile") or "",
            )
        )
    return out


def model_refs_in(items: Any, name: str, kind: str) -> list[RunInput]:
    if not isinstance(items, list):
        raise MlflowError(f"Invalid value for parameter '{name}': expected an array")
    out = []
    for i, item in enumerate(items):
        model_id = item.get("model_id") if isinstance(item, dict) else None
        if not isinstance(model_id, str) or not model_id:
            raise MlflowError(f"Missing value for required parameter '{name}[{i}].model_id'.")
        step = integer(item, "step") if kind == KIND_MODEL_OUTPUT else None
        out.append(RunInput(kind=kind, name=model_id, version="" if step is None else str(step)))
    return out
