"""What a scan returns: per-import findings and the report that sums them up."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

Verdict = Literal["safe", "unsafe", "unknown"]

_RANK: dict[str, int] = {"safe": 0, "unknown": 1, "unsafe": 2}


def worst(verdicts: Any) -> Verdict:
    """The worst of ``verdicts`` (``unsafe`` > ``unknown`` > ``safe``); ``safe`` when empty."""
    out = "safe"
    for v in verdicts:
        if _RANK[v] > _RANK[out]:
            out = v
    return cast(Verdict, out)


@dataclass(frozen=True)
class Finding:
    """One judgement about one file.

    Most findings are about an import (``module`` and ``name`` set); the others
    are about the file itself (its format, a stream that does not parse, a
    global whose name could not be resolved), with empty or ``?`` names.

    Attributes:
        file: The file, or ``archive::member`` for a member of an archive.
        module: The module the pickle imports from (``""`` when not an import).
        name: The attribute it imports (``""`` when not an import).
        verdict: ``safe``, ``unsafe`` or ``unknown``.
        reason: Why, e.g. ``"os.system: runs shell commands"``.
    """

    file: str
    module: str
    name: str
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning a file, a folder or a byte string.

    Attributes:
        verdict: The worst verdict over ``findings``.
        findings: Every judgement, safe ones included, in scan order.
        files: How many files were scanned (files on disk; members of an
            archive are not counted separately).
        bytes: Their total size in bytes.
        imports: For each scanned pickle stream (``file`` or
            ``archive::member``), the sorted ``module.name`` globals it
            imports, safe ones too.
    """

    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    imports: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines: the verdict, the counts, then every finding not safe."""
        counts = {v: 0 for v in ("unsafe", "unknown", "safe")}
        for f in self.findings:
            counts[f.verdict] += 1
        head = (
            f"{self.verdict.upper()}: {self.files} file{'s' * (self.files != 1)}, "
            f"{_size(self.bytes)}; findings: {counts['unsafe']} unsafe, "
            f"{counts['unknown']} unknown, {counts['safe']} safe"
        )
        lines = [head]
        for f in sorted(self.findings, key=lambda f: -_RANK[f.verdict]):
            if f.verdict != "safe":
                lines.append(f"  {f.verdict:<7} {f.file}: {f.reason}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as a JSON object (``from_json`` reads it back)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScanReport:
        """Read back what :meth:`to_json` wrote."""
        d = json.loads(text)
        return cls(
            verdict=d["verdict"],
            findings=[Finding(**f) for f in d["findings"]],
            files=int(d["files"]),
            bytes=int(d["bytes"]),
            imports={k: list(v) for k, v in d["imports"].items()},
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    x = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if x < 1024:
            return f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"
