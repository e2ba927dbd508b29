"""Bundles: layout, manifest, pins, Dockerfile, a schema-valid SBOM and Kubernetes manifests."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplane.errors import InvalidInput, TamperedArtifact
from mlplane.registry import integrity
from mlplane.registry.package import k8s_name, package_version

K8S_VERSION = "1.30.0"


def installed() -> dict[str, str]:
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[name.lower()] = dist.version
    return out


@pytest.fixture
def version_folder(tmp_path: Path) -> Path:
    """A version folder as ``write_folder`` lays it out (the model file is a stand-in:
    packaging never loads the model)."""
    folder = tmp_path / "version"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.skops").write_bytes(b"\x00stand-in model bytes")
    meta = {
        "flavor": "sklearn",
        "info": {"flavor": "sklearn", "format": "skops", "files": ["model.skops"], "pickle": False},
        "signature": {"inputs": [{"name": "a", "type": "float64"}], "outputs": []},
        "onnx": None,
        "environment": {"python": "3.11.7", "packages": {}},
    }
    (folder / "mlplane-model.json").write_text(json.dumps(meta))
    lock = "".join(f"{n}=={v}\n" for n, v in sorted(installed().items()))
    (folder / "requirements.lock").write_text("# python 3.11.7\n" + lock)
    return folder


def manifest_for(folder: Path) -> dict[str, Any]:
    meta = json.loads((folder / "mlplane-model.json").read_text())
    files = integrity.list_files(folder)
    return {
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
        "manifest_sha256": integrity.manifest_digest(files, meta["flavor"], meta["info"]),
        "signed_by": None,
        "created_at": 1_700_000_000_000,
    }


@pytest.fixture
def bundle(version_folder: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "bundle"
    summary = package_version(
        version_folder,
        out,
        name="Churn_model.v2",
        version=3,
        manifest=manifest_for(version_folder),
        k8s=True,
        replicas=3,
        cpu="250m",
        memory="512Mi",
        port=9000,
    )
    return out, summary


def test_layout_and_summary(bundle: tuple[Path, dict[str, Any]], version_folder: Path) -> None:
    out, summary = bundle
    expected = {
        "Dockerfile",
        "README.md",
        "manifest.json",
        "requirements.txt",
        "sbom.cdx.json",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/hpa.yaml",
        "model/mlplane-model.json",
        "model/model/model.skops",
        "model/requirements.lock",
    }
    assert expected <= set(summary["files"])
    for rel, size in summary["files"].items():
        assert (out / rel).stat().st_size == size
    assert (out / "model" / "model" / "model.skops").read_bytes() == (
        version_folder / "model" / "model.skops"
    ).read_bytes()
    assert summary["image"] == "churn-model-v2:3"
    assert summary["sbom_components"] > 10
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_manifest_names_every_copied_file(bundle: tuple[Path, dict[str, Any]]) -> None:
    out, _ = bundle
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["version"], manifest["flavor"]) == (
        "Churn_model.v2",
        3,
        "sklearn",
    )
    assert manifest["created_at"] == 1_700_000_000_000
    copied = {f.path: f.sha256 for f in integrity.list_files(out / "model")}
    assert copied == {f["path"]: f["sha256"] for f in manifest["files"]}


def test_requirements_pin_mlplane_and_the_flavor_closure(
    bundle: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = bundle
    lines = [
        ln for ln in (out / "requirements.txt").read_text().splitlines() if not ln.startswith("#")
    ]
    pins = dict(ln.split("==") for ln in lines)
    assert pins["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert pins["mlplane"] == importlib.metadata.version("mlplane")
    for dep in ("numpy", "scipy", "joblib", "skops"):  # scikit-learn's and the format's
        assert dep in {k.lower() for k in pins}
    assert "pytest" not in pins  # a test tool is in the lock, not in the closure
    assert summary["requirements"] == len(pins)


def test_pins_fall_back_to_the_whole_lock_when_the_library_is_not_installed(
    version_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlplane.registry.flavors import SklearnFlavor

    # Packaging a model whose library this machine lacks: its dependencies are unknown here.
    monkeypatch.setattr(SklearnFlavor, "library", "not-installed-anywhere")
    out = tmp_path / "b"
    summary = package_version(version_folder, out, name="m", version=1, manifest={})
    assert summary["requirements"] == len(installed())
    assert "pytest==" in (out / "requirements.txt").read_text()


def test_dockerfile(bundle: tuple[Path, dict[str, Any]]) -> None:
    out, _ = bundle
    text = (out / "Dockerfile").read_text()
    lines = text.splitlines()
    assert lines[1] == "FROM python:3.11-slim"
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("root", "0"))
    assert "pip install --no-cache-dir" in text and "-r /opt/model/requirements.txt" in text
    assert "COPY model/ /opt/model/model/" in text
    assert "COPY manifest.json /opt/model/manifest.json" in text
    assert "EXPOSE 9000" in lines
    assert "HEALTHCHECK" in text and "127.0.0.1:9000/healthz" in text
    cmd = text[text.index('CMD ["mlplane"') :].replace("\\\n", "")
    args = json.loads(cmd.removeprefix("CMD "))
    assert args == [
        "mlplane",
        "models",
        "serve",
        "/opt/model",
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--port",
        "9000",
    ]


def test_sbom_is_valid_cyclonedx(bundle: tuple[Path, dict[str, Any]]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    out, summary = bundle
    text = (out / "sbom.cdx.json").read_text()
    sbom = json.loads(text)
    assert sbom["bomFormat"] == "CycloneDX"
    version = SchemaVersion.from_version(sbom["specVersion"])
    assert version >= SchemaVersion.V1_5
    validator = JsonStrictValidator(version)
    assert validator.validate_str(text) is None

    components = sbom["components"]
    assert len(components) == summary["sbom_components"]
    purls = {c.get("purl") for c in components}
    assert f"pkg:pypi/scikit-learn@{importlib.metadata.version('scikit-learn')}" in purls
    pins = (out / "requirements.txt").read_text().count("==")
    assert sum(1 for c in components if c["type"] == "library") == pins
    model_files = {c["name"]: c for c in components if c["type"] != "library"}
    skops = model_files["model/model.skops"]
    assert skops["type"] == "machine-learning-model"
    sha = integrity.sha256_file(out / "model" / "model" / "model.skops")
    assert skops["hashes"] == [{"alg": "SHA-256", "content": sha}]
    assert model_files["mlplane-model.json"]["type"] == "data"
    assert sbom["metadata"]["component"]["type"] == "machine-learning-model"

    # The validator does reject a broken document.
    components[0]["hashes"] = [{"alg": "SHA-256", "content": "not-hex"}]
    assert validator.validate_str(json.dumps(sbom)) is not None


def test_kubernetes_manifests_validate(bundle: tuple[Path, dict[str, Any]]) -> None:
    import kubernetes_validate

    out, _ = bundle
    docs = {
        f: yaml.safe_load((out / "k8s" / f).read_text())
        for f in ("deployment.yaml", "service.yaml", "hpa.yaml")
    }
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)

    dep = docs["deployment.yaml"]
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "churn-model-v2:3"
    assert container["ports"][0]["containerPort"] == 9000
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert container["resources"]["limits"] == {"cpu": "250m", "memory": "512Mi"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert docs["service.yaml"]["spec"]["type"] == "ClusterIP"
    hpa = docs["hpa.yaml"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 15)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    # strict validation does catch a misspelt field.
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_no_k8s_unless_asked_and_custom_image(version_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    summary = package_version(version_folder, out, name="m", version=1, manifest={})
    assert not (out / "k8s").exists()
    assert summary["image"] == "m:1"
    out2 = tmp_path / "b2"
    package_version(
        version_folder, out2, name="m", version=1, manifest={}, k8s=True, image="reg/m:x"
    )
    dep = yaml.safe_load((out2 / "k8s" / "deployment.yaml").read_text())
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/m:x"


def test_non_empty_out_is_refused_unless_it_is_an_earlier_bundle(
    version_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty"):
        package_version(version_folder, out, name="m", version=1, manifest={})
    assert (out / "notes.txt").read_text() == "mine"

    fresh = tmp_path / "fresh"
    package_version(version_folder, fresh, name="m", version=1, manifest={})
    (fresh / "stale.txt").write_text("old")
    package_version(version_folder, fresh, name="m", version=2, manifest={})  # same model
    assert json.loads((fresh / "manifest.json").read_text())["version"] == 2
    assert not (fresh / "stale.txt").exists()
    with pytest.raises(InvalidInput, match="earlier bundle of other"):
        package_version(version_folder, fresh, name="other", version=1, manifest={})


def test_tampered_folder_is_not_packaged(version_folder: Path, tmp_path: Path) -> None:
    manifest = manifest_for(version_folder)
    (version_folder / "model" / "model.skops").write_bytes(b"\x00changed")
    out = tmp_path / "out"
    with pytest.raises(TamperedArtifact, match=r"model/model\.skops"):
        package_version(version_folder, out, name="m", version=1, manifest=manifest)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_manifest_that_does_not_describe_the_folder_is_refused(
    version_folder: Path, tmp_path: Path
) -> None:
    manifest = manifest_for(version_folder)
    manifest["manifest_sha256"] = "0" * 64
    with pytest.raises(TamperedArtifact, match="manifest_sha256"):
        package_version(version_folder, tmp_path / "o", name="m", version=1, manifest=manifest)
    with pytest.raises(InvalidInput, match="describes"):
        package_version(version_folder, tmp_path / "o", name="m", version=1, manifest={"name": "x"})


@pytest.mark.parametrize(
    ("option", "value"),
    [("replicas", 0), ("cpu", "half"), ("memory", "1 GB"), ("port", 70000), ("image", "a b")],
)
def test_bad_options_are_refused(
    version_folder: Path, tmp_path: Path, option: str, value: Any
) -> None:
    with pytest.raises(InvalidInput, match=option):
        package_version(
            version_folder, tmp_path / "o", name="m", version=1, manifest={}, **{option: value}
        )
    assert not (tmp_path / "o").exists()


def test_not_a_version_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a model version folder"):
        package_version(tmp_path, tmp_path / "o", name="m", version=1, manifest={})


def test_k8s_name() -> None:
    assert k8s_name("Churn_model.v2") == "churn-model-v2"
    assert k8s_name("___") == "model"
    assert len(k8s_name("a" * 300)) == 63


def test_readme_shows_a_body_in_the_signature_columns(
    bundle: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = bundle
    text = (out / "README.md").read_text()
    assert """-d '{"instances": [{"a": 0.0}]}'""" in text
    assert "kubectl apply -f k8s/" in text


def test_layout_names_match_what_registration_writes() -> None:
    from mlplane.registry import _build, package

    assert (package.META_FILE, package.LOCK_FILE) == (_build.META_FILE, _build.LOCK_FILE)


def test_pins_are_closed_under_their_requirements(bundle: tuple[Path, dict[str, Any]]) -> None:
    """What pip would install from requirements.txt needs nothing unpinned (for Linux,
    the lock's Python) and every pin satisfies the specifiers that ask for it."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out, _ = bundle
    lines = (out / "requirements.txt").read_text().splitlines()
    pins = {canonicalize_name(n): v for n, v in (ln.split("==") for ln in lines if "==" in ln)}
    env = {**default_environment(), "python_version": "3.11", "sys_platform": "linux"}
    requested: dict[str, frozenset[str]] = {"mlplane": frozenset()}
    if "uvicorn" in pins:
        requested["uvicorn"] = frozenset({"standard"})  # mlplane asks for uvicorn[standard]
    for name in pins:
        for text in importlib.metadata.distribution(name).requires or []:
            req = Requirement(text)
            extras = {"", *requested.get(name, frozenset())}
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in extras
            ):
                continue
            dep = canonicalize_name(req.name)
            assert dep in pins, f"{name} needs {req}, which is not pinned"
            assert req.specifier.contains(pins[dep], prereleases=True), (name, str(req))
