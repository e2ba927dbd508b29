"""``mlplane deploy …``: deployments, their traffic and rollouts, one client call per command.

Predictions are answered by ``mlplane serve``, which hosts every deployment of the store
and picks up each change made here within its poll interval.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from mlplane.cli import deploy_captures
from mlplane.cli._common import JsonOption, cells, client, console, fmt_time, info, print_json
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT
from mlplane.serving.entities import Deployment, DeploymentStatus

app = typer.Typer(no_args_is_help=True)
ProjectOption = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Project of the deployment.")
ModelOption = typer.Option(..., "--model", "-m", help="NAME@ALIAS or NAME@VERSION to serve.")
_SPARK = "▁▂▃▄▅▆▇█"
app.command("captures")(deploy_captures.captures)


def _t(ctx: typer.Context) -> Any:
    return client(ctx).transport


def _split_text(d: Deployment) -> str:
    parts = [f"v{v}: {pct:.0f}%" for v, pct in d.routing.percents().items()]
    if d.routing.shadow is not None:
        parts.append(f"shadow v{d.routing.shadow.version}: {d.routing.shadow.percent:g}%")
    return ", ".join(parts)


def _done(d: Deployment, what: str, as_json: bool) -> None:
    if as_json:
        print_json(d)
    else:
        info(f"{d.name} {what} (generation {d.generation}): {_split_text(d)}")


def _parse_seconds(text: str) -> float:
    from mlplane.serving._rollouts import parse_interval

    return parse_interval(text)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Deployment name."),
    model: str = ModelOption,
    batching: str = typer.Option("auto", help="Micro-batching: auto, on or off."),
    max_batch_size: int = typer.Option(64, help="Rows per micro-batch at most."),
    max_wait_ms: float = typer.Option(2.0, help="How long a request waits for batch-mates."),
    capture: float = typer.Option(0.0, help="Percent of requests whose payloads are captured."),
    sensitive: str = typer.Option("", help="Input fields masked in captures (comma-separated)."),
    min_replicas: int = typer.Option(1, help="0 lets the model scale to zero when idle."),
    max_replicas: int | None = typer.Option(None, help="Worker processes hosting it at most."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Deploy a model version; all traffic goes to the version MODEL points at now."""
    config = {
        "batching": batching,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "capture_percent": capture,
        "sensitive": [s.strip() for s in sensitive.split(",") if s.strip()],
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
    }
    d = _t(ctx).create_deployment(name, model, config=config, project=project)
    _done(d, "created", as_json)


@app.command("ls")
def ls(ctx: typer.Context, project: str = ProjectOption, as_json: bool = JsonOption) -> None:
    """Deployments with their traffic split and rollout."""
    deployments = _t(ctx).list_deployments(project=project)
    if as_json:
        print_json(deployments)
        return
    table = Table(title="Deployments", title_justify="left")
    for head in ("Name", "Model", "Split", "Mode", "Rollout", "Generation", "Updated"):
        table.add_column(head)
    for d in deployments:
        rollout = d.rollout
        table.add_row(
            *cells(
                d.name,
                d.model_ref,
                _split_text(d),
                d.routing.mode,
                f"{rollout.status} v{rollout.canary_version}" if rollout else "",
                d.generation,
                fmt_time(d.updated_at),
            )
        )
    console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """A deployment's split, settings and latest rollout."""
    d = _t(ctx).get_deployment(name, project=project)
    if as_json:
        print_json(d)
        return
    table = Table(title=f"Deployment {d.name}", title_justify="left", show_header=False)
    table.add_column("Field")
    table.add_column("Value")
    rows: list[tuple[str, Any]] = [
        ("model", d.model_ref),
        ("split", _split_text(d)),
        ("mode", d.routing.mode),
        ("sticky header", d.routing.sticky_header or ""),
        ("generation", d.generation),
        ("created", f"{fmt_time(d.created_at)} by {d.created_by}"),
        ("updated", f"{fmt_time(d.updated_at)} by {d.updated_by}"),
    ]
    rows += [(k, v) for k, v in d.config.to_dict().items()]
    if d.rollout is not None:
        r = d.rollout
        rows.append(
            (
                "rollout",
                f"{r.status}: v{r.stable_version} → v{r.canary_version}, "
                f"step {r.step_index + 1}/{len(r.steps)}",
            )
        )
    for key, value in rows:
        table.add_row(*cells(key, value))
    console().print(table)


