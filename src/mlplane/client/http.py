"""The HTTP transport: the same interface, over the server's ``/api/v1``.

Connection failures, 5xx, 429 and 503 are retried with exponential backoff
up to ``retry_max_s``; a problem+json error is turned back into the mlplane
error class the server raised.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import ssl
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from mlplane import errors
from mlplane.client import _codec as codec
from mlplane.client._deployments import HttpDeployments
from mlplane.client.transport import Transport
from mlplane.config import Settings
from mlplane.datasets.entities import AddResult, DatasetLineage, DatasetVersion
from mlplane.registry.entities import ModelLineage, ModelVersion, RegisteredModel
from mlplane.tracking import validation as check
from mlplane.tracking.entities import (
    ArtifactInfo,
    Experiment,
    ExperimentPage,
    Metric,
    MetricColumns,
    Run,
    RunInfo,
    RunInput,
    RunPage,
)

if TYPE_CHECKING:
    from mlplane.gc import GcReport

ERRORS_BY_CODE: dict[str, type[errors.MlplaneError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidInput,
        errors.NotFound,
        errors.AlreadyExists,
        errors.Conflict,
        errors.Unauthenticated,
        errors.PermissionDenied,
        errors.PayloadTooLarge,
        errors.RateLimited,
        errors.BudgetExceeded,
        errors.QualityGateFailed,
        errors.UnsafeArtifact,
        errors.TamperedArtifact,
        errors.SchemaOutdated,
        errors.Unavailable,
    )
}
_RETRY_STATUS = {429, 500, 502, 503, 504}


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _r(run_id: str) -> str:
    # Checked here too: a run id with a slash would otherwise reach another route.
    return check.run_id(run_id)


def _tls_context(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    """Certificates are always verified: against ``ca_bundle`` when given (a private
    CA), else against httpx's public CAs. There is deliberately no switch to skip it."""
    if ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise errors.InvalidInput(
            f"MLPLANE_CA_BUNDLE: cannot load CA certificates from {ca_bundle}: {exc}"
        ) from None


