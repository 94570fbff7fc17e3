"""``provision continuum``: the clusters of one file (IM and edge), their add-ons and the workflow across them.

Parse the options, read the file (``provisioner.continuum.spec``: every problem one ``FILE:LINE: field: rule``
line, exit 2, before anything is sent), call ``provisioner.continuum.engine``, print. A cluster that failed is
named on stderr with its triage cause and the runbook to open; the command then exits 1.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from provisioner.cli.common import OutputFormat, OutputOption, confirm, emit, message, state
from provisioner.cli.render import table

if TYPE_CHECKING:
    from provisioner.addons import Stack
    from provisioner.continuum.engine import ContinuumEngine, StatusReport, UpResult
    from provisioner.continuum.spec import ContinuumSpec
    from provisioner.lifecycle import Lifecycle
    from provisioner.workflow.engine import WorkflowEngine

app = typer.Typer(
    help="A continuum: the clusters of one file (IM and edge), their add-ons and the workflow across them: "
    "up, plan, status, down.",
    no_args_is_help=True,
)

FileArgument = typer.Argument(
    ..., metavar="FILE", help="The continuum file (YAML: name, clusters, workflow).", dir_okay=False
)
NameArgument = typer.Argument(..., metavar="NAME", help="The continuum's name (the name: of its file).")


def _spec(ctx: typer.Context, path: Path) -> ContinuumSpec:
    from provisioner.continuum.spec import read_continuum
    from provisioner.state import has_state, open_store
    from provisioner.tosca import known_sites
    from provisioner.workflow.targets import known_cluster_ids

    settings = state(ctx).settings
    if has_state(settings.home):
        with open_store(settings.home) as store:
            known = known_cluster_ids(store, settings.oscar_cli_config_file)
    else:  # nothing recorded yet: nothing made by looking
        known = known_cluster_ids(None, settings.oscar_cli_config_file)
    return read_continuum(path, sites=known_sites(settings.sites), known_clusters=known)


@contextlib.contextmanager
def _engine(
    ctx: typer.Context, output: OutputFormat, *, ssh_timeout: float = 600.0, playbook_timeout: float = 3600.0
) -> Iterator[ContinuumEngine]:
    """The continuum engine over this invocation's services; progress on stderr (a live line per cluster's IM
    wait on a terminal, throttled lines off one)."""
    from provisioner.addons import Stack
    from provisioner.cli.common import SSHWaitLines, lifecycle, progress_for, run_progress_for
    from provisioner.continuum.engine import ContinuumEngine, Services
    from provisioner.workflow.engine import WorkflowEngine

    settings = state(ctx).settings
    terminal = sys.stderr.isatty()
    shared = progress_for(ctx, output) if terminal else None
    displays: list[Any] = [shared] if shared is not None else []

    def lifecycle_for(cluster: str) -> Lifecycle:
        progress = shared if terminal else progress_for(ctx, output)
        if progress is not None and progress is not shared:
            displays.append(progress)
        return lifecycle(ctx, progress)

    def stack_for(lc: Lifecycle, cluster: str) -> Stack:
        run = None if terminal else run_progress_for(ctx, output)  # several runs at once: no live line
        if run is not None:
            displays.append(run)
        return Stack(
            lc,
            on_event=run.event if run is not None else None,
            on_ssh=run.ssh if run is not None else SSHWaitLines(),
            ssh_timeout=ssh_timeout,
            playbook_timeout=playbook_timeout,
        )

    def workflow() -> WorkflowEngine:
        def outputs_of(name: str) -> Any:
            lc = lifecycle(ctx)
            try:
                return lc.outputs(name)
            finally:
                lc.close()

        return WorkflowEngine(
            settings.home,
            verify=settings.verify,
            timeout=settings.read_timeout if settings.read_timeout < 60 else 30.0,
            lock_timeout=settings.lock_timeout,
            oscar_cli_config=settings.oscar_cli_config_file,
            outputs_of=outputs_of,
            progress=lambda line: message(f"workflow: {line}"),
        )

    engine = ContinuumEngine(
        settings.home,
        Services(lifecycle=lifecycle_for, stack=stack_for, workflow=workflow),
        lock_timeout=settings.lock_timeout,
        progress=lambda line: message(f"continuum: {line}"),
    )
    try:
        yield engine
    finally:
        for display in displays:
            display.close()


def _check_im(ctx: typer.Context, spec: ContinuumSpec) -> None:
    """An IM endpoint and a readable auth file, before anything runs (bad input: exit 2), when a cluster needs IM."""
    from provisioner.cli.common import im_client
    from provisioner.model import ClusterKind

    if any(leg.kind is ClusterKind.IM for leg in spec.legs):
        im_client(ctx).close()


# --- plan -----------------------------------------------------------------------------------------------------------


def _plan_text(doc: dict[str, Any]) -> str:
    lines = [f"continuum {doc['name']} ({doc['source']}):"]
    rows = []
    for item in doc["clusters"]:
        what = []
        if item["changes"]:
            what.append(
                ", ".join(
                    f"{c['field']}: {json.dumps(c['before'])} -> {json.dumps(c['after'])}" for c in item["changes"]
                )
            )
        if item["install"]:
            what.append(f"install {', '.join(item['install'])}")
        elif item["installed"]:
            what.append(f"installed: {', '.join(item['installed'])}")
        if item["endpoint"]:
            what.append(f"record OSCAR at {item['endpoint']}")
        if item["note"]:
            what.append(item["note"])
        rows.append((item["action"], item["id"], item["kind"], item["state"], "; ".join(what)))
    lines.append(table(["ACTION", "CLUSTER", "KIND", "STATE", "WHAT"], rows, indent=2))
    for ident in doc["left"]["clusters"]:
        lines.append(f"  left as it is: cluster {ident} (no longer in the file; provision cluster destroy {ident})")
    if doc["left"]["workflow"]:
        old = doc["left"]["workflow"]
        lines.append(f"  left as it is: workflow {old} (no longer in the file; provision workflow delete {old})")
    workflow = doc["workflow"]
    if workflow is not None:
        head = f"workflow {workflow['name']}:"
        if workflow["note"]:
            head += f" {workflow['note']}"
        lines.append(head)
        for item in workflow["services"]:
            note = f"  ({item['note']})" if item["note"] else ""
            lines.append(f"  {item['action']:<22} {item['cluster']}/{item['service']}{note}")
            for change in item["changes"]:
                lines.append(
                    f"      {change['field']}: {json.dumps(change['before'])} -> {json.dumps(change['after'])}"
                )
        for cluster, why in workflow["unreadable_clusters"].items():
            lines.append(f"  cluster {cluster} could not be read: {why}")
    return "\n".join(lines)


@app.command()
def plan(ctx: typer.Context, file: Path = FileArgument, output: OutputFormat = OutputOption) -> None:
    """What `up` would do, sending nothing: each cluster, its add-ons, then the workflow's plan.

    Per cluster: create, resume, exists (its state) or changed (the inputs that differ: up refuses it, exit 2)."""
    spec = _spec(ctx, file)
    with _engine(ctx, output) as engine:
        report = engine.plan(spec)
    doc = report.doc()
    emit(doc, output, lambda: _plan_text(doc))
    engine.refuse(spec, report.legs)  # what up would refuse, as up says it (FILE:LINE, exit 2)
    workflow = doc["workflow"]
    if workflow is not None and workflow["unreadable_clusters"]:
        raise typer.Exit(1)


# --- up -------------------------------------------------------------------------------------------------------------


def _steps(item: dict[str, Any]) -> str:
    return ", ".join(f"{s['step']} {s['outcome']}" for s in item["steps"]) or "-"


def _up_text(doc: dict[str, Any]) -> str:
    lines = [f"continuum {doc['name']}: {'up' if doc['ok'] else 'not fully up'}"]
    rows = [(c["id"], c["kind"], c["action"], c["state"], _steps(c)) for c in doc["clusters"]]
    lines.append(table(["CLUSTER", "KIND", "ACTION", "STATE", "STEPS"], rows, indent=2))
    workflow = doc["workflow"]
    if workflow is not None:
        if workflow["status"] == "applied":
            lines.append(f"workflow {workflow['name']}: applied ({len(workflow['sent'])} change(s) sent)")
        else:
            lines.append(f"workflow {workflow['name']}: {workflow['status']}: {workflow['reason']}")
    for ident in doc["left"]["clusters"]:
        lines.append(f"left as it is: cluster {ident} (no longer in the file)")
    if doc["left"]["workflow"]:
        lines.append(f"left as it is: workflow {doc['left']['workflow']} (no longer in the file)")
    return "\n".join(lines)


def _cause_line(cause: dict[str, str], error: str | None) -> str:
    """The class and what it means, with the evidence unless the error line above already says it."""
    short = f"{cause['cause']}: {cause['summary']}"
    return short if error and cause["evidence"] in error else f"{short} ({cause['evidence']})"


def _report_failures(result: UpResult, file: Path) -> None:
    """Each failed cluster (and a workflow not applied) on stderr: the error, its cause, the runbook to open."""
    from provisioner.triage import see_runbook

    for leg in result.failed:
        first, *rest = (leg.error or "failed").splitlines() or ["failed"]
        message(f"error: continuum {result.name}: cluster {leg.id} failed at its {leg.failed_step} step: {first}")
        for line in rest:
            message(f"error: {line}")
        if leg.cause is not None:
            message(f"cause: {_cause_line(leg.cause, leg.error)}")
        if leg.runbook is not None:
            message(see_runbook(leg.runbook))
    workflow = result.workflow
    if workflow is not None and workflow.status != "applied":
        message(f"error: continuum {result.name}: workflow {workflow.name} {workflow.status}: {workflow.reason}")
        if workflow.cause is not None:
            message(f"cause: {_cause_line(workflow.cause, workflow.reason)}")
        if workflow.status == "failed" and workflow.runbook is not None:
            message(see_runbook(workflow.runbook))
    others = [leg.id for leg in result.legs if leg.ok]
    kept = f"the other clusters are as they are ({', '.join(others)}); " if others and result.failed else ""
    message(
        f"hint: {kept}fix the cause, then run the same command again: provision continuum up {file} "
        "(what is in place is not done again)"
    )


@app.command()
def up(
    ctx: typer.Context,
    file: Path = FileArgument,
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds to wait for IM to configure each cluster."),
    ssh_timeout: float = typer.Option(600.0, "--ssh-timeout", help="Seconds to wait for every node to answer SSH."),
    playbook_timeout: float = typer.Option(
        3600.0, "--playbook-timeout", help="Seconds an add-on install (one Ansible run) may take."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Create or resume every cluster in parallel, install their add-ons, then apply the workflow.

    Run again after a failure or a kill, it does only what is missing."""
    from provisioner.continuum.engine import Options

    spec = _spec(ctx, file)
    _check_im(ctx, spec)
    with _engine(ctx, output, ssh_timeout=ssh_timeout, playbook_timeout=playbook_timeout) as engine:
        result = engine.up(spec, Options(timeout=timeout, ssh_timeout=ssh_timeout, playbook_timeout=playbook_timeout))
    doc = result.doc()
    emit(doc, output, lambda: _up_text(doc))
    if not result.ok:
        _report_failures(result, file)
        raise typer.Exit(1)


