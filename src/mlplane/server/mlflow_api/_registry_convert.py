"""Registry entities as MLflow's JSON, and the request fields the registry routes read.

On MLflow's wire a model version's ``version`` is a string, timestamps are
milliseconds, a registered model's ``aliases`` are ``{alias, version}`` pairs
while a version's are plain names, and ``latest_versions`` holds the newest
version of each stage. Empty fields are left out, as MLflow's server does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlplane.registry.entities import ModelVersion, RegisteredModel
from mlplane.server.mlflow_api._registry_search import Clause
from mlplane.server.mlflow_api._wire import MlflowError

Body = dict[str, Any]
STATUS_READY = "READY"
"""Registration is synchronous here: a version exists only once its files are stored."""


def _pairs(items: Mapping[str, str]) -> list[Body]:
    return [{"key": k, "value": v} for k, v in sorted(items.items())]


def _drop_empty(out: Body) -> Body:
    return {k: v for k, v in out.items() if v not in (None, "", [])}


def source_of(v: ModelVersion) -> str:
    """Where a version's files came from; one registered through ``/api/v1`` came from
    nowhere else, so its source is its own registry URI (which also loads it)."""
    return v.source or v.uri


def version_out(v: ModelVersion) -> Body:
    return _drop_empty(
        {
            "name": v.name,
            "version": str(v.version),
            "creation_timestamp": v.created_at,
            "last_updated_timestamp": v.updated_at or v.created_at,
            "user_id": v.created_by,
            "current_stage": v.stage,
            "description": v.description,
            "source": source_of(v),
            "run_id": v.run_id,
            "status": STATUS_READY,
            "tags": _pairs(v.tags),
            "aliases": sorted(v.aliases),
            "model_id": v.logged_model_id,
        }
    )


def latest_per_stage(
    versions: Iterable[ModelVersion], stages: Sequence[str] | None = None
) -> list[ModelVersion]:
    """The newest version of each stage (of ``stages``, or of every stage)."""
    wanted = {s.lower() for s in stages} if stages else None
    newest: dict[str, ModelVersion] = {}
    for v in versions:
        if wanted is not None and v.stage.lower() not in wanted:
            continue
        if v.stage not in newest or v.version > newest[v.stage].version:
            newest[v.stage] = v
    return sorted(newest.values(), key=lambda v: v.version)


def model_out(m: RegisteredModel, versions: Iterable[ModelVersion]) -> Body:
    return _drop_empty(
        {
            "name": m.name,
            "creation_timestamp": m.created_at,
            "last_updated_timestamp": m.updated_at,
            "user_id": m.owner,
            "description": m.description,
            "latest_versions": [version_out(v) for v in latest_per_stage(versions)],
            "tags": _pairs(m.tags),
            "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(m.aliases.items())],
        }
    )


# -- attributes that searches filter and sort on ---------------------------------------------


def model_attr(m: RegisteredModel, key: str) -> Any:
    if key.startswith("tags."):
        return m.tags.get(key[len("tags.") :])
    return {
        "name": m.name,
        "creation_timestamp": m.created_at,
        "last_updated_timestamp": m.updated_at,
    }[key]


def version_attr(v: ModelVersion, key: str) -> Any:
    if key.startswith("tags."):
        return v.tags.get(key[len("tags.") :])
    return {
        "name": v.name,
        "version_number": v.version,
        "run_id": v.run_id or "",
        "source_path": source_of(v),
        "creation_timestamp": v.created_at,
        "last_updated_timestamp": v.updated_at or v.created_at,
    }[key]


def exact_name(clauses: Sequence[Clause]) -> str | None:
    """The model a version search is restricted to by ``name = '…'``, if any: then only
    that model's versions are read."""
    for c in clauses:
        if c.key == "name" and c.op == "=":
            return str(c.value)
    return None


# -- request fields --------------------------------------------------------------------------


def version_number(body: Body) -> int:
    """The ``version`` field: a string of digits on MLflow's wire (a number is accepted)."""
    value = body.get("version")
    if value is None or value == "":
        raise MlflowError("Missing value for required parameter 'version'.")
    text = str(value)
    if isinstance(value, bool) or not text.isdigit():
        raise MlflowError(
            f"Invalid value {value!r} for parameter 'version': a version is a positive integer"
        )
    return int(text)


def tags_in(body: Body) -> dict[str, str]:
    """``[{key, value}, …]`` as a mapping."""
    raw = body.get("tags") or []
    if not isinstance(raw, list):
        raise MlflowError("Invalid value for parameter 'tags': expected a list of {key, value}")
    out: dict[str, str] = {}
    for tag in raw:
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
            raise MlflowError("Invalid value for parameter 'tags': expected {key, value} objects")
        out[tag["key"]] = "" if tag.get("value") is None else str(tag["value"])
    return out


def flag(body: Body, name: str) -> bool:
    value = body.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected a boolean")


def string_list(body: Body, name: str) -> list[str]:
    value = body.get(name) or []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise MlflowError(f"Invalid value for parameter '{name}': expected a list of strings")
    return value
