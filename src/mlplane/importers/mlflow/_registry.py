"""Registered models, their versions and aliases, imported after the runs they came from.

Each MLflow version's files are copied, turned into one of our version
folders (``_models``) and registered like any other version: the registry
scans every file itself. The import scans first too, to decide: ``unsafe``
is refused and reported; ``unknown`` (a pickle importing something outside
the allowlist) is registered with ``allow_unknown``, which needs a project
admin and is recorded on the version and in the audit log, because the
version was already in use in MLflow; it stays off protected aliases until
its promotion policy allows it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlplane.errors import MlplaneError, NotFound
from mlplane.importers.mlflow._entities import SrcModel, SrcModelVersion
from mlplane.importers.mlflow._models import Unsupported, convert
from mlplane.importers.mlflow._tags import TAG_SOURCE, TAG_SOURCE_ID
from mlplane.registry.scan import scan_path

if TYPE_CHECKING:
    from mlplane.importers.mlflow._import import MlflowImport


class ModelImport:
    """The registry part of one :class:`MlflowImport`.

    Args:
        owner: The import (client, source, report, run id mapping).
        wanted: MLflow run ids whose versions to import; None for every version.
    """

    def __init__(self, owner: MlflowImport, wanted: set[str] | None) -> None:
        self.owner = owner
        self.wanted = wanted
        self.models: list[tuple[SrcModel, list[SrcModelVersion]]] = []

    @property
    def planned(self) -> int:
        return sum(len(vs) for _, vs in self.models)

    def plan(self) -> None:
        src = self.owner.source
        for m in src.models():
            versions = [
                v
                for v in src.model_versions(m.name)
                if self.wanted is None or (v.run_id or "") in self.wanted
            ]
            if versions or self.wanted is None:
                self.models.append((m, versions))

    def run(self) -> None:
        for model, versions in self.models:
            self._model(model, versions)

    def _model(self, model: SrcModel, versions: list[SrcModelVersion]) -> None:
        o = self.owner
        report = o.report
        try:
            ours = o.client.transport.model_versions(model.name, project=o.project)
        except NotFound:
            ours = []
        mapping = {v.tags[TAG_SOURCE_ID]: v.version for v in ours if TAG_SOURCE_ID in v.tags}
        if not versions:
            report.add("models", "skipped")
            report.note(f"model {model.name}: no versions to import (a model here starts with one)")
            return
        imported = 0
        for v in versions:
            ref = f"{v.name}/{v.version}"
            if ref in mapping:
                report.add("model_versions", "skipped")
            elif v.status != "READY":
                report.add("model_versions", "skipped")
                report.note(f"model version {ref}: status {v.status} in MLflow, not imported")
            elif o.dry_run:
                report.add("model_versions", "imported")
                mapping[ref] = 0  # would be numbered on import
                imported += 1
            else:
                number = self._version(v, ref)
                if number is not None:
                    mapping[ref] = number
                    imported += 1
            o.hook("model_version", ref)
        report.add("models", "imported" if imported else "skipped")
        self._aliases(model, mapping)

    def _version(self, v: SrcModelVersion, ref: str) -> int | None:
        o = self.owner
        with tempfile.TemporaryDirectory(prefix="mlplane-import-model-") as tmp:
            src, dest = Path(tmp) / "mlflow", Path(tmp) / "version"
            try:
                uri = o.source.model_uri(v)
                files = o.source.list_files(uri)
                if not files:
                    raise NotFound(f"no model files at {uri}")
                for f in files:
                    o.source.download(uri, f.path, src / f.path)
                convert(src, dest, mlflow_ref=f"models:/{ref}")
            except Unsupported as exc:  # by design, not an error: said once, not retried
                o.report.add("model_versions", "skipped")
                o.report.note(str(exc))
                return None
            except (MlplaneError, OSError) as exc:
                o.report.fail("model_versions", ref, f"cannot read its files: {exc}")
                return None
            scan = scan_path(dest)
            if scan.verdict == "unsafe":
                o.report.fail(
                    "model_versions", ref, f"the scan found code execution: {scan.summary()}"
                )
                return None
            tags = {
                **v.tags,
                TAG_SOURCE_ID: ref,
                TAG_SOURCE: o.source.label,
                "mlflow.source": v.source[:5000],
                "mlflow.version": v.version,
                **({"mlflow.stage": v.stage} if v.stage and v.stage != "None" else {}),
                **({"mlflow.creation_time": str(v.creation_time)} if v.creation_time else {}),
            }
            if scan.verdict == "unknown":
                o.report.note(
                    f"model version {ref}: the scan could not tell whether loading it is safe; "
                    "registered with allow_unknown (recorded on the version and audited)"
                )
            try:
                mv = o.client.transport.register_model(
                    v.name,
                    dest,
                    project=o.project,
                    run_id=o.run_ids.get(v.run_id or ""),
                    description=v.description,
                    tags=tags,
                    allow_unknown=scan.verdict == "unknown",
                )
            except MlplaneError as exc:
                o.report.fail("model_versions", ref, str(exc))
                return None
        o.report.add("model_versions", "imported")
        return mv.version

    def _aliases(self, model: SrcModel, mapping: dict[str, int]) -> None:
        o = self.owner
        if not model.aliases:
            return
        try:
            current = o.client.transport.get_model(model.name, project=o.project).aliases
        except NotFound:
            current = {}
        for alias, version in sorted(model.aliases.items()):
            ours = mapping.get(f"{model.name}/{version}")
            item = f"{model.name}@{alias}"
            if ours is None:
                o.report.add("aliases", "skipped")
                o.report.note(f"alias {item}: its version {version} was not imported")
            elif current.get(alias) == ours:
                o.report.add("aliases", "skipped")
            elif o.dry_run:
                o.report.add("aliases", "imported")
            else:
                try:
                    o.client.transport.set_model_alias(model.name, alias, ours, project=o.project)
                except MlplaneError as exc:
                    o.report.fail("aliases", item, str(exc))
                    continue
                o.report.add("aliases", "imported")
