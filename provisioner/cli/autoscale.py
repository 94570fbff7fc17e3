"""``provision autoscale``: policies per cluster, the scheduled/demand-driven job, and why it did what it did."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from provisioner.cli.common import OutputFormat, OutputOption, emit, lifecycle, message, state
from provisioner.cli.render import human, plural, table
from provisioner.errors import OperationFailed, ProvisionError

if TYPE_CHECKING:
    from provisioner.autoscale.job import AutoscaleJob, TickOutcome
    from provisioner.lifecycle import Lifecycle

app = typer.Typer(help="Grow and shrink clusters between bounds, on a schedule and on demand.", no_args_is_help=True)


@app.command()
def enable(
    ctx: typer.Context,
    name: str,
    policy: Path = typer.Option(..., "--policy", "-p", help="The policy file (YAML) to keep for this cluster."),
    output: OutputFormat = OutputOption,
) -> None:
    """Validate a policy file and make the cluster managed by the job."""
    from provisioner.autoscale import job

    settings = state(ctx).settings
    lc = lifecycle(ctx)
    lc.record(name)  # the cluster must exist
    parsed = job.enable(settings.home, name, policy)
    emit(
        {"cluster": name, "policy": parsed.to_dict(), "path": str(job.policy_path(settings.home, name))},
        output,
        f"{name}: autoscaled between {parsed.min_workers} and {parsed.max_workers} workers "
        f"({plural(len(parsed.schedules), 'schedule entry', 'schedule entries')}, "
        f"demand rules {'on' if parsed.demand else 'off'})",
    )


@app.command()
def disable(ctx: typer.Context, name: str) -> None:
    """Stop managing the cluster (its policy file is removed; its decision log stays)."""
    from provisioner.autoscale import job

    removed = job.disable(state(ctx).settings.home, name)
    message(f"{name}: {'no longer autoscaled' if removed else 'was not autoscaled'}")


@app.command("check")
def check_policy(
    policy: Path = typer.Argument(..., help="A policy file to validate."),
    output: OutputFormat = OutputOption,
) -> None:
    """Validate a policy file (exit 2 with the field named when it is wrong)."""
    from provisioner.autoscale import load_policy

    parsed = load_policy(policy)
    emit(parsed.to_dict(), output, f"{policy}: valid")


def _sources(lc: Lifecycle) -> dict[str, Any]:
    from provisioner import tosca
    from provisioner.addons import Stack
    from provisioner.autoscale.signals import KubernetesSource, OscarSource

    stack = Stack(lc)

    def oscar_url(cluster: str) -> str:
        url = lc.outputs(cluster).get("oscar_endpoint")
        if not url:
            raise OperationFailed("the cluster has no oscar_endpoint output")
        return str(url)

    def oscar_password(cluster: str) -> str:
        value = tosca.SecretStore(lc.home, cluster).get("oscar_password")
        if not value:
            raise OperationFailed("no oscar_password kept for this cluster")
        return value

    return {
        "kubernetes": KubernetesSource(stack, verify=not lc.settings.insecure),
        "oscar": OscarSource(oscar_url, oscar_password, verify=lc.settings.verify),
    }


def _outcome_line(o: TickOutcome) -> str:
    tag = "(dry run) " if o.dry_run and o.action in ("scale_up", "scale_down") else ""
    counts = f"{o.current} -> {o.target}" if o.current is not None else "-"
    removed = f" removing {', '.join(o.remove)}" if o.remove else ""
    return f"{o.cluster}: {tag}{o.action} {counts}{removed} [{o.rule}] {o.reason}"


@app.command()
def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One tick, then exit (for cron, systemd timers, CronJobs)."),
    interval: float = typer.Option(60.0, "--interval", help="Seconds between ticks (without --once)."),
    clusters: list[str] = typer.Option([], "--cluster", "-c", help="Only this cluster (repeatable)."),
    policy: Path | None = typer.Option(None, "--policy", help="Use this policy file for the --cluster clusters."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and log, but do not scale."),
    concurrency: int = typer.Option(8, "--concurrency", help="Clusters evaluated at once."),
    output: OutputFormat = OutputOption,
) -> None:
    """Evaluate every managed cluster: decide from the policy, IM's live count and the signals; then scale."""
    from provisioner.autoscale import load_policy
    from provisioner.autoscale.job import AutoscaleJob
    from provisioner.errors import InputError

    if interval <= 0:
        raise InputError(f"must be > 0, got {interval:g}", field="--interval")
    override = load_policy(policy) if policy is not None else None
    lc = lifecycle(ctx)
    try:
        job = AutoscaleJob(lc, sources=_sources(lc), concurrency=concurrency, dry_run=dry_run, policy_override=override)
        if once:
            outcomes = job.tick(clusters)
            _report(outcomes, output)
            errors = [o for o in outcomes if o.action == "error"]
            if errors:
                raise OperationFailed(
                    f"{len(errors)} of {len(outcomes)} clusters could not be evaluated",
                    hint="see: provision autoscale explain NAME",
                )
            return
        _loop(job, clusters, interval, output)
    finally:
        lc.close()


