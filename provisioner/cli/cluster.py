"""``provision cluster``: create, list, status, outputs, logs, scale, reconfigure, destroy, ssh, sync."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from provisioner.cli.common import (
    OutputFormat,
    OutputOption,
    SSHWaitLines,
    confirm,
    emit,
    lifecycle,
    message,
    progress_for,
    run_progress_for,
    state,
)
from provisioner.cli.render import human, plural, table
from provisioner.errors import InputError, NotFound, OperationFailed
from provisioner.model import ClusterKind

if TYPE_CHECKING:
    from provisioner.addons import InstallReport, Stack, VerifyReport
    from provisioner.im import VMInfo
    from provisioner.lifecycle import ClusterView, DryRunPlan, Lifecycle

app = typer.Typer(help="Create and run clusters: the whole lifecycle, journaled and resumable.", no_args_is_help=True)

TimeoutOption = typer.Option(1800.0, "--timeout", help="Seconds to wait for IM to finish (exit 4 when exceeded).")
WaitOption = typer.Option(True, "--wait/--no-wait", help="Wait until IM has configured the cluster.")


@contextlib.contextmanager
def service(ctx: typer.Context, output: OutputFormat) -> Iterator[Lifecycle]:
    """The lifecycle service, with a live progress line on a TTY in text mode, plain lines on stderr off one."""
    progress = progress_for(ctx, output)
    lc = lifecycle(ctx, progress)
    try:
        yield lc
    finally:
        if progress is not None:
            progress.close()
        lc.close()


@contextlib.contextmanager
def stack_service(
    ctx: typer.Context,
    output: OutputFormat,
    ssh_timeout: float = 600.0,
    playbook_timeout: float | None = None,
    lc: Lifecycle | None = None,
) -> Iterator[Stack]:
    """The add-on service (inventory, SSH, ansible-runner), with a live line on a TTY in text mode.

    Given ``lc`` (the command's lifecycle service), it uses that one, and its IM connection; its owner closes it."""
    from provisioner.addons import Stack
    from provisioner.ansible.runner import DEFAULT_PLAYBOOK_TIMEOUT

    progress = run_progress_for(ctx, output)
    own = lc is None
    if lc is None:
        lc = lifecycle(ctx)
    try:
        yield Stack(
            lc,
            on_event=progress.event if progress else None,
            on_ssh=progress.ssh if progress else SSHWaitLines(),
            ssh_timeout=ssh_timeout,
            playbook_timeout=playbook_timeout or DEFAULT_PLAYBOOK_TIMEOUT,
        )
    finally:
        if progress is not None:
            progress.close()
        if own:
            lc.close()


ComponentsOption = typer.Option(
    None,
    "--components",
    help="Comma-separated add-ons: knative,yunikorn,minio,onedata,oscar,registry (default: what the inputs ask for).",
)
PreflightOption = typer.Option(False, "--preflight", help="Run only the roles' preflight checks; change nothing.")
SSHTimeoutOption = typer.Option(600.0, "--ssh-timeout", help="Seconds to wait for every node to answer SSH.")
PlaybookTimeoutOption = typer.Option(
    3600.0,
    "--playbook-timeout",
    min=1.0,
    help="Seconds the Ansible run may take; past it, it is stopped and the command exits 4 naming the task.",
)


def install_text(report: InstallReport) -> str:
    what = "preflight passed" if report.preflight_only else "installed"
    lines = [f"{report.cluster}: {what}: {', '.join(report.components) or 'k3s only'}"]
    hosts = [
        (host, counts.get("ok", 0), counts.get("changed", 0), counts.get("skipped", 0))
        for host, counts in sorted(report.stats.items())
    ]
    if hosts:
        lines.append(table(["HOST", "OK", "CHANGED", "SKIPPED"], hosts, indent=2))
    lines.append(f"  inventory {report.inventory}")
    lines.append(f"  ansible artifacts {report.artifacts}")
    return "\n".join(lines)


def verify_text(report: VerifyReport) -> str:
    marks = {"ok": "ok", "failed": "FAIL", "skipped": "skip"}
    lines = [f"{report.cluster}: {'all checks passed' if report.ok else 'some checks failed'}"]
    rows = [(marks.get(c.status, c.status), c.name, c.detail) for c in report.checks]
    if rows:
        lines.append(table(["RESULT", "CHECK", "DETAIL"], rows, indent=2))
    return "\n".join(lines)


def _inputs(sets: list[str], inputs_file: Path | None) -> dict[str, Any]:
    from provisioner import tosca

    raw: dict[str, Any] = {}
    if inputs_file is not None:
        raw.update(tosca.load_inputs_file(inputs_file))
    raw.update(tosca.parse_set_options(sets))
    return raw


def view_text(view: ClusterView) -> str:
    workers = plural(view.workers, "worker") if view.workers is not None else "workers unknown"
    lines = [
        f"cluster {view.name}: {view.state or 'unknown'} ({workers})",
        f"  infrastructure {human(view.infra_id)} at {view.im_url} (template {view.template}, site {view.site})",
    ]
    vms = [(vm.id, vm.role, vm.state, vm.private_ip, vm.public_ip) for vm in view.vms]
    if vms:
        lines.append(table(["VM", "ROLE", "STATE", "PRIVATE IP", "PUBLIC IP"], vms, indent=2))
    if view.note:
        lines.append(f"  note: {view.note}")
    if view.cause:
        from provisioner.redact import mask
        from provisioner.triage import see_runbook  # only for a failed cluster: triage compiles its patterns

        lines.append(f"  cause: {view.cause['cause']}: {view.cause['summary']} ({mask(view.cause['evidence'])})")
        lines.append(f"  {see_runbook(view.cause['runbook'])}")
    return "\n".join(lines)


def emit_view(view: ClusterView, output: OutputFormat) -> None:
    emit(view.as_dict(), output, lambda: view_text(view))


def shown_outputs(lc: Lifecycle, name: str, found: dict[str, Any], *, show_secrets: bool = False) -> dict[str, Any]:
    """A cluster's outputs as every command shows them: each secret kept for the cluster masked, at any depth."""
    from provisioner.redact import mask

    secrets = [] if show_secrets else lc.secret_values(name)
    return {key: _mask_value(value, secrets, mask) for key, value in found.items()}


def outputs_text(shown: dict[str, Any], *, indent: int = 0, empty: str = "no outputs") -> str:
    return table(["OUTPUT", "VALUE"], shown.items(), empty=empty, indent=indent)


def _created_text(view: ClusterView, shown: dict[str, Any] | None) -> str:
    """A created cluster, and after a wait its endpoints (the outputs, masked)."""
    if shown is None:
        return view_text(view)
    endpoints = outputs_text(shown, indent=2, empty="")
    return view_text(view) + ("\n  endpoints:\n" + endpoints if endpoints else "\n  endpoints: none")


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Cluster name (lowercase letters, digits, '-')."),
    template: str = typer.Option(..., "--template", "-t", help="Template name (see: provision template list)."),
    site: str = typer.Option(..., "--site", "-s", help="Site name (local-sim, or one from the config file)."),
    sets: list[str] = typer.Option([], "--set", help="An input as KEY=VALUE (repeatable)."),
    inputs_file: Path | None = typer.Option(None, "--inputs", help="A YAML file of inputs."),
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Render, validate and ask IM for a plan (or say why create would refuse); make nothing.",
    ),
    show_tosca: bool = typer.Option(False, "--show-tosca", help="With --dry-run: print the TOSCA (secrets masked)."),
    install: bool = typer.Option(False, "--install", help="Once configured, install the add-ons (cluster install)."),
    components: str | None = ComponentsOption,
    ssh_timeout: float = SSHTimeoutOption,
    playbook_timeout: float = PlaybookTimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Create a cluster (or resume the one of the same name and inputs)."""
    raw = _inputs(sets, inputs_file)
    chosen: list[str] | None = None
    if components is not None:  # the add-on service (SSH, Ansible) is loaded only for a create that needs it
        from provisioner.addons import parse_components

        chosen = parse_components(components)
    if install and not wait:
        raise InputError("--install needs the cluster configured first: drop --no-wait", field="--install")
    progress = progress_for(ctx, output)
    lc = lifecycle(ctx, progress)
    try:
        try:
            if dry_run:
                plan = lc.dry_run(name, template=template, site=site, inputs=raw)
                emit(asdict(plan), output, lambda: _plan_text(plan, show_tosca))
                return
            view = lc.create(name, template=template, site=site, inputs=raw, wait=wait, timeout=timeout)
            # Configured: its outputs in the same answer (one process for a script), read on the same connection.
            shown = shown_outputs(lc, name, lc.outputs_of(view)) if wait else None
        finally:
            if progress is not None:
                progress.close()  # before the install's own live line
        cluster = view.as_dict() if shown is None else {**view.as_dict(), "outputs": shown}
        if not install:
            emit(cluster, output, lambda: _created_text(view, shown))
            return
        with stack_service(ctx, output, ssh_timeout, playbook_timeout, lc=lc) as stack:
            report = stack.install(name, chosen)
    finally:
        lc.close()
    emit(
        {"cluster": cluster, "install": report.as_dict()},
        output,
        lambda: _created_text(view, shown) + "\n" + install_text(report),
    )


def _plan_text(plan: DryRunPlan, show_tosca: bool) -> str:
    head = plan.tosca.rstrip("\n") + "\n" if show_tosca else ""
    if plan.note:
        return f"{head}dry run: {plan.note}"
    launch = "; ".join(f"{c['cloud_id']} ({c['cloud_type']}): {plural(len(c['vms']), 'VM')}" for c in plan.clouds)
    return f"{head}dry run: cluster {plan.name} ({plan.template} on {plan.site}): IM would launch {launch or 'nothing'}"


@app.command("list")
def list_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The clusters in the local registry, with their last known state (no IM call)."""
    with service(ctx, output) as lc:
        views = lc.list_clusters()
    emit(
        lambda: [v.as_dict() for v in views],
        output,
        lambda: table(
            ["NAME", "STATE", "WORKERS", "TEMPLATE", "SITE", "INFRASTRUCTURE"],
            [(v.name, v.state, v.workers, v.template, v.site, v.infra_id) for v in views],
            empty="no clusters",
        ),
    )


