"""``provision workflow``: serverless workflows (OSCAR's FDL) across the clusters this tool manages.

Parse the options, call ``provisioner.workflow``, print. Problems in the file are raised as ``FdlInvalid`` (one
``FILE:LINE: field: rule`` line each, exit 2) before anything is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from provisioner.cli.common import OutputFormat, OutputOption, emit, message, state
from provisioner.errors import InputError
from provisioner.settings import Settings

app = typer.Typer(
    help="Serverless workflows (OSCAR's FDL) across the clusters provision manages: validate, plan, apply, status, "
    "run, invoke, delete.",
    no_args_is_help=True,
)

FdlArgument = typer.Argument(
    ..., metavar="FDL", help="The workflow's FDL file (OSCAR's Functions Definition Language)."
)


def _known_clusters(settings: Settings) -> frozenset[str]:
    from provisioner.state.interface import has_state, open_store
    from provisioner.workflow.targets import known_cluster_ids

    if not has_state(settings.home):  # nothing recorded yet: nothing created by looking
        return known_cluster_ids(None, settings.oscar_cli_config_file)
    with open_store(settings.home) as store:
        return known_cluster_ids(store, settings.oscar_cli_config_file)


@app.command()
def validate(ctx: typer.Context, fdl: Path = FdlArgument, output: OutputFormat = OutputOption) -> None:
    """Check an FDL offline and show its dataflow: which stage feeds which, entry points, final outputs."""
    from provisioner.workflow.files import load_workflow
    from provisioner.workflow.report import describe, describe_text

    settings = state(ctx).settings
    workflow = load_workflow(fdl, known_clusters=_known_clusters(settings))
    doc = describe(workflow)
    for warning in doc["warnings"]:
        message(f"warning: {warning}")
    emit(doc, output, lambda: describe_text(doc))


NameOption = typer.Option(None, "--name", help="The workflow's name (default: the FDL file's stem).")


class _Progress:
    """Events as lines on stderr; waits as one live line on a terminal (text output), else a line when what is
    awaited changes and at least every PROVISION_PROGRESS_INTERVAL seconds."""

    def __init__(self, ctx: typer.Context, output: OutputFormat) -> None:
        import sys

        from provisioner.cli.common import Throttle, stderr_console

        self._console = stderr_console()
        self._live = sys.stderr.isatty() and output is OutputFormat.text
        every = state(ctx).settings.progress_interval
        self._throttle = Throttle(every) if every > 0 else None
        self._status: Any = None

    def event(self, line: str) -> None:
        message(f"workflow: {line}")

    def waiting(self, key: str, line: str) -> None:
        if self._live:
            if self._status is None:
                self._status = self._console.status(line)
                self._status.start()
            else:
                self._status.update(line)
        elif self._throttle is not None and self._throttle.due(key):
            message(f"workflow: {line}")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _engine(ctx: typer.Context, progress: _Progress | None = None) -> Any:
    from provisioner.cli.common import lifecycle
    from provisioner.workflow.engine import WorkflowEngine

    settings = state(ctx).settings

    def outputs_of(name: str) -> Any:
        return lifecycle(ctx).outputs(name)

    return WorkflowEngine(
        settings.home,
        verify=settings.verify,
        timeout=settings.read_timeout if settings.read_timeout < 60 else 30.0,
        lock_timeout=settings.lock_timeout,
        oscar_cli_config=settings.oscar_cli_config_file,
        outputs_of=outputs_of,
        progress=progress.event if progress is not None else lambda line: message(f"workflow: {line}"),
    )


def _plan_doc(plan: Any) -> dict[str, Any]:
    return {
        "name": plan.name,
        "services": [
            {
                "cluster": item.cluster,
                "service": item.service,
                "action": item.action.value,
                "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in item.changes],
                "note": item.note,
            }
            for item in plan.services
        ],
    }


def _plan_text(doc: dict[str, Any], *, prune: bool) -> str:
    lines = [f"workflow {doc['name']}:"]
    for item in doc["services"]:
        action = item["action"]
        if action == "remove" and not prune:
            action = "remove (with --prune)"
        note = f"  ({item['note']})" if item["note"] else ""
        lines.append(f"  {action:<22} {item['cluster']}/{item['service']}{note}")
        for change in item["changes"]:
            lines.append(f"      {change['field']}: {json.dumps(change['before'])} -> {json.dumps(change['after'])}")
    return "\n".join(lines)


def _result_doc(result: Any) -> dict[str, Any]:
    return {
        **_plan_doc(result.plan),
        "ok": result.ok,
        "sent": [f"{i.action.value} {i.cluster}/{i.service}" for i in result.done],
        "failed": {f"{c}/{s}": why for (c, s), why in result.failed.items()},
        "skipped": {f"{c}/{s}": why for (c, s), why in result.skipped.items()},
        "unreadable_clusters": result.unreadable,
        "missing_buckets": result.missing_buckets,
        "removed_buckets": result.removed_buckets,
        "kept_buckets": result.kept_buckets,
    }


def _fail_if_not_ok(result: Any) -> None:
    from provisioner.errors import OperationFailed

    if result.ok:
        return
    clusters = sorted({c for c, _ in result.failed} | {c for c, _ in result.skipped} | set(result.unreadable))
    reasons = [f"{c}: {why}" for c, why in result.unreadable.items()]
    reasons += [f"{c}/{s}: {why}" for (c, s), why in result.failed.items()]
    reasons += result.missing_buckets
    raise OperationFailed(
        f"workflow {result.plan.name} is not fully applied on cluster(s) {', '.join(clusters) or '-'}: "
        + "; ".join(reasons[:5]),
        hint="fix the cluster, then run the same command again: what is in place is not sent again",
    )


@app.command()
def plan(
    ctx: typer.Context,
    fdl: Path = FdlArgument,
    name: str | None = NameOption,
    prune: bool = typer.Option(False, "--prune", help="Show the removals --prune would make as such."),
    output: OutputFormat = OutputOption,
) -> None:
    """What `apply` would change on each cluster: created, changed (field by field, secrets masked), left, removed."""
    result_plan, result = _engine(ctx).plan(fdl, name, prune=prune)
    doc = {**_plan_doc(result_plan), "unreadable_clusters": result.unreadable}
    for cluster, why in result.unreadable.items():
        message(f"warning: cluster {cluster} could not be read: {why}")
    emit(doc, output, lambda: _plan_text(doc, prune=prune))
    if result.unreadable:
        raise typer.Exit(1)


@app.command()
def apply(
    ctx: typer.Context,
    fdl: Path = FdlArgument,
    name: str | None = NameOption,
    prune: bool = typer.Option(False, "--prune", help="Remove the services this workflow owns that left the FDL."),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for every stage's input bucket to exist (else checked once)."
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds --wait waits for the input buckets."),
    output: OutputFormat = OutputOption,
) -> None:
    """Create or update the FDL's services, downstream stages first, filling in other clusters' MinIO."""
    if not timeout > 0:
        raise InputError(f"must be > 0, got {timeout:g}", field="--timeout")
    result = _engine(ctx).apply(fdl, name, prune=prune, wait=timeout if wait else None)
    doc = _result_doc(result)
    emit(doc, output, lambda: _plan_text(doc, prune=prune) + f"\nsent {len(doc['sent'])} change(s)")
    _fail_if_not_ok(result)


@app.command()
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The workflow (see: provision workflow list)."),
    buckets: bool = typer.Option(
        False, "--buckets", help="Also remove the buckets its stages read and wrote (unless another service uses one)."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Delete the services the workflow owns (upstream first), then its record (and with --buckets its buckets)."""
    result = _engine(ctx).delete(name, buckets=buckets)
    doc = _result_doc(result)

    def text() -> str:
        lines = [f"deleted {line.split(' ', 1)[1]}" for line in doc["sent"]]
        lines += [f"removed bucket {b}" for b in doc["removed_buckets"]]
        lines += [f"kept bucket {b}" for b in doc["kept_buckets"]]
        return "\n".join(lines) or "nothing left"

    emit(doc, output, text)
    _fail_if_not_ok(result)


