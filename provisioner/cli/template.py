"""``provision template``: list, show, render and validate our TOSCA templates.

Parse the options, call ``provisioner.tosca``, print. Errors are raised (``InputError`` and friends) and shown
by the main app; nothing reaches IM unless ``validate`` is asked to (or may) run IM's dry run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from provisioner import tosca
from provisioner.cli.common import OutputFormat, OutputOption, emit, message, state
from provisioner.cli.render import plural, table
from provisioner.errors import InputError
from provisioner.settings import Settings

app = typer.Typer(help="Our TOSCA templates: list, show inputs, render for a site, validate.", no_args_is_help=True)

SetOption = typer.Option(
    [], "--set", metavar="KEY=VALUE", help="An input value (repeatable); parsed by the input's type."
)
InputsOption = typer.Option(None, "--inputs", metavar="FILE", help="A YAML file mapping input names to values.")


def _raw_inputs(inputs_file: Path | None, sets: list[str]) -> dict[str, Any]:
    raw: dict[str, Any] = tosca.load_inputs_file(inputs_file) if inputs_file is not None else {}
    raw.update(tosca.parse_set_options(sets))  # --set wins over the file
    return raw


@app.command("list")
def list_cmd(output: OutputFormat = OutputOption) -> None:
    """The templates, with their descriptions."""
    rows = [{"name": name, "description": tosca.load_schema(name).description} for name in tosca.list_templates()]
    emit(rows, output, lambda: table(["NAME", "DESCRIPTION"], [(r["name"], r["description"]) for r in rows]))


@app.command()
def show(
    name: str = typer.Argument(..., help="Template name (see: provision template list)."),
    output: OutputFormat = OutputOption,
) -> None:
    """A template's inputs: type, default, constraints, whether secret."""
    schema = tosca.load_schema(name)
    data = {
        "template": schema.name,
        "description": schema.description,
        "inputs": {spec.name: spec.describe() for spec in schema.inputs.values()},
        "installs_afterwards": [a.name + (f" (when {a.when})" if a.when else "") for a in schema.addons],
    }
    emit(data, output, lambda: _show_text(schema))


def _show_text(schema: tosca.TemplateSchema) -> str:
    lines = [f"{schema.name}: {schema.description}", ""]
    rows = []
    for spec in schema.inputs.values():
        rules = spec.constraints.describe(spec.type)
        if spec.rule:
            rules = [r for r in rules if not r.startswith("matches ")] + [spec.rule]
        if spec.empty_ok:
            rules.append("'' = not set")
        if spec.requires:
            rules.append("needs " + ", ".join(spec.requires))
        rows.append((spec.name, spec.type, spec.describe()["default"], spec.secret, spec.description, "; ".join(rules)))
    lines.append(table(["INPUT", "TYPE", "DEFAULT", "SECRET", "DESCRIPTION", "RULES"], rows))
    return "\n".join(lines)