@app.command("config")
def config(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    settings: list[str] = typer.Option(
        ..., "--set", help="KEY=VALUE, e.g. --set max_wait_ms=5 --set capture_percent=10."
    ),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Change serving settings (batching, capture, replicas, shadow timeout)."""
    import json

    changes: dict[str, Any] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set {item!r}: use KEY=VALUE")
        try:
            changes[key.strip()] = json.loads(raw)
        except ValueError:
            changes[key.strip()] = raw
        if key.strip() == "sensitive" and isinstance(changes["sensitive"], str):
            changes["sensitive"] = [s for s in changes["sensitive"].split(",") if s]
    d = _t(ctx).configure_deployment(name, changes, project=project)
    _done(d, "reconfigured", as_json)


@app.command("canary")
def canary(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    model: str = ModelOption,
    steps: str = typer.Option("10,25,50,100", help="The canary's percent of traffic per step."),
    interval: str = typer.Option("60s", help="How long each step runs before its check."),
    max_error_rate: float | None = typer.Option(None, help="e.g. 0.01 for 1%."),
    max_p99_ms: float | None = typer.Option(None, help="Highest p99 latency allowed."),
    max_p99_ratio: float | None = typer.Option(None, help="Canary p99 / stable p99 at most."),
    max_prediction_shift: float | None = typer.Option(
        None, help="Largest shift of the prediction distribution from stable's."
    ),
    shift_method: str = typer.Option("psi", help="psi or js (Jensen-Shannon distance)."),
    min_requests: int = typer.Option(50, help="Fewer canary requests make a check wait."),
    failure_limit: int = typer.Option(2, help="Failed checks that roll the canary back."),
    promote: bool = typer.Option(True, help="Move the deployment's alias after the last step."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Start a canary rollout judged on live traffic; it promotes or rolls itself back."""
    try:
        step_list = [float(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise InvalidInput(f"--steps {steps!r}: use percents such as 10,25,50,100") from None
    thresholds = {
        "max_error_rate": max_error_rate,
        "max_p99_ms": max_p99_ms,
        "max_p99_ratio": max_p99_ratio,
        "max_prediction_shift": max_prediction_shift,
        "shift_method": shift_method,
        "min_requests": min_requests,
    }
    d = _t(ctx).start_canary(
        name,
        model,
        steps=step_list,
        interval=interval,
        thresholds=thresholds,
        failure_limit=failure_limit,
        promote=promote,
        project=project,
    )
    _done(d, "canary started", as_json)


@app.command("shadow")
def shadow(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    model: str | None = typer.Option(None, "--model", "-m", help="Version to mirror traffic to."),
    percent: float = typer.Option(..., help="Percent of requests mirrored; 0 stops mirroring."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Mirror a percent of requests to another version; its answers are logged, not sent."""
    if percent > 0 and not model:
        raise InvalidInput("--model is needed to start mirroring (or --percent 0 to stop)")
    d = _t(ctx).set_shadow(name, model, percent, project=project)
    _done(d, "shadow set" if percent > 0 else "shadow stopped", as_json)


@app.command("ab")
def ab(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    variants: str = typer.Option(
        ..., help="REF:WEIGHT,… e.g. fraud@3:50,fraud@4:50 (control first)."
    ),
    sticky_header: str | None = typer.Option(None, help="Keep each caller on one variant."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Split traffic between versions for an A/B experiment."""
    parsed: list[tuple[str, float]] = []
    for item in variants.split(","):
        ref, sep, weight = item.strip().rpartition(":")
        try:
            parsed.append((ref, float(weight)))
        except ValueError:
            sep = ""
        if not sep or not ref:
            raise InvalidInput(f"--variants: {item!r} is not REF:WEIGHT (e.g. fraud@3:50)")
    d = _t(ctx).start_ab(name, parsed, sticky_header=sticky_header, project=project)
    _done(d, "A/B experiment started", as_json)


@app.command("route")
def route(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    model: str = typer.Argument(..., help="NAME@VERSION or NAME@ALIAS to send all traffic to."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Send all live traffic to one version (ends an A/B experiment)."""
    _done(_t(ctx).route_deployment(name, model, project=project), "routed", as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Undo the last traffic change; a running canary goes back to stable at once."""
    _done(_t(ctx).rollback_deployment(name, project=project), "rolled back", as_json)


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Promote the running (or blocked) canary now, through the registry's approval rules."""
    _done(_t(ctx).promote_deployment(name, project=project), "promoted", as_json)


@app.command("rm")
def rm(ctx: typer.Context, name: str = typer.Argument(...), project: str = ProjectOption) -> None:
    """Delete a deployment (its history stays in the audit log)."""
    _t(ctx).delete_deployment(name, project=project)
    info(f"deleted deployment {name}")


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Every change of the deployment, oldest first."""
    events = _t(ctx).deployment_history(name, project=project)
    if as_json:
        print_json(events)
        return
    table = Table(title=f"History of {name}", title_justify="left")
    for head in ("Gen", "Time", "Actor", "Action", "Split", "Details"):
        table.add_column(head)
    for e in events:
        split = ", ".join(f"v{v}: {p:.0f}%" for v, p in e.routing.percents().items())
        details = ", ".join(
            f"{k}={v}" for k, v in e.details.items() if k in ("model", "version", "reason", "step")
        )
        table.add_row(*cells(e.generation, fmt_time(e.time), e.actor, e.action, split, details))
    console().print(table)


def _sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, int(v / top * (len(_SPARK) - 1)))] for v in values)


def _status_tables(st: DeploymentStatus, points: list[dict[str, Any]]) -> list[Any]:
    d = st.deployment
    out: list[Any] = [
        Text.assemble(
            (f"{d.name}", "bold"),
            f"  {d.model_ref}  generation {d.generation}  mode {d.routing.mode}\n",
            f"split: {_split_text(d)}",
            f"   sticky: {d.routing.sticky_header}" if d.routing.sticky_header else "",
        )
    ]
    traffic = Table(title="Traffic in the window", title_justify="left")
    for head in (
        "Version",
        "Kind",
        "Requests",
        "Errors",
        "Error rate",
        "Rejected",
        "p50 ms",
        "p99 ms",
        "Mean batch",
        "Requests/min (1 h)",
    ):
        traffic.add_column(head, justify="left" if head in ("Kind",) else "right")
    for t in st.traffic:
        series = [
            p["requests"] for p in points if p["version"] == t.version and p["kind"] == t.kind
        ]
        traffic.add_row(
            *cells(
                t.version,
                t.kind,
                t.requests,
                t.errors,
                f"{100 * t.error_rate:.2f}%",
                t.rejected,
                f"{t.p50_ms:.1f}" if t.p50_ms is not None else "",
                f"{t.p99_ms:.1f}" if t.p99_ms is not None else "",
                f"{t.mean_batch:.1f}" if t.mean_batch else "",
                _sparkline(series),
            )
        )
    out.append(traffic)
    r = d.rollout
    if r is not None:
        roll = Table(
            title=f"Rollout {r.rollout_id}: v{r.stable_version} → v{r.canary_version} "
            f"({r.canary_ref}) {r.status}, step {r.step_index + 1}/{len(r.steps)} at "
            f"{r.percent:g}%, failures {r.failures}/{r.failure_limit}"
            + (f": {r.reason}" if r.reason else ""),
            title_justify="left",
        )
        for head in (
            "Time",
            "Step",
            "%",
            "Verdict",
            "Stable req",
            "Canary req",
            "Canary err",
            "Canary p99",
            "Shift",
            "Breaches",
        ):
            roll.add_column(head)
        for c in r.checks[-10:]:
            verdict = c.get("verdict", "")
            style = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
            shift = c.get("shift")
            roll.add_row(
                *cells(fmt_time(c.get("time")), int(c.get("step", 0)) + 1, c.get("percent")),
                Text(verdict, style=style),
                *cells(
                    c.get("stable_requests"),
                    c.get("canary_requests"),
                    f"{100 * (c.get('canary_error_rate') or 0):.2f}%",
                    f"{c['canary_p99_ms']:.1f}" if c.get("canary_p99_ms") is not None else "",
                    f"{shift:.3f}" if isinstance(shift, float) else "",
                    "; ".join(c.get("breaches") or []),
                ),
            )
        out.append(roll)
    if st.workers:
        workers = Table(title="Workers", title_justify="left")
        for head in ("Worker", "PID", "Ready", "In flight", "Versions", "Cold start ms"):
            workers.add_column(head)
        for w in st.workers:
            workers.add_row(
                *cells(
                    w["worker"],
                    w["pid"],
                    w.get("ready"),
                    w.get("inflight"),
                    ", ".join(str(v) for v in w.get("versions") or []),
                    w.get("cold_start_ms") or "",
                )
            )
        out.append(workers)
    else:
        out.append(Text("no `mlplane serve` worker hosts this deployment right now", "yellow"))
    return out


@app.command("status")
def status(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    window: str = typer.Option("5m", help="Traffic over this last period (30s, 5m, 1h)."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Split, rollout progress with each check, per-version traffic and the workers."""
    t = _t(ctx)
    st = t.deployment_status(name, window_s=_parse_seconds(window), project=project)
    points = t.deployment_timeline(name, since_s=3600.0, bucket_s=60.0, project=project)
    if as_json:
        print_json({"status": st, "timeline": points})
        return
    for part in _status_tables(st, points):
        console().print(part)


@app.command("ab-report")
def ab_report(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    since: str | None = typer.Option(
        None, help="Only this last period (default: since the split)."
    ),
    alpha: float = typer.Option(0.05, help="Significance level."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Compare the variants: traffic, outcomes and each difference with its confidence
    interval, p-value and whether the sample is large enough."""
    since_s = _parse_seconds(since) if since else None
    report = _t(ctx).ab_report(name, since_s=since_s, alpha=alpha, project=project)
    if as_json:
        print_json(report)
        return
    table = Table(
        title=f"A/B report of {name} (control v{report['control']})", title_justify="left"
    )
    for head in (
        "Version",
        "%",
        "Requests",
        "Error rate",
        "p50 ms",
        "p99 ms",
        "Feedback",
        "Mean outcome",
        "Accuracy",
    ):
        table.add_column(head, justify="right")
    for v in report["variants"]:
        table.add_row(
            *cells(
                v["version"],
                f"{v['percent']:.0f}",
                v["requests"],
                f"{100 * v['error_rate']:.2f}%",
                f"{v['p50_ms']:.1f}" if v["p50_ms"] is not None else "",
                f"{v['p99_ms']:.1f}" if v["p99_ms"] is not None else "",
                v["feedback"],
                f"{v['mean_outcome']:.4g}" if v["mean_outcome"] is not None else "",
                f"{v['accuracy']:.3f}" if v["accuracy"] is not None else "",
            )
        )
    console().print(table)
    comp = Table(title="Differences (variant - control)", title_justify="left")
    for head in (
        "Variant",
        "Metric",
        "Control",
        "Variant value",
        "Difference",
        "95% CI",
        "p-value",
        "Significant",
        "Enough data",
    ):
        comp.add_column(head)
    for c in report["comparisons"]:
        needed = c.get("required_n_per_variant")
        enough = (
            "yes"
            if c.get("sample_size_ok")
            else (f"no (need {needed}/variant)" if needed else "no")
        )
        comp.add_row(
            *cells(
                c["variant"],
                c["metric"],
                f"{c['a']:.4g}",
                f"{c['b']:.4g}",
                f"{c['difference']:+.4g}",
                f"[{c['ci_low']:+.4g}, {c['ci_high']:+.4g}]",
                f"{c['p_value']:.3g}",
                "yes" if c["significant"] else "no",
                enough,
            )
        )
    console().print(
        comp
        if report["comparisons"]
        else Text(
            "no comparison yet: each variant needs traffic (and feedback for outcomes)", "yellow"
        )
    )


@app.command("feedback")
def feedback(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    request_id: str = typer.Option(..., help="The X-Request-Id the answer carried."),
    label: str = typer.Option(..., help='The ground truth, as JSON (1, "fraud", 0.5).'),
    project: str = ProjectOption,
) -> None:
    """Record the ground truth of an answered request."""
    import json

    try:
        value = json.loads(label)
    except ValueError:
        value = label
    _t(ctx).record_feedback(name, request_id, value, project=project)
    info(f"feedback recorded for {request_id}")
