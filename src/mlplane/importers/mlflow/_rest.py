"""An MLflow tracking server, read over its REST API with httpx (MLflow is not imported).

Run artifacts are listed and fetched through the run endpoints
(``/api/2.0/mlflow/artifacts/list`` and ``/get-artifact``), so the server
reads them from wherever it keeps them. Model versions' files are found with
``get-download-uri``; the server hands them out only when it serves artifacts
(``mlflow-artifacts:/…`` URIs, the default since MLflow 2), else the import
says which store to read them from instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from mlplane.errors import InvalidInput, NotFound, Unavailable
from mlplane.importers.mlflow._entities import (
    SrcDatasetInput,
    SrcExperiment,
    SrcFile,
    SrcModel,
    SrcModelVersion,
    SrcRun,
    status_name,
)
from mlplane.importers.mlflow._source import MetricPoint, MlflowSource, join_uri

_API = "/api/2.0/mlflow"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_PAGE = 1000
_HISTORY_PAGE = 25_000


def _pairs(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(i["key"]): str(i.get("value", "")) for i in items or []}


def _int(value: object) -> int | None:
    return int(value) if value not in (None, "") else None  # type: ignore[call-overload]


class RestSource(MlflowSource):
    """Reads a tracking server at ``url``; ``token`` or ``auth`` (user, password) if it asks."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auth: tuple[str, str] | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.label = self.url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, auth=auth, timeout=timeout_s)
        self._run_uris: dict[str, str] = {}
        try:
            self._call("GET", f"{_API}/experiments/search", params={"max_results": 1})
        except NotFound:
            raise InvalidInput(
                f"{self.url} does not answer MLflow's REST API ({_API}/experiments/search): "
                "is it an MLflow tracking server?"
            ) from None

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the MLflow server at {self.url}: {exc}") from None
        if resp.status_code == 404:
            raise NotFound(f"{self.url}{path}: not found ({resp.text[:200]})")
        if resp.status_code in (401, 403):
            raise InvalidInput(
                f"the MLflow server at {self.url} refused the request ({resp.status_code}): "
                "pass --token, or --user and --password"
            )
        if resp.status_code >= 400:
            raise Unavailable(f"{self.url}{path} answered {resp.status_code}: {resp.text[:300]}")
        try:
            data = resp.json()
        except ValueError:
            raise InvalidInput(
                f"{self.url}{path} did not answer JSON: is it an MLflow tracking server?"
            ) from None
        return data if isinstance(data, dict) else {}

    def _pages(self, method: str, url: str, field: str, args: dict[str, Any]) -> Iterator[Any]:
        """Every item of a paginated list: ``args`` go in the query (GET) or the body (POST)."""
        token: str | None = None
        while True:
            query = {**args, **({"page_token": token} if token else {})}
            if method == "GET":
                data = self._call("GET", url, params=query)
            else:
                data = self._call("POST", url, json=query)
            yield from data.get(field) or []
            token = data.get("next_page_token")
            if not token:
                return

    # -- tracking ----------------------------------------------------------------------------

    def experiments(self) -> list[SrcExperiment]:
        return [
            SrcExperiment(
                experiment_id=str(e["experiment_id"]),
                name=str(e["name"]),
                lifecycle_stage=str(e.get("lifecycle_stage") or "active"),
                artifact_location=str(e.get("artifact_location") or ""),
                creation_time=_int(e.get("creation_time")),
                tags=_pairs(e.get("tags")),
            )
            for e in self._pages(
                "POST",
                f"{_API}/experiments/search",
                "experiments",
                {"max_results": _PAGE, "view_type": "ALL"},
            )
        ]

    def runs(self, experiment_id: str) -> Iterator[SrcRun]:
        for r in self._pages(
            "POST",
            f"{_API}/runs/search",
            "runs",
            {"experiment_ids": [experiment_id], "run_view_type": "ALL", "max_results": _PAGE},
        ):
            info, data = r.get("info") or {}, r.get("data") or {}
            run_id = str(info.get("run_id") or info.get("run_uuid"))
            tags = _pairs(data.get("tags"))
            self._run_uris[run_id] = str(info.get("artifact_uri") or "")
            yield SrcRun(
                run_id=run_id,
                experiment_id=str(info.get("experiment_id", experiment_id)),
                name=str(info.get("run_name") or tags.get("mlflow.runName") or ""),
                status=status_name(info.get("status")),
                start_time=_int(info.get("start_time")),
                end_time=_int(info.get("end_time")),
                lifecycle_stage=str(info.get("lifecycle_stage") or "active"),
                artifact_uri=f"runs:/{run_id}",
                params=_pairs(data.get("params")),
                tags=tags,
                metric_keys=tuple(sorted({str(m["key"]) for m in data.get("metrics") or []})),
                inputs=tuple(
                    _dataset_input(i) for i in (r.get("inputs") or {}).get("dataset_inputs") or []
                ),
            )

    def metric_history(self, run: SrcRun) -> list[MetricPoint]:
        out: list[MetricPoint] = []
        for key in run.metric_keys:
            for m in self._pages(
                "GET",
                f"{_API}/metrics/get-history",
                "metrics",
                {"run_id": run.run_id, "metric_key": key, "max_results": _HISTORY_PAGE},
            ):
                out.append((key, float(m["value"]), int(m["timestamp"]), int(m.get("step", 0))))
        return out

    # -- registry ----------------------------------------------------------------------------

    def models(self) -> list[SrcModel]:
        return [
            SrcModel(
                name=str(m["name"]),
                description=str(m.get("description") or ""),
                tags=_pairs(m.get("tags")),
                aliases={str(a["alias"]): str(a["version"]) for a in m.get("aliases") or []},
            )
            for m in self._pages(
                "GET",
                f"{_API}/registered-models/search",
                "registered_models",
                {"max_results": _PAGE},
            )
        ]

    def model_versions(self, name: str) -> list[SrcModelVersion]:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        out = []
        for v in self._pages(
            "GET",
            f"{_API}/model-versions/search",
            "model_versions",
            {"filter": f"name='{quoted}'", "max_results": _PAGE},
        ):
            out.append(
                SrcModelVersion(
                    name=name,
                    version=str(v["version"]),
                    source=str(v.get("source") or ""),
                    run_id=v.get("run_id") or None,
                    status=str(v.get("status") or "READY"),
                    description=str(v.get("description") or ""),
                    creation_time=_int(v.get("creation_timestamp")),
                    stage=str(v.get("current_stage") or ""),
                    model_id=v.get("model_id") or None,
                    tags=_pairs(v.get("tags")),
                )
            )
        return sorted(out, key=lambda v: int(v.version))

    def model_uri(self, version: SrcModelVersion) -> str:
        if version.source.startswith("runs:/"):
            return version.source
        data = self._call(
            "GET",
            f"{_API}/model-versions/get-download-uri",
            params={"name": version.name, "version": version.version},
        )
        return self.resolve(str(data.get("artifact_uri") or version.source))

    # -- artifacts ---------------------------------------------------------------------------

    def resolve(self, uri: str) -> str:
        if uri.startswith("models:/"):
            model_id = uri.removeprefix("models:/").strip("/")
            data = self._call("GET", f"{_API}/logged-models/{quote(model_id)}")
            info = (data.get("model") or {}).get("info") or {}
            return self.resolve(str(info.get("artifact_uri") or uri))
        if uri.startswith(("runs:/", "mlflow-artifacts:")):
            return uri
        raise InvalidInput(
            f"the server keeps these files at {uri} and does not serve them: import from its "
            "database or file store with --artifacts-root, or restart it with --serve-artifacts"
        )

    def list_files(self, uri: str) -> list[SrcFile]:
        if uri.startswith("runs:/"):
            run_id, _, base = uri.removeprefix("runs:/").partition("/")
            files = self._list_run(run_id, base.strip("/"))
            cut = len(base.strip("/")) + 1 if base.strip("/") else 0
            return [SrcFile(f.path[cut:], f.size) for f in files]
        root = _proxied_path(uri)
        out: list[SrcFile] = []
        pending = [""]
        while pending:
            rel = pending.pop()
            data = self._call("GET", _ARTIFACTS, params={"path": join_uri(root, rel)})
            for f in data.get("files") or []:
                path = join_uri(rel, str(f["path"])).lstrip("/")
                if f.get("is_dir"):
                    pending.append(path)
                else:
                    out.append(SrcFile(path, _int(f.get("file_size"))))
        return sorted(out, key=lambda f: f.path)

    def _list_run(self, run_id: str, path: str) -> list[SrcFile]:
        out: list[SrcFile] = []
        pending = [path]
        while pending:
            rel = pending.pop()
            args = {"run_id": run_id, **({"path": rel} if rel else {})}
            for f in self._pages("GET", f"{_API}/artifacts/list", "files", args):
                if f.get("is_dir"):
                    pending.append(str(f["path"]))
                else:
                    out.append(SrcFile(str(f["path"]), _int(f.get("file_size"))))
        return sorted(out, key=lambda f: f.path)

    def download(self, uri: str, path: str, dest: Path) -> None:
        if uri.startswith("runs:/"):
            run_id, _, base = uri.removeprefix("runs:/").partition("/")
            url, params = "/get-artifact", {"run_uuid": run_id, "path": join_uri(base, path)}
        else:
            url, params = f"{_ARTIFACTS}/{quote(join_uri(_proxied_path(uri), path))}", {}
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._http.stream("GET", url, params=params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise Unavailable(
                        f"{self.url}{url} answered {resp.status_code}: {resp.text[:300]}"
                    )
                with dest.open("wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        f.write(chunk)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot download {path} from {self.url}: {exc}") from None

    def close(self) -> None:
        self._http.close()


def _proxied_path(uri: str) -> str:
    """``mlflow-artifacts:/1/x`` or ``mlflow-artifacts://host/1/x`` → ``1/x``."""
    return urlparse(uri).path.strip("/")


def _dataset_input(item: dict[str, Any]) -> SrcDatasetInput:
    ds = item.get("dataset") or {}
    tags = _pairs(item.get("tags"))
    return SrcDatasetInput(
        name=str(ds.get("name", "")),
        digest=str(ds.get("digest") or ""),
        source_type=str(ds.get("source_type") or ""),
        source=str(ds.get("source") or ""),
        context=tags.get("mlflow.data.context", ""),
    )
