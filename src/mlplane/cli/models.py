"""``mlplane models …``: the model registry, one client call per command."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from mlplane.cli import keys as keys_cli
from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    fmt_size,
    fmt_time,
    info,
    print_json,
)
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT
from mlplane.registry.entities import ModelVersion

app = typer.Typer(no_args_is_help=True)
ProjectOption = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Project of the model.")
_VERDICT_STYLE = {"safe": "green", "unsafe": "red", "unknown": "yellow"}


def _verdict(v: str) -> Text:
    return Text(v, style=_VERDICT_STYLE.get(v, ""))


def _versions_table(title: str, versions: list[ModelVersion]) -> Table:
    table = Table(title=title, title_justify="left")
    for head in ("Version", "Aliases", "Flavor", "Scan", "Signed", "Metrics", "Run", "Created"):
        table.add_column(head, justify="right" if head == "Version" else "left")
    for v in versions:
        metrics = ", ".join(f"{k}={x:.4g}" for k, x in sorted(v.metrics.items())[:4])
        table.add_row(
            *cells(v.version, ", ".join(v.aliases), f"{v.flavor}/{v.format}"),
            _verdict(v.scan_verdict),
            *cells(
                "yes" if v.signed_by else "",
                metrics,
                (v.run_id or "")[:8],
                fmt_time(v.created_at),
            ),
        )
    return table


@app.command("ls")
def ls(ctx: typer.Context, project: str = ProjectOption, as_json: bool = JsonOption) -> None:
    """Registered models with their newest version and aliases."""
    models = client(ctx).transport.list_models(project=project)
    if as_json:
        print_json(models)
        return
    table = Table(title="Models", title_justify="left")
    for head in ("Name", "Latest", "Aliases", "Protected", "Owner", "Updated"):
        table.add_column(head)
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(
            *cells(
                m.name,
                m.latest_version,
                aliases,
                ", ".join(m.protected_aliases),
                m.owner,
                fmt_time(m.updated_at),
            )
        )
    console().print(table)


@app.command("versions")
def versions(
    ctx: typer.Context, name: str, project: str = ProjectOption, as_json: bool = JsonOption
) -> None:
    """Every version of a model, newest first."""
    found = client(ctx).transport.model_versions(name, project=project)
    if as_json:
        print_json(found)
        return
    console().print(_versions_table(f"Versions of {name}", found))


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION, NAME@ALIAS or models:/…"),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """A model (its versions and policy) or one version in detail."""
    transport = client(ctx).transport
    if "@" not in ref and "/" not in ref:
        model = transport.get_model(ref, project=project)
        found = transport.model_versions(ref, project=project)
        if as_json:
            print_json({"model": model, "versions": found})
            return
        pol = model.policy
        rules = ", ".join(str(r) for r in pol.rules) or "none"
        info(
            f"{model.name}: owner {model.owner}; protected aliases: "
            f"{', '.join(model.protected_aliases) or 'none'}; policy: scan must be safe="
            f"{pol.require_safe_scan}, rules: {rules}"
            + (f", must beat the holder on {pol.beat_champion}" if pol.beat_champion else "")
        )
        console().print(_versions_table(f"Versions of {ref}", found))
        return
    v = transport.get_model_version(ref, project=project)
    if as_json:
        print_json(v)
        return
    console().print(_versions_table(v.ref, [v]))
    files = Table(title="Files", title_justify="left")
    for head in ("Path", "Size", "SHA-256"):
        files.add_column(head, justify="right" if head == "Size" else "left")
    for f in v.files:
        files.add_row(*cells(f.path, fmt_size(f.size), f.sha256[:16]))
    console().print(files)
    if v.signature:
        sig = Table(title="Signature (inputs)", title_justify="left")
        sig.add_column("Column")
        sig.add_column("Type")
        for c in v.signature.get("inputs", []):
            sig.add_row(*cells(c["name"], c["type"]))
        console().print(sig)
    parity = (v.onnx or {}).get("parity_max_abs_diff")
    info(
        f"manifest {v.manifest_sha256[:16]}…, "
        + (f"signed by {v.signed_by}" if v.signed_by else "unsigned")
        + (f"; ONNX parity {parity:.3g}" if parity is not None else "")
        + ("; stored with pickle (scanned)" if v.pickle else "")
    )


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: str,
    version: int,
    to: str = typer.Option("champion", "--to", help="Alias to point at the version."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Point an alias at a version (protected aliases: approver role and the policy)."""
    v = client(ctx).transport.set_model_alias(name, to, version, project=project)
    if as_json:
        print_json(v)
        return
    info(f"{name}@{to} -> version {v.version}")


