"""Package a model version as a self-contained, deployable bundle.

A bundle is a folder anyone can ``docker build``: the version folder, its
manifest (every file's SHA-256, checked again by the model server when it
starts), the exact requirement pins it needs, a Dockerfile running the model
server as a non-root user, a CycloneDX SBOM, and optionally Kubernetes
manifests. The pins are the dependency closure of mlplane and the flavor's
libraries, with the versions recorded in the version's ``requirements.lock``
at registration, so the image runs the libraries the model was saved with.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlplane._version import __version__
from mlplane.errors import InvalidInput, TamperedArtifact
from mlplane.registry import integrity
from mlplane.registry.entities import META_FILE, ModelFile

LOCK_FILE = "requirements.lock"
MANIFEST_FILE = "manifest.json"
SERVE_ROOT = "/opt/model"
UID = 10001

FORMAT_LIBRARIES = {"skops": "skops", "safetensors": "safetensors", "onnx": "onnxruntime"}
"""Distributions a save format loads with, beyond the flavor's :attr:`Flavor.library`."""

_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def package_version(
    folder: Path,
    out: Path,
    *,
    name: str,
    version: int,
    manifest: dict[str, Any],
    k8s: bool = False,
    image: str | None = None,
    replicas: int = 2,
    max_replicas: int | None = None,
    cpu: str = "500m",
    memory: str = "1Gi",
    port: int = 8080,
) -> dict[str, Any]:
    """Write a deployable bundle of one model version into ``out``.

    The bundle is built in a sibling temporary folder and renamed into place,
    so ``out`` never holds half a bundle.

    Args:
        folder: The verified version folder (``mlplane-model.json``, ``model/``, …).
        out: Where the bundle goes: a new or empty folder, or an earlier bundle of
            the same model (replaced).
        name: The registered model's name.
        version: The version number.
        manifest: The version's manifest (``files`` with path, size and SHA-256,
            ``manifest_sha256``, ``signed_by``, ``created_at``, …); missing
            ``name``, ``version``, ``flavor`` and ``files`` are filled in.
        k8s: Also write ``k8s/`` Deployment, Service and HorizontalPodAutoscaler.
        image: The container image the Deployment runs; default ``NAME:VERSION``.
        replicas: Replicas of the Deployment, and the autoscaler's minimum.
        max_replicas: The autoscaler's maximum; default five times ``replicas``.
        cpu: CPU request and limit (Kubernetes quantity).
        memory: Memory request and limit (Kubernetes quantity).
        port: The port the server listens on in the container.

    Returns:
        Each written file's size by its path in ``out``, the number of pinned
        requirements and of SBOM components, and the image name.

    Raises:
        InvalidInput: ``out`` holds something other than a bundle of this model,
            ``folder`` is not a version folder, or an option is malformed.
        TamperedArtifact: a file no longer matches the manifest's SHA-256.
    """
    _check_options(replicas, max_replicas, cpu, memory, port, image)
    folder, out = Path(folder), Path(out)
    meta = _read_meta(folder)
    flavor = str(meta["flavor"])
    files = _files(folder, manifest)
    full = {"name": name, "version": version, "flavor": flavor, **manifest}
    full["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]
    if full["name"] != name or str(full["version"]) != str(version):
        raise InvalidInput(
            f"the manifest describes {full['name']}@{full['version']}, not {name}@{version}"
        )
    _check_digest(full, files, meta)
    _check_out(out, name)

    lock, python = _read_lock(folder, meta)
    pins, edges = requirements(lock, flavor, meta.get("info") or {}, python)
    slug = k8s_name(name)
    image = image or f"{slug}:{version}"
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()
        for f in files:
            _copy_checked(folder / f.path, tmp / "model" / f.path, f)
        _write(tmp / MANIFEST_FILE, json.dumps(full, indent=2, sort_keys=True, default=str))
        _write(tmp / "requirements.txt", _requirements_txt(pins, flavor, python))
        (tmp / "wheels").mkdir()
        _write(tmp / "wheels" / "README.txt", WHEELS_README)
        _write(tmp / "Dockerfile", dockerfile(name, version, flavor, python, port))
        sbom, n_components = _sbom(full, pins, edges, python)
        _write(tmp / "sbom.cdx.json", sbom)
        if k8s:
            for fname, doc in kubernetes(
                slug, version, image, replicas, max_replicas or replicas * 5, cpu, memory, port
            ).items():
                _write(tmp / "k8s" / fname, _yaml(doc))
        example = _example(meta.get("signature"))
        _write(tmp / "README.md", readme(name, version, slug, image, port, k8s, example))
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    written = {
        p.relative_to(out).as_posix(): p.stat().st_size
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    return {
        "files": written,
        "size": sum(written.values()),
        "requirements": len(pins),
        "sbom_components": n_components,
        "image": image,
        "k8s": k8s,
    }


# -- inputs ------------------------------------------------------------------------------------


def _check_options(
    replicas: int, max_replicas: int | None, cpu: str, memory: str, port: int, image: str | None
) -> None:
    if replicas < 1:
        raise InvalidInput(f"replicas must be at least 1, not {replicas}")
    if max_replicas is not None and max_replicas < replicas:
        raise InvalidInput(f"max_replicas ({max_replicas}) is below replicas ({replicas})")
    if not _CPU.match(cpu):
        raise InvalidInput(f"cpu {cpu!r} is not a Kubernetes CPU quantity (e.g. 500m or 2)")
    if not _MEMORY.match(memory):
        raise InvalidInput(f"memory {memory!r} is not a Kubernetes memory quantity (e.g. 1Gi)")
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port must be between 1 and 65535, not {port}")
    if image is not None and (not image or any(c.isspace() for c in image)):
        raise InvalidInput(f"{image!r} is not a container image reference")


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text())
        str(meta["flavor"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"not a model version folder ({META_FILE} unreadable: {exc})") from None
    return dict(meta)


def _files(folder: Path, manifest: dict[str, Any]) -> list[ModelFile]:
    listed = manifest.get("files")
    if listed is None:
        # Without a manifest list, take every file but the fetch cache's completion marker.
        return [f for f in integrity.list_files(folder) if not f.path.startswith(".")]
    try:
        files = [ModelFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in listed]
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("manifest 'files' must be a list of {path, size, sha256}") from None
    for f in files:
        parts = Path(f.path).parts
        if Path(f.path).is_absolute() or ".." in parts or not parts:
            raise InvalidInput(f"manifest file path {f.path!r} leaves the version folder")
    return files


def _check_digest(full: dict[str, Any], files: list[ModelFile], meta: dict[str, Any]) -> None:
    recorded = full.get("manifest_sha256")
    if recorded is None:
        return
    got = integrity.manifest_digest(files, str(meta["flavor"]), dict(meta.get("info") or {}))
    if got != recorded:
        raise TamperedArtifact(
            f"the manifest's files and flavor hash to {got[:16]}…, but its manifest_sha256 is "
            f"{str(recorded)[:16]}…: the manifest does not describe this version folder"
        )


def _check_out(out: Path, name: str) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise InvalidInput(f"{out.name} exists and is not a folder; choose another output path")
    if not any(out.iterdir()):
        return
    try:
        earlier = json.loads((out / MANIFEST_FILE).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier != name:
        raise InvalidInput(
            f"{out.name} is not empty and holds no earlier bundle of {name}; "
            "choose an empty or new folder"
        )


def _read_lock(folder: Path, meta: dict[str, Any]) -> tuple[dict[str, tuple[str, str]], str]:
    """The lock as {canonical name: (name, version)} and the Python version it was taken on."""
    env = meta.get("environment") or {}
    python = str(env.get("python") or "")
    pins: dict[str, tuple[str, str]] = {}
    path = folder / LOCK_FILE
    if path.is_file():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line.startswith("# python "):
                python = python or line.removeprefix("# python ").strip()
            elif line and not line.startswith("#") and "==" in line:
                pkg, _, ver = line.partition("==")
                pins[canonicalize_name(pkg.strip())] = (pkg.strip(), ver.strip())
    else:
        for pkg, ver in dict(env.get("packages") or {}).items():
            pins[canonicalize_name(pkg)] = (pkg, str(ver))
    if not pins:
        raise InvalidInput(f"the version folder has no {LOCK_FILE} and no recorded environment")
    return pins, python or "3.11"


# -- requirements ------------------------------------------------------------------------------


def requirements(
    lock: dict[str, tuple[str, str]], flavor: str, info: dict[str, Any], python: str
) -> tuple[dict[str, tuple[str, str]], dict[str, set[str]]]:
    """The pins the model needs: mlplane and the flavor's libraries with their dependency
    closure (from the installed distributions' metadata, markers evaluated for Linux and
    the lock's Python), at the lock's versions. Falls back to the whole lock when a root
    is not installed here, since its dependencies cannot be known.

    Returns:
        The pins ({canonical name: (name, version)}) and the dependency edges between them.
    """
    from mlplane.registry.flavors import get

    try:
        roots = ["mlplane", get(flavor).library]
    except InvalidInput:
        return dict(lock), {}
    if str(info.get("format", "")) in FORMAT_LIBRARIES:
        roots.append(FORMAT_LIBRARIES[str(info["format"])])
    if info.get("serializer") == "cloudpickle":
        roots.append("cloudpickle")
    roots = list(dict.fromkeys(canonicalize_name(r) for r in roots))
    env = _target_environment(python)
    try:
        edges = _closure(roots, env)
    except importlib.metadata.PackageNotFoundError:
        return dict(lock), {}
    pins = {n: lock[n] for n in edges if n in lock}
    if "mlplane" not in pins:
        pins["mlplane"] = ("mlplane", __version__)
    return pins, {n: {d for d in deps if d in pins} for n, deps in edges.items() if n in pins}


def _target_environment(python: str) -> dict[str, str]:
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    env.update(
        python_version=".".join(python.split(".")[:2]),
        python_full_version=python,
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env


def _closure(roots: Iterable[str], env: dict[str, str]) -> dict[str, set[str]]:
    """{distribution: its dependencies} over everything ``roots`` need (with extras)."""
    edges: dict[str, set[str]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, frozenset[str]()) for r in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        deps = edges.setdefault(name, set())
        for text in importlib.metadata.distribution(name).requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in {"", *extras}
            ):
                continue
            dep = canonicalize_name(req.name)
            deps.add(dep)
            try:
                importlib.metadata.distribution(dep)
            except importlib.metadata.PackageNotFoundError:
                edges.setdefault(dep, set())  # pinned from the lock if there, not traversed
                continue
            todo.append((dep, frozenset(req.extras)))
    return edges


def _requirements_txt(pins: dict[str, tuple[str, str]], flavor: str, python: str) -> str:
    head = (
        f"# Exact pins for serving this {flavor} model (Python {python}): mlplane, the\n"
        "# flavor's libraries and their dependencies, at the versions the model was\n"
        "# registered with.\n"
    )
    return head + "".join(f"{n}=={v}\n" for n, v in sorted(pins.values(), key=lambda p: p[0]))


# -- files -------------------------------------------------------------------------------------


def _copy_checked(src: Path, dst: Path, f: ModelFile) -> None:
    if not src.is_file():
        raise TamperedArtifact(f"{f.path} is listed in the manifest but missing from the folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    got = integrity.sha256_file(dst)
    if got != f.sha256 or dst.stat().st_size != f.size:
        raise TamperedArtifact(
            f"{f.path} has SHA-256 {got[:16]}…, the manifest says {f.sha256[:16]}…: "
            "the version folder was modified; it will not be packaged"
        )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _replace(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))


WHEELS_README = """\
Wheels placed here are installed before the package index is asked: put the
mlplane wheel here when the index the image is built against does not serve it.
"""


# -- Dockerfile, README ------------------------------------------------------------------------


def dockerfile(name: str, version: int, flavor: str, python: str, port: int) -> str:
    """A Dockerfile running the model server as a non-root user on ``port``."""
    base = ".".join(python.split(".")[:2]) or "3.11"
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=4)"
    )
    return f"""\
# {name} version {version} ({flavor}), served by mlplane's model server.
FROM python:{base}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    MLPLANE_HOME=/tmp/mlplane

RUN groupadd --system --gid {UID} mlplane \\
 && useradd --system --uid {UID} --gid {UID} --no-create-home --home-dir /nonexistent \\
    --shell /usr/sbin/nologin mlplane

COPY requirements.txt {SERVE_ROOT}/requirements.txt
COPY wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --find-links /tmp/wheels -r {SERVE_ROOT}/requirements.txt \\
 && rm -rf /tmp/wheels

# Root owns the model files: the server can read them, never change them. It checks
# every file against manifest.json before it loads the model.
COPY {MANIFEST_FILE} {SERVE_ROOT}/{MANIFEST_FILE}
COPY model/ {SERVE_ROOT}/model/

USER {UID}:{UID}
EXPOSE {port}
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
  CMD ["python", "-c", "{probe}"]
CMD ["mlplane", "models", "serve", "{SERVE_ROOT}", "--host", "0.0.0.0", "--allow-remote", \\
     "--port", "{port}"]
"""


def _example(signature: Any) -> str:
    """A one-record predict body in the signature's columns, with placeholder values."""
    placeholders: dict[str, Any] = {"bool": False, "int": 0, "uint": 0, "float": 0.0}
    record: dict[str, Any] = {}
    for col in (signature or {}).get("inputs") or []:
        kind = str(col.get("type", "")).rstrip("0123456789")
        record[str(col.get("name"))] = placeholders.get(kind, "")
    return json.dumps({"instances": [record or {"feature": 0.0}]})


def readme(
    name: str, version: int, slug: str, image: str, port: int, k8s: bool, example: str
) -> str:
    """How to build, run and deploy the bundle."""
    body = f"""\
# {name} version {version}

A self-contained bundle of the model: `model/` (the version's files),
`manifest.json` (their SHA-256 digests, checked by the server before it loads
the model), `requirements.txt` (exact pins), `Dockerfile`, and `sbom.cdx.json`
(a CycloneDX SBOM of the packages and model files).

## Build and run

```sh
docker build -t {image} .
docker run --rm --read-only --tmpfs /tmp -p {port}:{port} {image}
```

The image installs `requirements.txt`, mlplane included; if the package index
used for the build does not serve mlplane, put its wheel in `wheels/`.

## Call it

```sh
curl -s localhost:{port}/readyz
curl -s localhost:{port}/v1/models/{name}
curl -s -X POST localhost:{port}/v1/models/{name}:predict \\
  -H 'content-type: application/json' \\
  -d '{example}'
```

The body is one of `{{"instances": [{{...}}, ...]}}` (records),
`{{"inputs": {{"column": [...]}}}}` (columns) or
`{{"dataframe_split": {{"columns": [...], "data": [[...]]}}}}`; the answer is
`{{"predictions": [...]}}`. Input that does not match the model's signature is
answered with 400 and names the column.
"""
    if k8s:
        body += f"""
## Kubernetes

Push the image where the cluster can pull it (set the `image:` in
`k8s/deployment.yaml` if you tagged it differently), then:

```sh
kubectl apply -f k8s/
kubectl rollout status deployment/{slug}
kubectl port-forward service/{slug} {port}:80
```

The Deployment runs as a non-root user with a read-only root filesystem; the
HorizontalPodAutoscaler scales on CPU utilization and needs the metrics server.
"""
    return body


# -- Kubernetes --------------------------------------------------------------------------------


def k8s_name(name: str) -> str:
    """A DNS-1123 label for Kubernetes objects and image names from a model name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug or "model"


def kubernetes(
    slug: str,
    version: int,
    image: str,
    replicas: int,
    max_replicas: int,
    cpu: str,
    memory: str,
    port: int,
) -> dict[str, dict[str, Any]]:
    """Deployment, Service and HorizontalPodAutoscaler, by file name."""
    selector = {"app.kubernetes.io/name": slug}
    labels = {
        **selector,
        "app.kubernetes.io/version": str(version),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mlplane",
    }
    resources = {"cpu": cpu, "memory": memory}
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": slug, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                            "resources": {"requests": resources, "limits": dict(resources)},
                            # Loading a large model may take a while; liveness waits for it.
                            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 5,
                                "timeoutSeconds": 2,
                            },
                            "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 2},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            # Libraries may write temporary files even when serving.
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": slug, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": slug, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": slug},
            "minReplicas": replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa}


# -- SBOM --------------------------------------------------------------------------------------


def _sbom(
    manifest: dict[str, Any],
    pins: dict[str, tuple[str, str]],
    edges: dict[str, set[str]],
    python: str,
) -> tuple[str, int]:
    """CycloneDX 1.6 JSON: the packages as pypi libraries, the files as data or
    machine-learning-model components with their SHA-256; the model is the subject."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    subject = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=str(manifest["name"]),
        version=str(manifest["version"]),
        bom_ref=f"model:{manifest['name']}@{manifest['version']}",
        properties=[
            Property(name=f"mlplane:{k}", value=str(manifest[k]))
            for k in ("flavor", "manifest_sha256", "signed_by", "created_at")
            if manifest.get(k) is not None
        ]
        + [Property(name="mlplane:python", value=python)],
    )
    bom = Bom()
    bom.metadata.component = subject
    bom.metadata.timestamp = datetime.now(UTC)
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="mlplane", version=__version__)
    )
    libs: dict[str, Component] = {}
    for key, (pkg, ver) in pins.items():
        purl = PackageURL(type="pypi", name=key, version=ver)
        libs[key] = Component(
            type=ComponentType.LIBRARY, name=pkg, version=ver, purl=purl, bom_ref=purl.to_string()
        )
    files = []
    for f in manifest["files"]:
        model_like = f["path"].startswith(("model/", "onnx/"))
        files.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL if model_like else ComponentType.DATA,
                name=f["path"],
                bom_ref=f"file:{f['path']}",
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f["sha256"])],
                properties=[Property(name="mlplane:size", value=str(f["size"]))],
            )
        )
    for c in [*libs.values(), *files]:
        bom.components.add(c)
    roots = set(libs) - {d for deps in edges.values() for d in deps} if edges else set(libs)
    bom.register_dependency(subject, [*(libs[r] for r in sorted(roots)), *files])
    for key, comp in libs.items():
        bom.register_dependency(comp, [libs[d] for d in sorted(edges.get(key, ()))])
    for comp in files:
        bom.register_dependency(comp, [])
    return JsonV1Dot6(bom).output_as_string(indent=2), len(libs) + len(files)
