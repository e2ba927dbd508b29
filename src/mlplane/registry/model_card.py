"""Model cards: one per version, in Markdown and HTML, from what the registry knows.

Generated sections (training data, metrics, parameters, signature, scan verdict,
ONNX parity, integrity) come from the version and its lineage; the human
sections (purpose, intended use, limitations, ethical considerations, contact)
are edited through the SDK or CLI. The "Monitoring and fairness" section is
left for the monitoring reports to fill in.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from mlplane.registry.entities import ModelLineage, ModelVersion

_HUMAN = (
    ("purpose", "Purpose"),
    ("intended_use", "Intended use"),
    ("limitations", "Limitations"),
    ("ethical_considerations", "Ethical considerations"),
    ("owner_contact", "Owner and contact"),
)
_MISSING = "_Not written yet: `mlplane models card NAME@V --set {field}=...`_"


@dataclass(frozen=True)
class _Section:
    title: str
    rows: list[tuple[str, str]] | None = None
    text: str | None = None


def _sections(v: ModelVersion, lineage: ModelLineage | None) -> list[_Section]:
    out: list[_Section] = []
    for key, title in _HUMAN:
        out.append(_Section(title, text=v.card.get(key) or _MISSING.format(field=key)))
    out.append(
        _Section(
            "Model",
            rows=[
                ("Version", v.ref),
                ("Flavor", f"{v.flavor} ({v.format})" + (", pickle fallback" if v.pickle else "")),
                ("Aliases", ", ".join(v.aliases) or "none"),
                ("Tags", ", ".join(f"{k}={x}" for k, x in sorted(v.tags.items())) or "none"),
                ("Registered", f"by {v.created_by}"),
                ("Size", f"{v.size:,} bytes in {len(v.files)} files"),
                ("Description", v.description or "-"),
            ],
        )
    )
    data = lineage.datasets if lineage is not None else []
    code = (
        f"{lineage.git_commit[:12]} on {lineage.git_branch or '?'}"
        + (" (uncommitted changes)" if lineage.git_dirty else "")
        if lineage is not None and lineage.git_commit
        else "not recorded"
    )
    out.append(
        _Section(
            "Training",
            rows=[
                ("Run", v.run_id or "not linked to a run"),
                ("Data versions", ", ".join(data) or "none recorded"),
                ("Code", code),
            ],
        )
    )
    out.append(_Section("Metrics", rows=[(k, f"{x:.6g}") for k, x in sorted(v.metrics.items())]))
    out.append(_Section("Parameters", rows=sorted(v.params.items())))
    sig = v.signature or {}
    out.append(
        _Section(
            "Signature",
            rows=[(c["name"], c["type"]) for c in sig.get("inputs", [])]
            if sig
            else [("inputs", "not recorded (register with an input example)")],
        )
    )
    onnx = v.onnx or {}
    parity = onnx.get("parity_max_abs_diff")
    out.append(
        _Section(
            "Security and integrity",
            rows=[
                (
                    "Scan verdict",
                    v.scan_verdict
                    + (f" (accepted by {v.scan_override})" if v.scan_override else ""),
                ),
                ("Manifest SHA-256", v.manifest_sha256),
                ("Signed by", v.signed_by or "unsigned"),
                (
                    "ONNX",
                    f"converted, max abs difference {parity:.3g} on the input example"
                    if parity is not None
                    else str(onnx.get("reason", "not converted")),
                ),
            ],
        )
    )
    out.append(
        _Section(
            "Monitoring and fairness",
            text="_Filled in by monitoring and fairness reports once the model is served._",
        )
    )
    return out


def markdown(v: ModelVersion, lineage: ModelLineage | None = None) -> str:
    """The card as Markdown."""
    lines = [f"# Model card: {v.ref}", ""]
    for sec in _sections(v, lineage):
        lines += [f"## {sec.title}", ""]
        if sec.text is not None:
            lines += [sec.text, ""]
        if sec.rows is not None:
            if not sec.rows:
                lines += ["_none_", ""]
                continue
            lines += ["| | |", "|---|---|"]
            lines += [f"| {k} | {str(val).replace('|', '/')} |" for k, val in sec.rows]
            lines.append("")
    return "\n".join(lines)


def to_html(v: ModelVersion, lineage: ModelLineage | None = None) -> str:
    """The card as a standalone HTML page (values escaped)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Model card: {e(v.ref)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;"
        "padding:0 1rem}table{border-collapse:collapse}td{border:1px solid #ddd;"
        "padding:.3rem .6rem;vertical-align:top}td:first-child{font-weight:600}</style>",
        f"</head><body><h1>Model card: {e(v.ref)}</h1>",
    ]
    for sec in _sections(v, lineage):
        parts.append(f"<h2>{e(sec.title)}</h2>")
        if sec.text is not None:
            parts.append(f"<p>{e(sec.text.strip('_'))}</p>")
        if sec.rows is not None:
            body = "".join(f"<tr><td>{e(k)}</td><td>{e(str(x))}</td></tr>" for k, x in sec.rows)
            parts.append(f"<table>{body}</table>" if body else "<p>none</p>")
    parts.append("</body></html>")
    return "".join(parts)