@app.command()
def sites(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The sites: built in (local-sim) and from the config file's `sites:` (each one validated)."""
    configured = state(ctx).settings.sites
    rows = [tosca.resolve_site(name, configured).describe() for name in tosca.known_sites(configured)]
    emit(
        rows,
        output,
        lambda: table(
            ["NAME", "KIND", "CLOUD ID", "IMAGE"], [(r["name"], r["kind"], r["cloud_id"], r["image"]) for r in rows]
        ),
    )


@app.command()
def render(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Template name (see: provision template list)."),
    site: str = typer.Option(..., "--site", help="Site to render for (local-sim, or one from the config file)."),
    sets: list[str] = SetOption,
    inputs_file: Path | None = InputsOption,
    show_secrets: bool = typer.Option(False, "--show-secrets", help="Print secret values instead of ***."),
    cluster: str | None = typer.Option(
        None, "--cluster", help="Cluster name: its generated secrets are kept in <home>/secrets/<cluster>.yaml."
    ),
    deployment_id: str = typer.Option("preview", "--deployment-id", help="Recorded in the metadata."),
) -> None:
    """Print the TOSCA document for NAME on SITE (secrets masked unless --show-secrets)."""
    settings = state(ctx).settings
    schema = tosca.load_schema(name)
    target = tosca.resolve_site(site, settings.sites)
    raw = _raw_inputs(inputs_file, sets)
    store = tosca.SecretStore(settings.home, cluster) if cluster is not None else None
    inputs = tosca.prepare_inputs(schema, raw, secrets_store=store)
    doc = tosca.render(name, target, inputs, cluster_name=cluster or name, deployment_id=deployment_id)
    if inputs.generated:
        kept = f"kept in {store.path}" if store is not None else "not kept (use --cluster NAME to keep them)"
        message(f"generated secrets: {', '.join(sorted(inputs.generated))}; {kept}")
    shown = doc if show_secrets else tosca.masked(doc, inputs.secret_values)
    typer.echo(tosca.dump(shown), nl=False)


@app.command()
def validate(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="NAME|FILE", help="A template name, or a rendered TOSCA file."),
    site: str | None = typer.Option(None, "--site", help="Site to render NAME for (default: local-sim)."),
    sets: list[str] = SetOption,
    inputs_file: Path | None = InputsOption,
    im: bool | None = typer.Option(
        None,
        "--im/--no-im",
        help="Also ask IM to parse it (POST ?dry_run=1). Default: when an IM endpoint is configured.",
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Validate offline (tosca-parser; our schema too for our templates); then, optionally, with IM's dry run.

    FILE may be any TOSCA file: its imports are resolved offline (files next to it, GRyCAP's custom types from our
    stub); an import that would need the network is refused with one line (IM's dry run, --im, fetches it)."""
    settings = state(ctx).settings
    doc, what, base_dir = _document_to_validate(ctx, target, site, sets, inputs_file)
    try:
        checked = tosca.validate_offline(doc, base_dir=base_dir)
    except tosca.OfflineImportError as exc:
        if im is not True:
            raise
        # --im asked for IM's own check: IM fetches what this machine cannot.
        result: dict[str, Any] = {"target": what, "offline": "skipped", "checked": [], "im": None}
        lines = [f"{what}: offline validation skipped ({exc.message})"]
    else:
        result = {"target": what, "offline": "ok", "checked": checked, "im": None}
        lines = [f"{what}: offline validation ok ({', '.join(checked)})"]

    if im is not False:
        url, skipped = _im_for_dry_run(settings, doc, forced=bool(im))
        if url is None:
            lines.append(f"IM dry run: skipped ({skipped})")
            result["im"] = "skipped"
        else:
            from provisioner.cli.common import im_client

            with im_client(ctx) as client:
                plan = client.dry_run(tosca.for_im(doc))
            result["im"] = {"url": url, "clouds": [asdict(cloud) for cloud in plan]}
            summary = ", ".join(f"{c.cloud_id}: {plural(len(c.vms), 'VM')}" for c in plan) or "nothing to launch"
            lines.append(f"IM dry run at {url}: accepted ({summary})")
    emit(result, output, "\n".join(lines))


def _im_for_dry_run(settings: Settings, doc: dict[str, Any], *, forced: bool) -> tuple[str | None, str]:
    """The IM URL to dry-run against, or None and why not.

    Without --im: the configured IM (--im-url / PROVISION_IM_URL); or the running local IM, but only for a document
    that needs no network (no imports: a local-sim render), as the local IM has only the simulated cloud.
    """
    from provisioner.cli.common import im_endpoint

    if not forced and settings.im_url is None and doc.get("imports"):
        return None, "no IM configured for a real site; use --im-url/--auth, or --im to force"
    try:
        url, _ = im_endpoint(settings)
    except InputError as exc:
        if forced:
            raise
        return None, f"{exc.message}; use --im-url/--auth, or: provision local-im start"
    return url, ""


def _document_to_validate(
    ctx: typer.Context, target: str, site: str | None, sets: list[str], inputs_file: Path | None
) -> tuple[dict[str, Any], str, Path | None]:
    if target in tosca.list_templates():
        settings = state(ctx).settings
        chosen = tosca.resolve_site(site or tosca.LOCAL_SIM, settings.sites)
        inputs = tosca.prepare_inputs(target, _raw_inputs(inputs_file, sets), secrets_store=None)
        doc = tosca.render(target, chosen, inputs, cluster_name=target, deployment_id="validate")
        return doc, f"template {target} on {chosen.name}", None
    path = Path(target)
    if not path.is_file():
        known = ", ".join(tosca.list_templates())
        raise InputError(f"is neither a template ({known}) nor a file: {target!r}", field="NAME|FILE")
    if site is not None or sets or inputs_file is not None:
        raise InputError("--site, --set and --inputs apply to a template name, not to a file", field="NAME|FILE")
    return tosca.read_tosca_file(path, field="NAME|FILE"), str(path), path.resolve().parent