@app.command("list")
def list_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The workflows applied from here, with the services each owns."""
    from provisioner.cli.render import table

    rows = [
        {
            "name": rec.name,
            "source": rec.source,
            "services": sorted(f"{s['cluster']}/{s['service']}" for s in rec.services),
            "updated": rec.updated_at.isoformat(),
        }
        for rec in _engine(ctx).list()
    ]
    emit(
        rows,
        output,
        lambda: (
            table(["NAME", "SERVICES", "SOURCE"], [(r["name"], ", ".join(r["services"]), r["source"]) for r in rows])
            if rows
            else "no workflows (apply one: provision workflow apply FDL)"
        ),
    )


WorkflowName = typer.Argument(..., metavar="NAME", help="The workflow (see: provision workflow list).")


def _runs(ctx: typer.Context, progress: _Progress | None = None) -> Any:
    from provisioner.workflow.runs import WorkflowRuns

    if progress is None:
        return WorkflowRuns(_engine(ctx))
    return WorkflowRuns(_engine(ctx, progress), waiting=progress.waiting)


def _status_text(name: str, stages: list[dict[str, Any]]) -> str:
    from provisioner.cli.render import table

    def state(item: dict[str, Any]) -> str:
        if item["error"]:
            return "unknown"
        if not item["exists"]:
            return "missing"
        if not item["in_fdl"]:
            return "not in the FDL (prune)"
        if item["matches"] is False:
            return "differs: " + ", ".join(item["changed"] or ["?"])
        return "ok"

    rows = [
        (
            f"{item['cluster']}/{item['service']}",
            state(item),
            ", ".join(
                f"{b}{'' if ok else ' (missing)' if ok is False else ' (?)'}" for b, ok in item["input_buckets"].items()
            )
            or "-",
            ", ".join(f"{n} {s.lower()}" for s, n in sorted(item["jobs"].items())) or "no jobs",
        )
        for item in stages
    ]
    lines = [f"workflow {name}:", table(["STAGE", "STATE", "INPUT BUCKETS", "JOBS"], rows)]
    lines += [f"  {item['cluster']}/{item['service']}: {item['error']}" for item in stages if item["error"]]
    return "\n".join(lines)


@app.command()
def status(ctx: typer.Context, name: str = WorkflowName, output: OutputFormat = OutputOption) -> None:
    """Per stage: its cluster, whether it exists and matches the FDL, its input buckets, its jobs by state."""
    from provisioner.errors import OperationFailed

    stages = [item.doc() for item in _runs(ctx).status(name)]
    doc = {"name": name, "stages": stages}
    emit(doc, output, lambda: _status_text(name, stages))
    unreadable = sorted({item["cluster"] for item in stages if item["error"]})
    if unreadable:
        raise OperationFailed(f"workflow {name}: cluster(s) {', '.join(unreadable)} could not be read")


def _clock(stamp: str | None) -> str:
    return stamp[11:19] if stamp and len(stamp) >= 19 else "-"


def _run_text(doc: dict[str, Any]) -> str:
    from provisioner.cli.render import table

    rows = [
        (
            step["stage"],
            step["job"] or "-",
            step["state"],
            _clock(step["queued"]),
            _clock(step["started"]),
            _clock(step["finished"]),
            "-" if step["seconds"] is None else f"{step['seconds']:.0f}",
            "-" if step["done_at"] is None else f"+{step['done_at']:.1f}",
        )
        for step in doc["steps"]
    ]
    lines = [
        f"workflow {doc['workflow']}: {doc['uploaded']} through {len(doc['steps'])} job(s)",
        table(["STAGE", "JOB", "STATE", "QUEUED", "STARTED", "FINISHED", "SECONDS", "SEEN DONE"], rows),
    ]
    if doc["final_outputs"]:
        lines.append("final outputs:")
        lines += [f"  {label}" for label in doc["final_outputs"]]
    if doc["downloaded"]:
        lines.append("downloaded:")
        lines += [f"  {path}" for path in doc["downloaded"]]
    lines += [f"not followed (a store this tool cannot read): {label}" for label in doc["not_followed"]]
    return "\n".join(lines)


@app.command()
def run(
    ctx: typer.Context,
    name: str = WorkflowName,
    input_file: Path = typer.Option(..., "--input", help="The file to send through the workflow.", dir_okay=False),
    stage: str | None = typer.Option(
        None, "--stage", help="The entry stage (SERVICE or CLUSTER/SERVICE) when several."
    ),
    download: Path | None = typer.Option(None, "--download", help="Download the final outputs into this directory."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to follow the file before giving up (exit 4)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Upload a file to the entry stage's input bucket and follow it through every stage to the final outputs."""
    from provisioner.errors import OperationFailed

    if not timeout > 0:
        raise InputError(f"must be > 0, got {timeout:g}", field="--timeout")
    progress = _Progress(ctx, output)
    try:
        result = _runs(ctx, progress).run(name, input_file, stage=stage, download=download, timeout=timeout)
    finally:
        progress.close()
    doc = result.doc()
    emit(doc, output, lambda: _run_text(doc))
    if not result.ok:
        step = result.trace.failed()[0]
        if result.failed_log is not None and output is OutputFormat.text:
            message(f"log of job {step.job} (last lines):")
            for line in result.failed_log.splitlines():
                message(f"  | {line}")
        raise OperationFailed(
            f"workflow {name}: job {step.job} of stage {step.stage[0]}/{step.stage[1]} failed",
            hint=f"its whole log: GET /system/logs/{step.stage[1]}/{step.job} on cluster {step.stage[0]}",
        )


