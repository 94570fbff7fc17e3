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
    confirm,
    emit,
    lifecycle,
    message,
    progress_for,
    run_progress_for,
)
from provisioner.errors import InputError, OperationFailed
from provisioner.triage import see_runbook

if TYPE_CHECKING:
    from provisioner.addons import InstallReport, Stack, VerifyReport
    from provisioner.lifecycle import ClusterView, Lifecycle

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
def stack_service(ctx: typer.Context, output: OutputFormat, ssh_timeout: float = 600.0) -> Iterator[Stack]:
    """The add-on service (inventory, SSH, ansible-runner), with progress shown as ``service`` shows it."""
    from provisioner.addons import Stack

    progress = run_progress_for(ctx, output)
    lc = lifecycle(ctx)
    try:
        yield Stack(
            lc,
            on_event=progress.event if progress else None,
            on_ssh=progress.ssh if progress else None,
            ssh_timeout=ssh_timeout,
        )
    finally:
        if progress is not None:
            progress.close()
        lc.close()


ComponentsOption = typer.Option(
    None,
    "--components",
    help="Comma-separated add-ons: knative,yunikorn,minio,onedata,oscar,registry (default: what the inputs ask for).",
)
PreflightOption = typer.Option(False, "--preflight", help="Run only the roles' preflight checks; change nothing.")
SSHTimeoutOption = typer.Option(600.0, "--ssh-timeout", help="Seconds to wait for every node to answer SSH.")


def install_text(report: InstallReport) -> str:
    what = "preflight passed" if report.preflight_only else "installed"
    lines = [f"{report.cluster}: {what}: {', '.join(report.components) or 'k3s only'}"]
    for host, counts in sorted(report.stats.items()):
        lines.append(
            f"  {host:<12} ok={counts.get('ok', 0)} changed={counts.get('changed', 0)} "
            f"skipped={counts.get('skipped', 0)}"
        )
    lines.append(f"  inventory {report.inventory}")
    lines.append(f"  ansible artifacts {report.artifacts}")
    return "\n".join(lines)


def verify_text(report: VerifyReport) -> str:
    marks = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}
    lines = [f"{report.cluster}: {'all checks passed' if report.ok else 'some checks failed'}"]
    lines += [f"  {marks.get(c.status, c.status)}  {c.name:<18} {c.detail}" for c in report.checks]
    return "\n".join(lines)


def _inputs(sets: list[str], inputs_file: Path | None) -> dict[str, Any]:
    from provisioner import tosca

    raw: dict[str, Any] = {}
    if inputs_file is not None:
        raw.update(tosca.load_inputs_file(inputs_file))
    raw.update(tosca.parse_set_options(sets))
    return raw


def view_text(view: ClusterView) -> str:
    lines = [
        f"cluster {view.name}: {view.state or 'unknown'} ({view.workers if view.workers is not None else '?'} workers)",
        f"  infrastructure {view.infra_id or '-'} at {view.im_url} (template {view.template}, site {view.site})",
    ]
    lines += [
        f"  vm {vm.id:>3}  {vm.role:<5} {vm.state or '?':<12} {vm.private_ip or '-':<15} {vm.public_ip or '-'}"
        for vm in view.vms
    ]
    if view.note:
        lines.append(f"  note: {view.note}")
    if view.cause:
        from provisioner.credentials import mask

        lines.append(f"  cause: {view.cause['cause']}: {view.cause['summary']} ({mask(view.cause['evidence'])})")
        lines.append(f"  {see_runbook(view.cause['runbook'])}")
    return "\n".join(lines)