# --- status ---------------------------------------------------------------------------------------------------------


def _status_text(report: StatusReport) -> str:
    from provisioner.redact import mask
    from provisioner.triage import see_runbook

    lines = [f"continuum {report.name} ({report.source}):"]
    rows = []
    for item in report.clusters:
        last = item["last"]
        seen = f"{last['step']} {last['outcome']} at {last['at']}" if last else "-"
        rows.append((item["id"], item["kind"], item["state"], item["workers"], seen))
    lines.append(table(["CLUSTER", "KIND", "STATE", "WORKERS", "LAST STEP"], rows, indent=2))
    for item in report.clusters:
        last = item["last"] or {}
        if item["error"]:
            lines.append(f"  {item['id']}: could not be read: {item['error']}")
        if last.get("outcome") == "failed":
            lines.append(f"  {item['id']}: {last['step']} failed: {last.get('error')}")
        cause = item["cause"]
        if cause:
            lines.append(f"  {item['id']}: cause: {cause['cause']}: {cause['summary']} ({mask(cause['evidence'])})")
        runbook = (cause or {}).get("runbook") or (last.get("runbook") if last.get("outcome") == "failed" else None)
        if runbook:
            lines.append(f"  {item['id']}: {see_runbook(runbook)}")
    workflow = report.workflow
    if workflow is not None:
        if workflow["applied"]:
            stages = [
                (
                    f"{s['cluster']}/{s['service']}",
                    "unknown"
                    if s["error"]
                    else "ok"
                    if s["exists"] and s["matches"] is not False
                    else "missing"
                    if not s["exists"]
                    else "differs",
                    ", ".join(f"{n} {st.lower()}" for st, n in sorted(s["jobs"].items())) or "no jobs",
                )
                for s in workflow["stages"]
            ]
            lines.append(f"workflow {workflow['name']}:")
            lines.append(table(["STAGE", "STATE", "JOBS"], stages, indent=2))
        else:
            last = workflow["last"] or {}
            why = f": {last.get('error')}" if last.get("outcome") == "failed" else ""
            up = report.last_up or {}
            if up.get("workflow") == "skipped":
                why = f": skipped by the last up ({up.get('workflow_reason')})"
            lines.append(f"workflow {workflow['name']}: not applied{why}")
        if workflow["error"]:
            lines.append(f"  could not be read: {workflow['error']}")
    if report.last_up is not None:
        ok = "all up" if report.last_up.get("ok") else f"failed: {', '.join(report.last_up.get('failed') or []) or '-'}"
        lines.append(f"last up at {report.last_up['at']}: {ok}")
    return "\n".join(lines)