@app.command()
def invoke(
    ctx: typer.Context,
    name: str = WorkflowName,
    stage: str = typer.Argument(..., metavar="STAGE", help="SERVICE or CLUSTER/SERVICE."),
    input_file: Path | None = typer.Option(
        None, "--input", help="The file to send (base64-encoded, as OSCAR takes it).", dir_okay=False
    ),
    asynchronous: bool = typer.Option(False, "--async", help="POST to /job/<service> (a job) instead of /run."),
    output: OutputFormat = OutputOption,
) -> None:
    """Call a stage through OSCAR's /run/<service> with the service's token: its answer on stdout, latency on stderr."""
    import base64
    import sys

    data = None
    if input_file is not None:
        try:
            data = input_file.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {input_file}: {exc.strerror or exc}", field="--input") from None
    result = _runs(ctx).invoke(name, stage, data, asynchronous=asynchronous)
    message(f"{result.stage}: {'accepted' if result.output is None else 'answered'} in {result.seconds * 1000:.0f} ms")
    if output is OutputFormat.json:
        doc: dict[str, Any] = {"stage": result.stage, "seconds": round(result.seconds, 4), "async": asynchronous}
        if result.output is not None:
            try:
                doc["output"] = result.output.decode("utf-8")
            except UnicodeDecodeError:
                doc["output_base64"] = base64.b64encode(result.output).decode()
        emit(doc, output)
    elif result.output is not None:
        sys.stdout.buffer.write(result.output)
        sys.stdout.flush()