def _outcome_row(o: TickOutcome) -> tuple[str, str, str, list[str], str, str]:
    tag = " (dry run)" if o.dry_run and o.action in ("scale_up", "scale_down") else ""
    counts = f"{o.current} -> {o.target}" if o.current is not None else "-"
    return (o.cluster, o.action + tag, counts, o.remove, o.rule, o.reason)


def _report(outcomes: list[TickOutcome], output: OutputFormat) -> None:
    emit(
        [o.as_dict() for o in outcomes],
        output,
        lambda: table(
            ["CLUSTER", "ACTION", "WORKERS", "REMOVE", "RULE", "REASON"],
            [_outcome_row(o) for o in outcomes],
            empty="no managed clusters (see: provision autoscale enable)",
        ),
    )


def _stream(outcomes: list[TickOutcome], output: OutputFormat) -> None:
    """A loop tick's decisions on stdout as they are made: one line each (text), or one JSON object a line (JSON
    lines, ``-o json``); flushed, so a pipe sees every tick when it ends. Log lines (a failed tick) go to stderr."""
    for o in outcomes:
        line = json.dumps(o.as_dict(), default=str) if output is OutputFormat.json else _outcome_line(o)
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _loop(job: AutoscaleJob, clusters: list[str], interval: float, output: OutputFormat) -> None:
    """Tick every ``interval`` seconds until SIGTERM/SIGINT; a tick in progress is finished first.

    A first tick that fails ends the command with its exit code (a bad ``--cluster``, no IM configured); a later one
    is reported on stderr and the loop goes on (e.g. a ``--cluster`` destroyed meanwhile): the next tick may do.
    Decisions go to stdout, like ``--once``'s (see :func:`_stream`)."""
    stop = threading.Event()

    def request_stop(signum: int, _: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    first = True
    while not stop.is_set():
        started = time.monotonic()
        try:
            outcomes = job.tick(clusters)
        except ProvisionError as exc:
            if first:
                raise
            message(f"autoscale: this tick failed: {exc}" + (f" ({exc.hint})" if exc.hint else ""))
        else:
            _stream(outcomes, output)
        first = False
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


@app.command()
def explain(
    ctx: typer.Context,
    name: str,
    last: int = typer.Option(5, "--last", "-n", help="How many decisions to show (newest last)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Why the last decisions were what they were: the signals read, the rule that matched, the action."""
    from provisioner.autoscale.job import explain as read

    entries = read(state(ctx).settings.home, name, limit=last)
    if not entries:
        # A cluster never recorded is an unknown name, as for every other command (a destroyed cluster keeps its
        # decision log, so one with decisions is explained even when the registry has forgotten it).
        lc = lifecycle(ctx)
        try:
            lc.record(name)
        finally:
            lc.close()

    def text() -> str:
        if not entries:
            return f"{name}: no autoscale decisions yet"
        lines = []
        for e in entries:
            head = f"{e['at']}  {e['action']}"
            if e.get("current") is not None:
                head += f" {e['current']} -> {human(e.get('target'))}"
            if e.get("dry_run"):
                head += " (dry run)"
            lines.append(head)
            if e.get("rule"):
                lines.append(f"  rule: {e['rule']}")
            lines.append(f"  why: {human(e.get('reason') or e.get('error'))}")
            sig = e.get("signals") or {}
            keys = ("pending_pods", "oscar_job_pods", "waiting_jobs", "jobs_without_pod")
            read_parts = [f"{k}={sig[k]}" for k in keys if sig.get(k) is not None]
            if sig.get("errors"):
                read_parts.append("unreadable: " + "; ".join(sig["errors"]))
            bounds = e.get("bounds") or {}
            if bounds:
                read_parts.append(f"bounds {human(bounds.get('floor'))}..{human(bounds.get('ceiling'))}")
            if read_parts:
                lines.append(f"  signals: {', '.join(read_parts)}")
            if e.get("remove"):
                lines.append(f"  {'removed' if e.get('applied') else 'would remove'}: {', '.join(e['remove'])}")
            if e.get("error"):
                lines.append(f"  error: {e['error']}")
            lines.append(f"  action taken: {'yes' if e.get('applied') else 'no'}")
        return "\n".join(lines)

    emit(entries, output, text)