@app.command()
def status(ctx: typer.Context, name: str = NameArgument, output: OutputFormat = OutputOption) -> None:
    """Each cluster's state (IM's, live), its last step and why it failed; the workflow's stages."""
    with _engine(ctx, output) as engine:
        report = engine.status(name)
    emit(report.doc(), output, lambda: _status_text(report))


# --- down -----------------------------------------------------------------------------------------------------------


@app.command()
def down(
    ctx: typer.Context,
    name: str = NameArgument,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Destroy the clusters even when the workflow's services could not all be deleted."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Delete the workflow, then destroy every cluster, each checked gone from IM (an edge cluster is forgotten)."""
    from provisioner.errors import OperationFailed

    confirm(f"Take continuum {name} down (its workflow and every cluster)?", yes=yes, what="take it down")
    with _engine(ctx, output) as engine:
        result = engine.down(name, force=force)
    doc = result.doc()

    def text() -> str:
        lines = []
        workflow = doc["workflow"]
        if workflow is not None:
            done = f"deleted ({', '.join(workflow['deleted']) or 'no service left'})"
            said = {"deleted": done, "absent": "not applied", "failed": f"not deleted: {workflow['reason']}"}
            lines.append(f"workflow {workflow['name']}: {said[workflow['status']]}")
        for item in doc["clusters"]:
            extra = (
                item.get("note")
                or item.get("error")
                or (f"{item['infra_id']} gone from IM" if item["status"] == "destroyed" else "")
            )
            lines.append(f"cluster {item['id']}: {item['status']}{': ' + extra if extra else ''}")
        lines.append(f"continuum {name}: {'down' if doc['ok'] else 'not fully down'}")
        return "\n".join(lines)

    emit(doc, output, text)
    if not result.ok:
        failed = [c["id"] for c in doc["clusters"] if c["status"] in ("failed", "kept")]
        raise OperationFailed(
            f"continuum {name} is not fully down: "
            + (
                "its workflow could not be deleted"
                if doc["clusters"] and doc["clusters"][0]["status"] == "kept"
                else f"cluster(s) {', '.join(failed)} could not be destroyed"
            ),
            hint=f"fix the cause, then run the same command again: provision continuum down {name} --yes"
            + (
                " (or --force to destroy the clusters anyway)"
                if failed and doc["clusters"][0]["status"] == "kept"
                else ""
            ),
        )
