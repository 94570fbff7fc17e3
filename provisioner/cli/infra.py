"""``provision infra``: direct access to IM infrastructures (what im_client does, with typed output)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from provisioner import tosca
from provisioner.cli.common import OutputFormat, OutputOption, confirm, emit, im_client, message
from provisioner.cli.render import human, plural, table
from provisioner.errors import InputError

app = typer.Typer(
    help="Low-level IM calls: infrastructures by id, and a cloud's images and quotas.", no_args_is_help=True
)


@app.command("version")
def version_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """IM's version, and whether IM accepts the credentials (an authenticated call: the list of infrastructures).

    Exit 3 when IM refuses them. IM without a user database accepts any user name and password (each is a user
    of its own): "accepted" then means only that IM took them."""
    with im_client(ctx) as client:
        found = client.version()
        owned = client.list_infrastructures()
    emit(
        {"im_url": client.url, "version": found, "credentials": "accepted", "infrastructures": len(owned)},
        output,
        f"IM {found} at {client.url}; credentials accepted ({len(owned)} infrastructures)",
    )


@app.command("list")
def list_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The infrastructures of this IM user."""
    with im_client(ctx) as client:
        ids = client.list_infrastructures()
    emit(ids, output, lambda: table(["INFRASTRUCTURE"], [(i,) for i in ids], empty="no infrastructures"))


@app.command()
def create(
    ctx: typer.Context,
    template: Path = typer.Argument(..., help="A TOSCA file (YAML)."),
    async_: bool = typer.Option(False, "--async", help="Return at once; IM creates the VMs in the background."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only ask IM to parse the template."),
    validate: bool = typer.Option(
        True, "--validate/--no-validate", help="Validate offline first, as `template validate FILE` does."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """POST a TOSCA template to IM and print the new infrastructure id.

    Nothing is sent for a file that is not a TOSCA mapping, that holds masked secrets (***), or (unless
    --no-validate) that fails offline validation."""
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {template}: {exc.strerror}", field="TEMPLATE") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read {template}: not UTF-8 text", field="TEMPLATE") from None
    doc = tosca.read_tosca_file(template, field="TEMPLATE")
    tosca.check_no_mask(doc)  # even with --no-validate: a masked render would deploy *** as passwords
    if validate:
        tosca.validate_offline(doc, base_dir=template.resolve().parent)
    with im_client(ctx) as client:
        if dry_run:
            plan = client.dry_run(text)
            emit(
                [asdict(cloud) for cloud in plan],
                output,
                lambda: (
                    "\n".join(
                        f"{c.cloud_id} ({c.cloud_type}): {plural(len(c.vms), 'VM')}, {plural(len(c.storage), 'disk')}"
                        for c in plan
                    )
                    or "IM would launch nothing"
                ),
            )
            return
        result = client.create(text, async_=async_)
    emit(asdict(result), output, result.infra_id)


@app.command()
def state(ctx: typer.Context, infra_id: str, output: OutputFormat = OutputOption) -> None:
    """The aggregated state and the per-VM states."""
    with im_client(ctx) as client:
        found = client.state(infra_id)

    def text() -> str:
        vms = table(["VM", "STATE"], found.vm_states.items(), indent=2)
        return f"{human(found.state)}\n{vms}" if vms else human(found.state)

    emit(asdict(found), output, text)


@app.command()
def outputs(ctx: typer.Context, infra_id: str, output: OutputFormat = OutputOption) -> None:
    """The TOSCA outputs of an infrastructure."""
    with im_client(ctx) as client:
        found = client.outputs(infra_id)
    emit(found, output, lambda: table(["OUTPUT", "VALUE"], found.items(), empty="no outputs"))


@app.command()
def contmsg(ctx: typer.Context, infra_id: str, output: OutputFormat = OutputOption) -> None:
    """The contextualization log."""
    with im_client(ctx) as client:
        text = client.contmsg(infra_id)
    emit({"infra_id": infra_id, "contmsg": text}, output, text)


@app.command()
def vms(ctx: typer.Context, infra_id: str, output: OutputFormat = OutputOption) -> None:
    """The VMs of an infrastructure with their state and addresses."""
    with im_client(ctx) as client:
        infos = [client.vm_info(infra_id, vm_id) for vm_id in client.vm_ids(infra_id)]
    rows = [
        {"id": vm.id, "name": vm.name, "state": vm.state, "private_ip": vm.private_ip, "public_ip": vm.public_ip}
        for vm in infos
    ]
    emit(
        rows,
        output,
        lambda: table(
            ["VM", "NAME", "STATE", "PRIVATE IP", "PUBLIC IP"],
            [(r["id"], r["name"], r["state"], r["private_ip"], r["public_ip"]) for r in rows],
            empty="no VMs",
        ),
    )


@app.command()
def destroy(
    ctx: typer.Context,
    infra_id: str,
    force: bool = typer.Option(False, "--force", help="Delete even if some cloud resources fail to go."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Destroy an infrastructure and every VM in it."""
    confirm(f"Destroy infrastructure {infra_id}?", yes=yes, what=f"destroy infrastructure {infra_id}")
    with im_client(ctx) as client:
        client.destroy(infra_id, force=force)
    message(f"destroyed {infra_id}")


@app.command("images")
def images(ctx: typer.Context, cloud_id: str, output: OutputFormat = OutputOption) -> None:
    """The images a cloud of the auth file offers (its id = the auth line's id, e.g. the site's cloud)."""
    with im_client(ctx) as client:
        found = client.cloud_images(cloud_id)
    data = [{"uri": image.uri, "name": image.name} for image in found]
    emit(data, output, lambda: table(["URI", "NAME"], [(i.uri, i.name) for i in found], empty="no images"))


@app.command("quotas")
def quotas(ctx: typer.Context, cloud_id: str, output: OutputFormat = OutputOption) -> None:
    """A cloud's quotas as IM reads them: used and limit per resource (cores, ram, instances, ...)."""
    with im_client(ctx) as client:
        found = client.cloud_quotas(cloud_id)
    data = {name: {"used": q.used, "limit": q.limit} for name, q in found.items()}

    def text() -> str:
        rows = [(name, q.used, q.limit) for name, q in sorted(found.items())]
        return table(["RESOURCE", "USED", "LIMIT"], rows, empty="IM reports no quotas for this cloud")

    emit(data, output, text)