@app.command("tag")
def tag(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="e.g. fraud@3"),
    pairs: list[str] = typer.Argument(..., help="KEY=VALUE (one or more)"),
    project: str = ProjectOption,
) -> None:
    """Tag a version."""
    transport = client(ctx).transport
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidInput(f"{pair!r}: write KEY=VALUE")
        transport.set_model_tag(ref, key, value, project=project)
    info(f"{ref}: tagged {', '.join(pairs)}")


@app.command("unalias")
def unalias(ctx: typer.Context, name: str, alias: str, project: str = ProjectOption) -> None:
    """Remove an alias."""
    client(ctx).transport.delete_model_alias(name, alias, project=project)
    info(f"{name}@{alias} removed")


@app.command("policy")
def policy(
    ctx: typer.Context,
    name: str,
    rule: list[str] = typer.Option(
        [], "--rule", "-r", help="A metric rule, e.g. 'auc >= 0.9' (repeatable)."
    ),
    beat: str | None = typer.Option(None, "--beat", help="Metric to beat the alias holder on."),
    lower_is_better: bool = typer.Option(False, "--lower-is-better"),
    allow_unsafe_scan: bool = typer.Option(
        False, "--no-safe-scan", help="Do not require a 'safe' scan verdict."
    ),
    protect: list[str] = typer.Option(
        [], "--protect", help="Aliases the policy protects (default: champion)."
    ),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Set the promotion policy of a model (approver role)."""
    spec = {
        "rules": rule,
        "beat_champion": beat,
        "higher_is_better": not lower_is_better,
        "require_safe_scan": not allow_unsafe_scan,
    }
    m = client(ctx).transport.set_model_policy(name, spec, protect or None, project=project)
    if as_json:
        print_json(m)
        return
    info(f"{name}: policy set; protected aliases: {', '.join(m.protected_aliases)}")


@app.command("card")
def card(
    ctx: typer.Context,
    ref: str,
    set_field: list[str] = typer.Option(
        [], "--set", help="FIELD=TEXT for purpose, intended_use, limitations, … (repeatable)."
    ),
    html: bool = typer.Option(False, "--html", help="HTML instead of Markdown."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to a file."),
    project: str = ProjectOption,
) -> None:
    """Print (or write) a version's model card; --set edits its human fields."""
    from mlplane import registry

    client(ctx)
    if set_field:
        fields = {}
        for item in set_field:
            key, eq, text = item.partition("=")
            if not eq:
                raise InvalidInput(f"--set {item!r}: write FIELD=TEXT")
            fields[key.strip()] = text
        registry.update_card(ref, project=project, **fields)
    text = registry.card(ref, fmt="html" if html else "markdown", project=project)
    if out is not None:
        tmp = out.with_name(f".{out.name}.part")
        tmp.write_text(text)
        tmp.replace(out)
        info(f"wrote {out}")
        return
    console().print(text, markup=False, highlight=False)


@app.command("lineage")
def lineage(
    ctx: typer.Context, ref: str, project: str = ProjectOption, as_json: bool = JsonOption
) -> None:
    """version → run → params/metrics → dataset versions → code commit."""
    lin = client(ctx).transport.model_lineage(ref, project=project)
    if as_json:
        print_json(lin)
        return
    v = lin.version
    info(f"{v.ref} ({v.flavor}, scan {v.scan_verdict})")
    info(f"  run: {lin.run_id or 'none'}" + (f" ({lin.run_name})" if lin.run_name else ""))
    info(f"  data: {', '.join(lin.datasets) or 'no dataset inputs logged'}")
    commit = lin.git_commit[:12] if lin.git_commit else "not recorded"
    dirty = " (dirty)" if lin.git_dirty else ""
    info(f"  code: {commit}{' on ' + lin.git_branch if lin.git_branch else ''}{dirty}")
    table = Table(title="Params and metrics", title_justify="left")
    table.add_column("Name")
    table.add_column("Value")
    for k, val in sorted(lin.params.items()):
        table.add_row(*cells(f"param {k}", val))
    for k, x in sorted(lin.metrics.items()):
        table.add_row(*cells(f"metric {k}", f"{x:.6g}"))
    console().print(table)


@app.command("scan")
def scan(
    path: Path = typer.Argument(..., help="A model file or folder."),
    strict: bool = typer.Option(False, "--strict", help="Unknown imports count as unsafe."),
    as_json: bool = JsonOption,
) -> None:
    """Scan files for code that would run when loaded. Exit 0 safe, 1 unsafe, 2 unknown."""
    from mlplane.registry.scan import scan_path

    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    report = scan_path(path, strict=strict)
    if as_json:
        print_json(json.loads(report.to_json()))
    else:
        table = Table(title=f"{path}: {report.verdict}", title_justify="left")
        for head in ("File", "Import", "Verdict", "Reason"):
            table.add_column(head)
        for f in report.findings:
            table.add_row(*cells(f.file, f"{f.module}.{f.name}"), _verdict(f.verdict), f.reason)
        console().print(table)
        info(f"{report.files} files, {fmt_size(report.bytes)} scanned: {report.verdict}")
    raise typer.Exit({"safe": 0, "unsafe": 1}.get(report.verdict, 2))


@app.command("keygen")
def keygen(
    ctx: typer.Context,
    required: bool = typer.Option(False, "--required", help="Refuse unsigned versions on load."),
    project: str = ProjectOption,
) -> None:
    """Give the project an Ed25519 signing key (project admin)."""
    key = client(ctx).transport.create_signing_key(project=project, required=required)
    info(f"project {project}: new versions are signed with {key}")


@app.command("package")
def package(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="e.g. fraud@champion"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the bundle into."),
    k8s: bool = typer.Option(False, "--k8s", help="Also write Kubernetes manifests."),
    image: str | None = typer.Option(None, "--image", help="Container image name."),
    replicas: int = typer.Option(2, "--replicas"),
    cpu: str = typer.Option("500m", "--cpu"),
    memory: str = typer.Option("1Gi", "--memory"),
    port: int = typer.Option(8080, "--port"),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """A self-contained bundle: model, exact requirements, Dockerfile, SBOM (and k8s)."""
    from mlplane import registry

    client(ctx)
    summary = registry.bundle(
        ref,
        out,
        k8s=k8s,
        project=project,
        image=image,
        replicas=replicas,
        cpu=cpu,
        memory=memory,
        port=port,
    )
    if as_json:
        print_json(summary)
        return
    info(f"{ref} packaged into {out}: {', '.join(sorted(summary.get('files', {})))}")


@app.command("export")
def export(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="e.g. fraud@3"),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write, e.g. model.onnx"),
    quantize: bool = typer.Option(False, "--quantize", help="Dynamic int8 quantization."),
    data: str | None = typer.Option(
        None, "--data", help="Dataset version to measure the accuracy change on, e.g. holdout@2."
    ),
    target: str | None = typer.Option(None, "--target", help="Label column of --data."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Export a version for the edge: ONNX, optionally quantized (size and accuracy change)."""
    from mlplane import registry

    if fmt != "onnx":
        raise InvalidInput(f"--format {fmt!r}: only onnx is supported")
    client(ctx)
    report = registry.export_onnx(
        ref, out, quantize=quantize, data=data, target=target, project=project
    )
    if as_json:
        print_json(report)
        return
    if quantize:
        before, after = report.get("size_before", 0), report.get("size_after", 0)
        diff = report.get("max_abs_diff")
        info(
            f"wrote {out}: {fmt_size(before)} -> {fmt_size(after)}"
            + (f", max output change {diff:.3g}" if diff is not None else "")
            + (
                f", accuracy on {data} {report['accuracy_before']:.4f} -> "
                f"{report['accuracy_after']:.4f}"
                if "accuracy_after" in report
                else ""
            )
        )
    else:
        info(f"wrote {out} ({fmt_size(report.get('size'))})")


@app.command("serve")
def serve(
    folder: Path = typer.Argument(..., help="A model bundle or version folder."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    workers: int = typer.Option(1, "--workers"),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Bind a non-loopback address (e.g. in a container)."
    ),
) -> None:
    """Serve one model over HTTP: /predict, /healthz, /readyz (see mlplane.serving)."""
    from mlplane.serving import serve as run

    run(folder, host=host, port=port, workers=workers, allow_remote=allow_remote)


@app.command("rm")
def rm(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION"),
    project: str = ProjectOption,
    shred: bool = keys_cli.ShredOption,
) -> None:
    """Delete a model version on this machine's store (see delete_version)."""
    keys_cli.remove_version(ctx, "models", ref, project, shred)
