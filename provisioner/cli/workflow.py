"""``provision workflow``: serverless workflows (OSCAR's FDL) across the clusters this tool manages.

Parse the options, call ``provisioner.workflow``, print. Problems in the file are raised as ``FdlInvalid`` (one
``FILE:LINE: field: rule`` line each, exit 2) before anything is sent.
"""

from __future__ import annotations

from pathlib import Path

import typer

from provisioner.cli.common import OutputFormat, OutputOption, emit, message, state
from provisioner.settings import Settings

app = typer.Typer(
    help="Serverless workflows (OSCAR's FDL) across the clusters provision manages: validate.",
    no_args_is_help=True,
)

FdlArgument = typer.Argument(
    ..., metavar="FDL", help="The workflow's FDL file (OSCAR's Functions Definition Language)."
)


def _known_clusters(settings: Settings) -> frozenset[str]:
    from provisioner.state.interface import open_store
    from provisioner.state.store import DB_FILENAME
    from provisioner.workflow.targets import known_cluster_ids

    if not (settings.home / DB_FILENAME).is_file():  # nothing recorded yet: nothing created by looking
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
