"""``provision edge``: the K3s route on the user's own (edge, ARM) hosts, with no IM; then the same add-ons."""

from __future__ import annotations

from pathlib import Path

import typer

from provisioner.cli.cluster import (
    ComponentsOption,
    PlaybookTimeoutOption,
    PreflightOption,
    SSHTimeoutOption,
    _inputs,
    install_text,
    stack_service,
)
from provisioner.cli.common import OutputFormat, OutputOption, emit

app = typer.Typer(help="Edge clusters: K3s on hosts you already have (no IM), then the add-ons.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Cluster name (lowercase letters, digits, '-')."),
    inventory: Path = typer.Option(
        ..., "--inventory", "-i", help="Your Ansible inventory: group front (the K3s server, one host) and wn."
    ),
    components: str | None = ComponentsOption,
    sets: list[str] = typer.Option([], "--set", help="An input of the oscar template as KEY=VALUE (repeatable)."),
    inputs_file: Path | None = typer.Option(None, "--inputs", help="A YAML file of inputs."),
    preflight: bool = PreflightOption,
    ssh_timeout: float = SSHTimeoutOption,
    playbook_timeout: float = PlaybookTimeoutOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Record the edge cluster, install K3s on its hosts, then the add-ons (running it again converges)."""
    from provisioner.addons import parse_components

    chosen = parse_components(components)
    raw = _inputs(sets, inputs_file)
    with stack_service(ctx, output, ssh_timeout, playbook_timeout) as stack:
        report = stack.edge_create(name, inventory, components=chosen, raw_inputs=raw, preflight_only=preflight)
    emit(report.as_dict(), output, lambda: install_text(report))