def emit_view(view: ClusterView, output: OutputFormat) -> None:
    emit(view.as_dict(), output, lambda: view_text(view))


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
    dry_run: bool = typer.Option(False, "--dry-run", help="Render, validate and ask IM for a plan; create nothing."),
    install: bool = typer.Option(False, "--install", help="Once configured, install the add-ons (cluster install)."),
    components: str | None = ComponentsOption,
    ssh_timeout: float = SSHTimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Create a cluster (or resume the one of the same name and inputs)."""
    from provisioner.addons import parse_components

    raw = _inputs(sets, inputs_file)
    chosen = parse_components(components)
    if install and not wait:
        raise InputError("--install needs the cluster configured first: drop --no-wait", field="--install")
    with service(ctx, output) as lc:
        if dry_run:
            plan = lc.dry_run(name, template=template, site=site, inputs=raw)
            emit(
                asdict(plan),
                output,
                lambda: (
                    plan.tosca
                    + "\n# IM would launch: "
                    + "; ".join(f"{c['cloud_id']} ({c['cloud_type']}): {len(c['vms'])} VMs" for c in plan.clouds)
                ),
            )
            return
        view = lc.create(name, template=template, site=site, inputs=raw, wait=wait, timeout=timeout)
    if not install:
        emit_view(view, output)
        return
    with stack_service(ctx, output, ssh_timeout) as stack:
        report = stack.install(name, chosen)
    emit(
        {"cluster": view.as_dict(), "install": report.as_dict()},
        output,
        lambda: view_text(view) + "\n" + install_text(report),
    )


@app.command("list")
def list_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The clusters in the local registry, with their last known state (no IM call)."""
    with service(ctx, output) as lc:
        views = lc.list_clusters()
    emit(
        [v.as_dict() for v in views],
        output,
        lambda: (
            "\n".join(
                f"{v.name:<20} {v.state or '-':<13} {v.workers if v.workers is not None else '-':>3} workers  "
                f"{v.template:<10} {v.site:<12} {v.infra_id or '-'}"
                for v in views
            )
            or "no clusters"
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
    from provisioner.credentials import mask

    with service(ctx, output) as lc:
        found = lc.outputs(name)
        secrets = [] if show_secrets else lc.secret_values(name)
    shown = {key: _mask_value(value, secrets, mask) for key, value in found.items()}
    emit(shown, output, lambda: "\n".join(f"{key}: {value}" for key, value in shown.items()))


def _mask_value(value: Any, secrets: list[str], mask: Any) -> Any:
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, list):
        return [_mask_value(item, secrets, mask) for item in value]
    if isinstance(value, dict):
        return {key: _mask_value(item, secrets, mask) for key, item in value.items()}
    return value


@app.command()
def logs(
    ctx: typer.Context,
    name: str,
    vm: str | None = typer.Option(None, "--vm", help="One VM's log instead of the whole infrastructure's."),
    output: OutputFormat = OutputOption,
) -> None:
    """The contextualization log, with the failing task and host picked out."""
    from provisioner.credentials import mask

    with service(ctx, output) as lc:
        report = lc.logs(name, vm)
    data = {**asdict(report), "log": mask(report.log)}
    data["cause"] = {k: mask(v) for k, v in report.cause.as_dict().items()} if report.cause else None

    def text() -> str:
        head = f"failed: {mask(report.reason)}\n" if report.reason else ""
        if report.cause is not None:
            head += f"cause: {mask(report.cause.line)}\n{report.cause.see}\n"
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
) -> None:
    """Destroy the cluster in IM, check it is gone, and forget it."""
    confirm(f"Destroy cluster {name} and all its VMs?", yes=yes, what=f"destroy cluster {name}")
    with service(ctx, OutputFormat.text) as lc:
        lc.destroy(name, force=force)
    message(f"cluster {name} destroyed; nothing left in IM")


@app.command(context_settings={"allow_interspersed_args": False})
def ssh(
    ctx: typer.Context,
    name: str,
    command: list[str] = typer.Argument(None, help="A command to run instead of a shell (after --)."),
    vm: str | None = typer.Option(None, "--vm", help="VM id (default: the front-end)."),
    print_only: bool = typer.Option(False, "--print", help="Print the ssh command instead of running it."),
) -> None:
    """Open SSH to the front-end (or a VM, through the front-end when it has no public IP)."""
    from provisioner.ansible.inventory import known_hosts_path, write_key

    with service(ctx, OutputFormat.text) as lc:
        target, jump = lc.ssh_target(name, vm)
        home = lc.home
    key = target.credentials.private_key
    if not key:
        raise OperationFailed(f"IM has no private key for VM {target.id} of {name!r}; use its password login")
    keyfile = write_key(home, name, f"vm-{target.id}", key)
    known = known_hosts_path(home, name)
    known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The cluster's pinned host keys (shared with install/verify): new keys are recorded, changed ones refused.
    pin = ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=accept-new"]
    user = target.credentials.username or "root"
    host = target.public_ip or target.private_ip
    argv = ["ssh", "-i", str(keyfile), "-o", "IdentitiesOnly=yes", *pin]
    if jump is not None:
        # ProxyCommand, not -J: options given here would not apply to a -J jump host (its key pin included).
        proxy = ["ssh", "-W", "%h:%p", "-i", str(keyfile), "-o", "IdentitiesOnly=yes", *pin]
        proxy.append(f"{jump.credentials.username or 'root'}@{jump.public_ip or jump.private_ip}")
        argv += ["-o", f"ProxyCommand={shlex.join(proxy)}"]
    argv += [f"{user}@{host}", *(command or [])]
    if print_only:
        emit(argv, OutputFormat.text, shlex.join(argv))
        return
    os.execvp("ssh", argv)  # noqa: S606 - replaces this process with ssh, no shell involved


@app.command()
def sync(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """Rebuild the local registry from IM (adopt this tool's infrastructures, forget deleted ones)."""
    with service(ctx, output) as lc:
        report = lc.sync()
    emit(
        asdict(report),
        output,
        lambda: (
            f"adopted: {', '.join(report.adopted) or '-'}\nupdated: {', '.join(report.updated) or '-'}\n"
            f"forgotten: {', '.join(report.forgotten) or '-'}"
        ),
    )


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
            f"wrote {written} ({len(inv.hosts)} hosts)\n"
            + "\n".join(
                f"  {h.group:<5} {h.name:<8} {h.user}@{h.address}" + (f" via {h.jump}" if h.jump else "")
                for h in inv.hosts
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
    output: OutputFormat = OutputOption,
) -> None:
    """Install the add-ons (Knative, YuniKorn, MinIO, OneData, OSCAR, registry) with our playbooks.

    An IM cluster must be configured (see: provision cluster status NAME); a partial install adds to what the
    cluster has."""
    from provisioner.addons import parse_components

    chosen = parse_components(components)
    with stack_service(ctx, output, ssh_timeout) as stack:
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