@app.command()
def status(
    ctx: typer.Context,
    name: str,
    wait: bool = typer.Option(False, "--wait", help="Wait (or resume waiting) until the cluster is configured."),
    timeout: float = TimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """The live state of a cluster, read from IM."""
    with service(ctx, output) as lc:
        view = lc.status(name, wait=wait, timeout=timeout)
    emit_view(view, output)


@app.command()
def outputs(
    ctx: typer.Context,
    name: str,
    show_secrets: bool = typer.Option(False, "--show-secrets", help="Show secret values instead of ***."),
    output: OutputFormat = OutputOption,
) -> None:
    """The cluster's TOSCA outputs (endpoints, addresses)."""
    with service(ctx, output) as lc:
        shown = shown_outputs(lc, name, lc.outputs(name), show_secrets=show_secrets)
    emit(shown, output, lambda: outputs_text(shown))


def _mask_value(value: Any, secrets: list[str], mask: Any) -> Any:
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, list):
        return [_mask_value(item, secrets, mask) for item in value]
    if isinstance(value, dict):
        return {key: _mask_value(item, secrets, mask) for key, item in value.items()}
    return value


@app.command()
def secrets(
    ctx: typer.Context,
    name: str,
    show: bool = typer.Option(False, "--show", help="Show the values instead of ***."),
    output: OutputFormat = OutputOption,
) -> None:
    """The secrets kept for the cluster (generated passwords, tokens; the ones given with --set), masked."""
    from provisioner.redact import mask

    with service(ctx, output) as lc:
        report = lc.secrets(name)
    shown = {key: value if show or not value else mask(value, [value]) for key, value in report.values.items()}
    data = {"name": report.name, "path": report.path, "shown": show, "secrets": shown}

    def text() -> str:
        head = f"cluster {name}: secrets kept in {report.path}"
        if not shown:
            return f"{head}: none"
        hint = "" if show else "\n  (masked; --show prints the values)"
        return f"{head}\n" + table(["SECRET", "VALUE"], shown.items(), indent=2) + hint

    emit(data, output, text)