def _raise_if_untrusted(exc: httpx.TransportError, base: str) -> None:
    """A certificate that does not verify will not verify on a retry: say so at once."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise errors.Unavailable(
                f"the TLS certificate of {base} did not verify ({cause.verify_message}); "
                "if the server uses a private CA, set MLPLANE_CA_BUNDLE to its PEM file"
            ) from exc
        cause = cause.__cause__ or cause.__context__


class HttpTransport(HttpDeployments, Transport):
    """Calls a remote ``mlplane server``."""

    def __init__(self, settings: Settings) -> None:
        assert settings.uri is not None
        self.base = settings.uri.rstrip("/")
        self._settings_home = settings.home
        self.retry_max_s = settings.retry_max_s
        headers = {"User-Agent": "mlplane-python"}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        verify = _tls_context(settings.ca_bundle)
        # Nagle + delayed ACK costs ~40 ms per small request: send at once.
        transport = httpx.HTTPTransport(
            verify=verify,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            retries=0,
        )
        self._http = httpx.Client(
            base_url=self.base + "/api/v1",
            headers=headers,
            timeout=settings.http_timeout_s,
            transport=transport,
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _stream_upload(
        self,
        method: str,
        url: str,
        body: Callable[[], Iterator[bytes]],
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        patient: bool = False,
    ) -> httpx.Response:
        """Send a streamed body, retrying like :meth:`_call`. A stream cannot be replayed,
        so ``body`` makes a fresh one per try (re-opening the files). ``patient``: no read
        timeout, for requests the server works on after the body (checks, scans)."""
        deadline = time.monotonic() + self.retry_max_s
        extra: dict[str, Any] = {"timeout": None} if patient else {}
        while True:
            try:
                resp = self._http.request(
                    method, url, content=body(), params=params, headers=headers, **extra
                )
            except httpx.TransportError as exc:
                _raise_if_untrusted(exc, self.base)
                if time.monotonic() > deadline:
                    raise errors.Unavailable(
                        f"cannot reach the mlplane server at {self.base}: {exc}"
                    ) from exc
                time.sleep(0.5)
                continue
            if resp.status_code >= 400:
                if resp.status_code in _RETRY_STATUS and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise _error_from(resp)
            return resp

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: Any = None,
        retry: bool = True,
    ) -> Any:
        body = orjson.dumps(json) if json is not None else content
        headers = {"Content-Type": "application/json"} if json is not None else None
        deadline = time.monotonic() + (self.retry_max_s if retry else 0)
        delay = 0.2
        while True:
            try:
                resp = self._http.request(
                    method, path, content=body, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                _raise_if_untrusted(exc, self.base)
                if time.monotonic() + delay > deadline:
                    raise errors.Unavailable(
                        f"cannot reach the mlplane server at {self.base}: {exc}"
                    ) from exc
            else:
                if resp.status_code < 400:
                    return orjson.loads(resp.content) if resp.content else None
                if resp.status_code not in _RETRY_STATUS or time.monotonic() + delay > deadline:
                    raise _error_from(resp)
                retry_after = resp.headers.get("Retry-After")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)

    # -- experiments -------------------------------------------------------------------------

    def create_experiment(self, name, *, project, artifact_location, tags, description):  # type: ignore[no-untyped-def]
        out = self._call(
            "POST",
            "/experiments",
            json={
                "name": name,
                "project": project,
                "artifact_location": artifact_location,
                "tags": dict(tags or {}),
                "description": description,
            },
            retry=False,
        )
        return str(out["experiment_id"])

    def get_experiment(self, experiment_id: str) -> Experiment:
        return codec.experiment(self._call("GET", f"/experiments/{_q(str(experiment_id))}"))

    def get_experiment_by_name(self, name: str, *, project: str) -> Experiment:
        return codec.experiment(
            self._call("GET", "/experiments/by-name", params={"name": name, "project": project})
        )

    def search_experiments(
        self, *, view_type, name_like, project, max_results, page_token
    ) -> ExperimentPage:  # type: ignore[no-untyped-def]
        params = {"view_type": str(view_type), "max_results": max_results}
        for k, v in (("name_like", name_like), ("project", project), ("page_token", page_token)):
            if v:
                params[k] = v
        return codec.experiment_page(self._call("GET", "/experiments", params=params))

    def update_experiment(
        self, experiment_id: str, *, name: str | None, description: str | None
    ) -> None:
        self._call(
            "PATCH",
            f"/experiments/{_q(str(experiment_id))}",
            json={"name": name, "description": description},
        )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._call(
            "PUT", f"/experiments/{_q(str(experiment_id))}/tags/{_q(key)}", json={"value": value}
        )

    def delete_experiment(self, experiment_id: str) -> None:
        self._call("DELETE", f"/experiments/{_q(str(experiment_id))}", retry=False)

    def restore_experiment(self, experiment_id: str) -> None:
        self._call("POST", f"/experiments/{_q(str(experiment_id))}/restore", retry=False)

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self, experiment_id, *, run_name, start_time, tags, parent_run_id, heartbeat
    ) -> Run:  # type: ignore[no-untyped-def]
        return codec.run(
            self._call(
                "POST",
                "/runs",
                json={
                    "experiment_id": str(experiment_id),
                    "run_name": run_name,
                    "start_time": start_time,
                    "tags": dict(tags or {}),
                    "parent_run_id": parent_run_id,
                    "heartbeat": heartbeat,
                },
                retry=False,
            )
        )

    def get_run(self, run_id: str) -> Run:
        return codec.run(self._call("GET", f"/runs/{_r(run_id)}"))

    def update_run(
        self, run_id: str, *, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        return codec.run_info(
            self._call(
                "PATCH",
                f"/runs/{_r(run_id)}",
                json={
                    "status": status,
                    "end_time": end_time,
                    "run_name": run_name,
                },
            )
        )

    def delete_run(self, run_id: str) -> None:
        self._call("DELETE", f"/runs/{_r(run_id)}", retry=False)

    def restore_run(self, run_id: str) -> None:
        self._call("POST", f"/runs/{_r(run_id)}/restore", retry=False)

    def purge_run(self, run_id: str) -> None:
        self._call("DELETE", f"/runs/{_r(run_id)}", params={"purge": "true"}, retry=False)

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] | MetricColumns,
        params: Mapping[str, object] | None,
        tags: Mapping[str, object] | None,
    ) -> None:
        payload: dict[str, Any] = {}
        if metrics:
            payload["metrics"] = codec.metrics_columns(metrics)
        if params:
            payload["params"] = {k: str(v) for k, v in params.items()}
        if tags:
            payload["tags"] = {k: str(v) for k, v in tags.items()}
        self._call("POST", f"/runs/{_r(run_id)}/log-batch", json=payload)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._call("DELETE", f"/runs/{_r(run_id)}/tags/{_q(key)}")

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        self._call("POST", f"/runs/{_r(run_id)}/inputs", json={"inputs": list(inputs)})

    def get_metric_histories(
        self, run_id: str, keys: Sequence[str] | None
    ) -> dict[str, list[Metric]]:
        params = {"key": list(keys)} if keys is not None else None
        return codec.histories(self._call("GET", f"/runs/{_r(run_id)}/metrics", params=params))

    def search_runs(
        self, experiment_ids, *, filter_string, view_type, max_results, order_by, page_token
    ) -> RunPage:  # type: ignore[no-untyped-def]
        return codec.run_page(
            self._call(
                "POST",
                "/runs/search",
                json={
                    "experiment_ids": [str(e) for e in experiment_ids],
                    "filter": filter_string,
                    "view_type": str(view_type),
                    "max_results": max_results,
                    "order_by": list(order_by or []),
                    "page_token": page_token,
                },
            )
        )

    def heartbeat(self, run_ids: Sequence[str]) -> None:
        self._call("POST", "/runs/heartbeat", json={"run_ids": list(run_ids)})

    # -- artifacts ---------------------------------------------------------------------------

    def log_artifact(
        self, run_id: str, path: str, local_file: str | os.PathLike[str]
    ) -> ArtifactInfo:
        def body() -> Iterator[bytes]:
            with open(local_file, "rb") as fh:
                while chunk := fh.read(1024 * 1024):
                    yield chunk

        url = f"/runs/{_r(run_id)}/artifacts/{quote(check.artifact_path(path))}"
        resp = self._stream_upload(
            "PUT", url, body, headers={"Content-Type": "application/octet-stream"}
        )
        return codec.artifact(orjson.loads(resp.content))

    def list_artifacts(
        self, run_id: str, path: str | None, *, recursive: bool
    ) -> list[ArtifactInfo]:
        params: dict[str, Any] = {"recursive": "true" if recursive else "false"}
        if path:
            params["path"] = path
        out = self._call("GET", f"/runs/{_r(run_id)}/artifacts", params=params)
        return [codec.artifact(a) for a in out["files"]]

    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]:
        url = f"/runs/{_r(run_id)}/artifacts/{quote(check.artifact_path(path))}"
        with self._http.stream("GET", url) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise _error_from(resp)
            yield from resp.iter_bytes(1024 * 1024)

    # -- datasets ----------------------------------------------------------------------------

    def add_dataset(  # type: ignore[no-untyped-def]
        self,
        name,
        source,
        *,
        project,
        progress,
        contract=None,
        pii=None,
        total=None,
        tables_only=False,
    ) -> AddResult:
        """Upload the files as one tar stream; the server checks, masks and stores them."""
        root = Path(source)
        if not root.exists():
            raise errors.InvalidInput(f"{root} does not exist")
        if total is not None:
            total(_tree_size(root))
        headers = {"Content-Type": "application/x-tar"}
        if contract is not None:
            headers["Mlplane-Contract"] = _b64json(orjson.loads(contract))
        if pii is not None:
            headers["Mlplane-Pii"] = _b64json(pii)
        url = f"/datasets/{quote(name, safe='')}/versions"
        resp = self._stream_upload(
            "POST",
            url,
            lambda: _tar_stream(root, progress),
            headers=headers,
            params={"project": project},
            patient=True,
        )
        return codec.add_result(orjson.loads(resp.content))

    def get_dataset(self, ref: str, *, project: str) -> DatasetVersion:
        out = self._call("GET", f"/datasets/{quote(ref, safe='@')}", params={"project": project})
        return codec.dataset_version(out)

    def list_datasets(self, *, project: str) -> list[DatasetVersion]:
        out = self._call("GET", "/datasets", params={"project": project})
        return [codec.dataset_version(v) for v in out["datasets"]]

    def dataset_versions(self, name: str, *, project: str) -> list[DatasetVersion]:
        url = f"/datasets/{quote(name, safe='')}/versions"
        out = self._call("GET", url, params={"project": project})
        return [codec.dataset_version(v) for v in out["versions"]]

    def tag_dataset(self, ref: str, tag: str, *, project: str) -> DatasetVersion:
        url = f"/datasets/{quote(ref, safe='@')}/tags"
        out = self._call("POST", url, json={"tag": tag}, params={"project": project})
        return codec.dataset_version(out)

    def download_dataset(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        project: str,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        version = self.get_dataset(ref, project=project)
        out = Path(dest)
        for f in version.files:
            url = f"/datasets/{quote(version.ref, safe='@')}/files/{quote(f.path)}"
            target = out / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            with self._http.stream("GET", url, params={"project": project}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_from(resp)
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_bytes(1024 * 1024):
                        fh.write(chunk)
                        if progress:
                            progress(len(chunk))
            os.replace(tmp, target)
        return str(out)

    def sample_dataset(
        self, ref: str, *, fraction: float, seed: int, into: str | None, project: str
    ) -> AddResult:
        url = f"/datasets/{quote(ref, safe='@')}/samples"
        body = {"fraction": fraction, "seed": seed, "into": into}
        return codec.add_result(self._call("POST", url, json=body, params={"project": project}))

    def dataset_lineage(self, ref: str, *, project: str) -> DatasetLineage:
        url = f"/datasets/{quote(ref, safe='@')}/lineage"
        return codec.lineage(self._call("GET", url, params={"project": project}))

    def collect_garbage(self, *, grace_s: float | None, dry_run: bool) -> GcReport:
        from mlplane.gc import GcReport

        return GcReport(**self._call("POST", "/gc", json={"grace_s": grace_s, "dry_run": dry_run}))

    # -- model registry ----------------------------------------------------------------------

    def register_model(
        self, name: str, folder: str | os.PathLike[str], **options: Any
    ) -> ModelVersion:
        """Upload a version folder as a tar stream; the server scans and stores it."""
        headers = {"Content-Type": "application/x-tar", "Mlplane-Options": _b64json(options)}
        url = f"/models/{quote(name, safe='')}/versions"
        resp = self._stream_upload(
            "POST", url, lambda: _tar_stream(Path(folder), None), headers=headers, patient=True
        )
        return codec.model_version(orjson.loads(resp.content))

    def get_model_version(self, ref: str, *, project: str) -> ModelVersion:
        out = self._call("GET", f"/model-versions/{_mref(ref)}", params={"project": project})
        return codec.model_version(out)

    def list_models(self, *, project: str) -> list[RegisteredModel]:
        out = self._call("GET", "/models", params={"project": project})
        return [codec.registered_model(m) for m in out["models"]]

    def get_model(self, name: str, *, project: str) -> RegisteredModel:
        out = self._call("GET", f"/models/{quote(name, safe='')}", params={"project": project})
        return codec.registered_model(out)

    def model_versions(self, name: str, *, project: str) -> list[ModelVersion]:
        url = f"/models/{quote(name, safe='')}/versions"
        out = self._call("GET", url, params={"project": project})
        return [codec.model_version(v) for v in out["versions"]]

    def set_model_alias(self, name: str, alias: str, version: int, *, project: str) -> ModelVersion:
        url = f"/models/{quote(name, safe='')}/aliases/{quote(alias, safe='')}"
        out = self._call("PUT", url, json={"version": version}, params={"project": project})
        return codec.model_version(out)

    def delete_model_alias(self, name: str, alias: str, *, project: str) -> None:
        url = f"/models/{quote(name, safe='')}/aliases/{quote(alias, safe='')}"
        self._call("DELETE", url, params={"project": project})

    def set_model_policy(
        self,
        name: str,
        policy: Mapping[str, Any] | None,
        protected: list[str] | None,
        *,
        project: str,
    ) -> RegisteredModel:
        url = f"/models/{quote(name, safe='')}/policy"
        body = {"policy": dict(policy) if policy is not None else None, "protected": protected}
        return codec.registered_model(
            self._call("PUT", url, json=body, params={"project": project})
        )

    def update_model_card(
        self, ref: str, fields: Mapping[str, str], *, project: str
    ) -> ModelVersion:
        url = f"/model-versions/{_mref(ref)}/card"
        out = self._call("PATCH", url, json=dict(fields), params={"project": project})
        return codec.model_version(out)

    def set_model_tag(self, ref: str, key: str, value: str, *, project: str) -> None:
        url = f"/model-versions/{_mref(ref)}/tags/{quote(key, safe='')}"
        self._call("PUT", url, json={"value": value}, params={"project": project})

    def model_lineage(self, ref: str, *, project: str) -> ModelLineage:
        url = f"/model-versions/{_mref(ref)}/lineage"
        return codec.model_lineage(self._call("GET", url, params={"project": project}))

    def fetch_model(self, ref: str, *, project: str) -> tuple[ModelVersion, str, dict[str, Any]]:
        """Download the files into the local model cache and check every SHA-256 here too."""
        from mlplane.registry import integrity

        version = self.get_model_version(ref, project=project)
        root = self._settings_home / "cache" / "models" / version.manifest_sha256
        if not (root / ".complete").exists():
            tmp = root.with_name(f".tmp-{os.getpid()}-{random.getrandbits(32):08x}")
            for f in version.files:
                url = f"/model-versions/{_mref(version.ref)}/files/{quote(f.path)}"
                target = tmp / f.path
                target.parent.mkdir(parents=True, exist_ok=True)
                with self._http.stream("GET", url, params={"project": project}) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise _error_from(resp)
                    with open(target, "wb") as fh:
                        for chunk in resp.iter_bytes(1024 * 1024):
                            fh.write(chunk)
            (tmp / ".complete").touch()
            try:
                tmp.rename(root)
            except OSError:
                if not (root / ".complete").exists():
                    raise
        integrity.verify_files(root, version.files, version.ref)
        meta = orjson.loads((root / "mlplane-model.json").read_bytes())
        return version, str(root), dict(meta.get("info") or {})

    def create_signing_key(self, *, project: str, required: bool) -> str:
        out = self._call(
            "POST", "/signing-keys", json={"required": required}, params={"project": project}
        )
        return str(out["key_id"])

    def close(self) -> None:
        self._http.close()


def _error_from(resp: httpx.Response) -> errors.MlplaneError:
    try:
        body = orjson.loads(resp.content)
        code, detail = body.get("code"), body.get("detail") or body.get("title")
    except Exception:
        code, detail = None, resp.text[:500]
    cls = ERRORS_BY_CODE.get(code or "")
    if cls is None:
        cls = errors.Unavailable if resp.status_code >= 500 else errors.InvalidInput
    return cls(detail or f"HTTP {resp.status_code}", status=resp.status_code)


def _b64json(obj: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).decode()


class _Pipe:
    """A write-only file object whose writes are collected for a generator to yield."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> list[bytes]:
        parts, self.parts = self.parts, []
        return parts


def _tar_stream(root: Path, progress: Any) -> Iterator[bytes]:
    """A file or a folder as an uncompressed tar stream, produced as it is read."""
    pipe = _Pipe()
    files = (
        [(root.name, root)]
        if root.is_file()
        else [
            (p.relative_to(root).as_posix(), p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()
        ]
    )
    with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for rel, path in files:
            info = tar.gettarinfo(str(path), arcname=rel)
            with open(path, "rb") as fh:
                tar.addfile(info, _Progress(fh, progress))
            yield from pipe.take()
    yield from pipe.take()


class _Progress:
    """Reports bytes read from a file as the tar writer copies it."""

    def __init__(self, fh: Any, progress: Any) -> None:
        self._fh = fh
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._fh.read(n)
        if self._progress and data:
            self._progress(len(data))
        return data


def _mref(ref: str) -> str:
    """A model reference as one path segment: ``name@selector``."""
    from mlplane.registry import uri

    name, selector = uri.parse(ref)
    return quote(f"{name}@{selector}", safe="@")


def _tree_size(path: Path) -> int:
    """Bytes under ``path`` for the progress bar: one ``scandir`` walk, no ``Path`` per file
    (a folder can hold 100,000 files)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total, stack = 0, [os.fspath(path)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    return total
