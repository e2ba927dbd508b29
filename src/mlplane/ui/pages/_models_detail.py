"""What the model page shows about one version, gathered from the services: its card, its
files checked against the registry, a scan of them, and its lineage.

Verifying and scanning read every file of the version, so a large version is checked only
when asked (``verify=1``): a page view should not hash gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from mlplane.errors import NotFound, PermissionDenied, TamperedArtifact
from mlplane.registry._versions import CARD_FIELDS
from mlplane.registry.entities import ModelVersion
from mlplane.registry.scan import Finding, scan_path
from mlplane.security import Principal
from mlplane.services import Services
from mlplane.serving.entities import Deployment
from mlplane.tracking.entities import Run
from mlplane.ui.pages._models_lineage import Graph, Item, layout

RANK = {"safe": 0, "unknown": 1, "unsafe": 2}
AUTO_VERIFY_BYTES = 64 * 1024 * 1024
"""Versions up to this size are verified and scanned on every view."""

CARD_TITLES = {
    "purpose": "Purpose",
    "intended_use": "Intended use",
    "limitations": "Limitations",
    "ethical_considerations": "Ethical considerations",
    "owner_contact": "Owner and contact",
}


@dataclass(frozen=True, slots=True)
class CardField:
    key: str
    title: str
    paragraphs: list[str]
    """The text split at blank lines; shown as escaped text, never as HTML."""


@dataclass
class FileCheck:
    path: str
    size: int
    sha256: str
    verified: bool | None = None
    """True: its SHA-256 (and the manifest signature) checked out; None: not checked."""
    problem: str = ""
    verdict: str | None = None
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Checks:
    state: str
    """``verified``, ``tampered`` or ``skipped`` (too large to check on every view)."""
    files: list[FileCheck]
    verdict: str | None = None
    """The worst verdict of the re-scan (None when skipped)."""

    @property
    def flagged(self) -> list[Finding]:
        return [f for c in self.files for f in c.findings if f.verdict != "safe"]

    @property
    def findings(self) -> list[Finding]:
        """Every finding, the ones that are not safe first (a model's many safe imports
        would bury them), each group in file order."""
        every = [f for c in self.files for f in c.findings]
        return sorted(every, key=lambda f: -RANK[f.verdict])


def card_fields(v: ModelVersion) -> list[CardField]:
    out = []
    for key in CARD_FIELDS:
        text = (v.card.get(key) or "").strip()
        paras = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
        out.append(CardField(key, CARD_TITLES.get(key, key.replace("_", " ").title()), paras))
    return out


def _rename(finding: Finding, base: str, path: str) -> Finding:
    """A finding of a file scanned alone names it by its base name: give it its path in the
    version (``model/model.skops::schema.json``)."""
    name = finding.file
    if name == base or name.startswith(base + "::"):
        name = path + name[len(base) :]
    return Finding(name, finding.module, finding.name, finding.verdict, finding.reason)


def check_files(
    svc: Services, me: Principal, v: ModelVersion, *, project: str, force: bool
) -> Checks:
    """Each file through the registry's own checked read (``open_file``: SHA-256 against the
    registered digest, the manifest signature when the project has a key), then scanned
    as registration scans it."""
    files = [FileCheck(f.path, f.size, f.sha256) for f in v.files]
    if v.size > AUTO_VERIFY_BYTES and not force:
        # Too large to read on every view: registration's own findings, file by file.
        stored = svc.registry.scan_report(me, v.ref, project=project)
        for check in files:
            check.findings = [f for f in stored.findings if f.file.split("::", 1)[0] == check.path]
            verdicts = [f.verdict for f in check.findings] or ["safe"]
            check.verdict = max(verdicts, key=lambda x: RANK[x])
        return Checks("skipped", files, stored.verdict)
    state = "verified"
    worst = "safe"
    for check in files:
        try:
            _, local = svc.registry.open_file(me, v.ref, check.path, project=project)
        except TamperedArtifact as exc:
            check.verified, check.problem, state = False, exc.message, "tampered"
            continue
        check.verified = True
        report = scan_path(local)
        check.verdict = report.verdict
        check.findings = [_rename(f, local.name, check.path) for f in report.findings]
        if RANK[report.verdict] > RANK[worst]:
            worst = report.verdict
    return Checks(state, files, worst)


def read_run(svc: Services, me: Principal, run_id: str | None) -> tuple[Run | None, str]:
    """The training run, or why it cannot be shown (deleted, or not readable by the caller:
    the version still names it)."""
    if not run_id:
        return None, ""
    try:
        return svc.tracking.get_run(me, run_id), ""
    except NotFound:
        return None, "the run no longer exists"
    except PermissionDenied:
        return None, "you may not read this run"


def serving(deployments: list[Deployment], name: str, version: int) -> list[tuple[Deployment, str]]:
    """The deployments whose routing sends this version live traffic or a shadow copy, each
    with a few words on its share."""
    out = []
    for d in deployments:
        if d.model != name or version not in d.routing.versions():
            continue
        share = d.routing.percents().get(version)
        shadow = d.routing.shadow
        if share is not None:
            words = f"{share:.0f}% of live traffic"
        elif shadow is not None:
            words = f"shadow of {shadow.percent:.0f}%"
        else:
            words = ""
        out.append((d, words))
    return out


def lineage_graph(
    v: ModelVersion,
    run: Run | None,
    served: list[tuple[Deployment, str]],
    *,
    project: str,
) -> Graph:
    q = urlencode({"project": project})
    datasets = [
        Item(
            "dataset",
            f"{i.name}@{i.version}" if i.version else i.name,
            i.context or "input",
            f"/ui/datasets/{quote(i.name, safe='')}?"
            + urlencode({"version": i.version, "project": project}),
        )
        for i in (run.inputs if run is not None else [])
        if i.kind == "dataset"
    ]
    if v.run_id:
        label = run.info.run_name if run is not None and run.info.run_name else v.run_id[:12]
        sub = f"{v.run_id[:8]} · {run.info.status.lower()}" if run is not None else v.run_id[:8]
        runs = [Item("run", label, sub, f"/ui/runs/{quote(v.run_id, safe='')}")]
    else:
        runs = [Item("run", "no training run linked", "registered from files")]
    aliases = ", ".join(v.aliases)
    model = Item(
        "model",
        v.ref,
        f"{v.flavor}" + (f" · {aliases}" if aliases else ""),
        f"/ui/models/{quote(v.name, safe='')}?{q}&version={v.version}",
        current=True,
    )
    deployments = [
        Item("deployment", d.name, words, f"/ui/deployments/{quote(d.name, safe='')}?{q}")
        for d, words in served
    ] or [Item("deployment", "not deployed", "no deployment routes to it")]
    if not datasets:
        datasets = [Item("dataset", "no dataset recorded", "the run logged no dataset input")]
    return layout(
        [
            ("Data", datasets),
            ("Training run", runs),
            ("Model version", [model]),
            ("Deployments", deployments),
        ]
    )


def code_version(run: Run | None) -> str:
    """The commit the run was trained from, as the model card writes it."""
    tags: dict[str, Any] = run.data.tags if run is not None else {}
    commit = tags.get("mlplane.git.commit")
    if not commit:
        return ""
    branch = tags.get("mlplane.git.branch")
    dirty = tags.get("mlplane.git.dirty") == "true"
    return f"{commit[:12]}" + (f" on {branch}" if branch else "") + (" (dirty)" if dirty else "")