@app.command()
def endpoint(
    ctx: typer.Context,
    name: str,
    oscar: str | None = typer.Option(None, "--oscar", help="OSCAR's URL for this cluster (an ingress, a proxy)."),
    clear: bool = typer.Option(False, "--clear", help="Forget the recorded URL (back to the outputs / NodePort)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Show or record where the cluster's OSCAR answers; `provision workflow` and `cluster verify` use it first."""
    if oscar is not None and clear:
        raise InputError("give either --oscar URL or --clear, not both", field="--clear")
    with service(ctx, output) as lc:
        rec = lc.set_oscar_endpoint(name, None) if clear else lc.record(name)
        if oscar is not None:
            rec = lc.set_oscar_endpoint(name, oscar)
    url = rec.extra.get("oscar_url")
    emit(
        {"name": name, "oscar_url": url},
        output,
        f"cluster {name}: OSCAR at {url}" if url else f"cluster {name}: no OSCAR URL recorded (outputs / NodePort)",
    )


@app.command()
def logs(
    ctx: typer.Context,
    name: str,
    vm: str | None = typer.Option(None, "--vm", help="One VM's log instead of the whole infrastructure's."),
    output: OutputFormat = OutputOption,
) -> None:
    """The contextualization log, with the failing task and host picked out."""
    from provisioner.redact import mask

    with service(ctx, output) as lc:
        report = lc.logs(name, vm)
    data = {**asdict(report), "log": mask(report.log)}
    data["cause"] = {k: mask(v) for k, v in report.cause.as_dict().items()} if report.cause else None

    def text() -> str:
        head = f"failed: {mask(report.reason)}\n" if report.reason else ""
        if report.cause is not None:
            head += f"cause: {mask(report.cause.line)}\n{report.cause.see}\n"
        if not str(data["log"]).strip():
            whose = f"VM {vm} of cluster {name}" if vm is not None else f"cluster {name}"
            return head + f"{whose}: the contextualization log is empty (IM has recorded nothing for it yet)"
        return head + str(data["log"])

    emit(data, output, text)


@app.command()
def scale(
    ctx: typer.Context,
    name: str,
    workers: int = typer.Option(..., "--workers", "-w", help="The number of workers wanted."),
    remove: list[str] = typer.Option([], "--remove", help="A worker VM id to remove (repeatable)."),
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Grow or shrink the workers; --remove picks which ones go (or replaces them at the same count)."""
    with service(ctx, output) as lc:
        view = lc.scale(name, workers=workers, remove=remove, wait=wait, timeout=timeout)
    emit_view(view, output)


@app.command()
def reconfigure(
    ctx: typer.Context,
    name: str,
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Ask IM to run the contextualization again."""
    with service(ctx, output) as lc:
        view = lc.reconfigure(name, wait=wait, timeout=timeout)
    emit_view(view, output)


@app.command()
def auth(
    ctx: typer.Context,
    name: str,
    new_auth: Path | None = typer.Option(
        None, "--new-auth", help="Auth file with the new IM credential (default: the current one, read afresh)."
    ),
    keep_old: bool = typer.Option(False, "--keep-old", help="Add the new owner instead of replacing the old one."),
    output: OutputFormat = OutputOption,
) -> None:
    """Push a fresh token or a rotated IM credential to the cluster's infrastructure (IM's authorization call)."""
    from provisioner.cli.common import client_for_auth_file

    with service(ctx, output) as lc:
        rec = lc.record(name)
        new_client = client_for_auth_file(ctx, rec.im_url, new_auth)
        try:
            owners = lc.push_auth(name, new_client, keep_old=keep_old)
        finally:
            new_client.close()
    data = {"name": name, "infra_id": rec.infra_id, "owners": owners, "replaced": not keep_old}
    hint = f"\nnow use {new_auth} as your auth file (PROVISION_AUTH or --auth)" if new_auth else ""
    emit(data, output, f"cluster {name}: IM credential pushed; owners now: {', '.join(owners)}{hint}")


@app.command()
def destroy(
    ctx: typer.Context,
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Tell IM to delete even if some cloud resources resist."),
    output: OutputFormat = OutputOption,
) -> None:
    """Destroy the cluster in IM, check it is gone, and forget it (an edge cluster: forget it, hosts untouched)."""
    with service(ctx, output) as lc:
        try:
            edge = lc.record(name).kind is ClusterKind.EDGE
        except NotFound:  # asked as for any cluster; destroy then says it is unknown
            edge = False
        if edge:
            question = f"Forget edge cluster {name} (its hosts are left as they are)?"
        else:
            question = f"Destroy cluster {name} and all its VMs?"
        confirm(question, yes=yes, what=f"destroy cluster {name}")
        result = lc.destroy(name, force=force)
    if output is OutputFormat.json:
        emit(result.as_dict(), output)
    elif result.kind == "edge":
        message(
            f"edge cluster {name}: record and local files removed ({', '.join(result.removed)}); "
            "hosts untouched (K3s and the add-ons still run on them)"
        )
    else:
        message(f"cluster {name} destroyed; nothing left in IM")


@app.command()
def ssh(
    ctx: typer.Context,
    name: str,
    command: list[str] = typer.Argument(None, help="A command to run instead of a shell (after --)."),
    vm: str | None = typer.Option(None, "--vm", help="VM id (default: the front-end)."),
    print_only: bool = typer.Option(False, "--print", help="Print the ssh command instead of running it."),
) -> None:
    """Open SSH to the front-end (or a VM, through the front-end when it has no public IP)."""
    from provisioner.ansible.inventory import key_dir, known_hosts_path, write_key
    from provisioner.privfs import ensure_private_dir, write_secret_file

    with service(ctx, OutputFormat.text) as lc:
        target, jump = lc.ssh_target(name, vm)
        home = lc.home

    def identity(host: VMInfo) -> list[str]:
        key = host.credentials.private_key
        if not key:
            return []
        return ["-i", str(write_key(home, name, f"vm-{host.id}", key)), "-o", "IdentitiesOnly=yes"]

    password_file: Path | None = None
    if not target.credentials.private_key:
        if not target.credentials.password:
            raise OperationFailed(f"IM has neither a private key nor a password for VM {target.id} of {name!r}")
        # Password login: the password goes to a 0600 file next to the keys, never to the output.
        ensure_private_dir(key_dir(home, name))
        password_file = key_dir(home, name) / f"vm-{target.id}.password"
        write_secret_file(password_file, target.credentials.password + "\n")
    known = known_hosts_path(home, name)
    known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The cluster's pinned host keys (shared with install/verify): new keys are recorded, changed ones refused.
    pin = ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=accept-new"]
    user = target.credentials.username or "root"
    host = target.public_ip or target.private_ip
    argv = ["ssh", *identity(target), *pin]
    if jump is not None:
        # ProxyCommand, not -J: options given here would not apply to a -J jump host (its key pin included).
        proxy = ["ssh", "-W", "%h:%p", *identity(jump), *pin]
        proxy.append(f"{jump.credentials.username or 'root'}@{jump.public_ip or jump.private_ip}")
        argv += ["-o", f"ProxyCommand={shlex.join(proxy)}"]
    argv += [f"{user}@{host}", *(command or [])]
    if password_file is not None:
        message(f"VM {target.id} of {name} logs in with a password: it is in {password_file} (0600)")
    if print_only:
        emit(argv, OutputFormat.text, shlex.join(argv))
        return
    os.execvp("ssh", argv)  # noqa: S606 - replaces this process with ssh, no shell involved


@app.command()
def sync(
    ctx: typer.Context,
    im_url: str | None = typer.Option(
        None, "--im-url", help="The IM endpoint to sync with (default: the configured one, or the local IM)."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Rebuild the local registry from IM (adopt this tool's infrastructures, forget deleted ones).

    A cluster IM answers 404 for is forgotten; one it will not show these credentials is kept (not visible).
    When IM moved: clusters recorded at another endpoint whose infrastructure the synced endpoint holds are
    re-pointed to it (sync --im-url NEW)."""
    if im_url is not None:
        app_state = state(ctx)
        app_state.flags["im_url"] = im_url
        app_state._settings = None  # resolved again with this endpoint
    with service(ctx, output) as lc:
        report = lc.sync()

    def text() -> str:
        lines = [
            f"adopted: {human(report.adopted)}",
            f"updated: {human(report.updated)}",
            f"forgotten: {human(report.forgotten)}",
        ]
        if report.moved:
            lines.append(f"moved (re-pointed to this IM): {human(report.moved)}")
        if report.not_visible:
            lines.append(f"not visible with these credentials (kept): {human(report.not_visible)}")
        return "\n".join(lines)

    emit(asdict(report), output, text)


@app.command()
def inventory(
    ctx: typer.Context,
    name: str,
    path: Path | None = typer.Option(
        None, "--path", help="Where to write it (default: $PROVISION_HOME/inventories/NAME/hosts.yml)."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Write the cluster's Ansible inventory (groups front and wn; keys 0600; workers jump through the front)."""
    with stack_service(ctx, output) as stack:
        inv, written = stack.write_inventory(name, path)
    data = {
        "cluster": name,
        "path": str(written),
        "known_hosts": str(stack.pins(name).path),
        "hosts": [
            {"name": h.name, "group": h.group, "address": h.address, "user": h.user, "jump": h.jump} for h in inv.hosts
        ],
    }
    emit(
        data,
        output,
        lambda: (
            f"wrote {written} ({plural(len(inv.hosts), 'host')})\n"
            + table(
                ["GROUP", "HOST", "ADDRESS", "USER", "VIA"],
                [(h.group, h.name, h.address, h.user, h.jump) for h in inv.hosts],
                indent=2,
            )
        ),
    )


@app.command("install")
def install_cmd(
    ctx: typer.Context,
    name: str,
    components: str | None = ComponentsOption,
    preflight: bool = PreflightOption,
    path: Path | None = typer.Option(None, "--inventory-path", help="Where to write the inventory."),
    ssh_timeout: float = SSHTimeoutOption,
    playbook_timeout: float = PlaybookTimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Install the add-ons (Knative, YuniKorn, MinIO, OneData, OSCAR, registry) with our playbooks.

    An IM cluster must be configured (see: provision cluster status NAME); a partial install adds to what the
    cluster has."""
    from provisioner.addons import parse_components

    chosen = parse_components(components)
    with stack_service(ctx, output, ssh_timeout, playbook_timeout) as stack:
        report = stack.install(name, chosen, preflight_only=preflight, inventory_path=path)
    emit(report.as_dict(), output, lambda: install_text(report))


@app.command()
def verify(
    ctx: typer.Context,
    name: str,
    oscar_url: str | None = typer.Option(
        None,
        "--oscar-url",
        help="OSCAR's URL (default: the cluster's oscar_endpoint output, falling back to NodePort 30301 on the "
        "front-end when it does not connect; on edge clusters http://FRONT:30301/).",
    ),
    timeout: float = typer.Option(20.0, "--timeout", help="Seconds each check may take."),
    output: OutputFormat = OutputOption,
) -> None:
    """Check the cluster: SSH to every node, all nodes Ready, OSCAR healthy and wired as asked (exit 1 if not)."""
    from provisioner.addons import fail_if_not_ok

    with stack_service(ctx, output) as stack:
        report = stack.verify(name, oscar_url=oscar_url, timeout=timeout)
    emit(report.as_dict(), output, lambda: verify_text(report))
    sys.stdout.flush()
    fail_if_not_ok(report)
