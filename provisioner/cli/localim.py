"""``provision local-im``: a local IM on 127.0.0.1 with the simulated (Dummy) cloud."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path

import typer

from provisioner import localim
from provisioner.cli.common import OutputFormat, OutputOption, emit, message, state
from provisioner.errors import OperationFailed
from provisioner.settings import ENV_IM_PIP_ARGS

app = typer.Typer(help="Install, start and stop a local IM (simulated cloud) on 127.0.0.1.", no_args_is_help=True)


def _venv(ctx: typer.Context, venv: Path | None) -> Path:
    return venv or state(ctx).settings.local_im_venv


@app.command()
def install(
    ctx: typer.Context,
    venv: Path | None = typer.Option(None, help="Where to create IM's venv (default: <home>/im-venv)."),
    force: bool = typer.Option(False, help="Reinstall even if IM is already there."),
) -> None:
    """Install IM into its own venv (its pins never touch the project's)."""
    import os

    target = _venv(ctx, venv)
    message(f"installing IM {localim.IM_VERSION} into {target} ...")
    extra = shlex.split(os.environ.get(ENV_IM_PIP_ARGS, ""))
    done = localim.install(target, extra_pip_args=extra, force=force)
    message(f"IM {localim.IM_VERSION} {'installed' if done else 'already installed'} in {target}")


@app.command()
def start(
    ctx: typer.Context,
    port: int | None = typer.Option(
        None,
        help="Port on 127.0.0.1 (default: the one it had, so recorded clusters keep working; else a free one).",
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Start with an empty database (forget every infrastructure)."),
    venv: Path | None = typer.Option(None, help="IM's venv (default: <home>/im-venv)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Start IM on 127.0.0.1, wait until it answers, print its URL."""
    settings = state(ctx).settings
    info = localim.start(settings.local_im_dir, _venv(ctx, venv), port=port, fresh=fresh)
    if output is OutputFormat.text:
        message(f"local IM running (pid {info.pid}); auth file: {info.auth_file}")
    emit(asdict(info), output, info.url)


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the local IM (SIGTERM, then SIGKILL after a grace period). Its data is kept."""
    outcome = localim.stop(state(ctx).settings.local_im_dir)
    message("no local IM was running" if outcome is None else f"local IM stopped ({outcome})")


@app.command()
def status(
    ctx: typer.Context,
    venv: Path | None = typer.Option(None, help="IM's venv (default: <home>/im-venv)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Say whether the local IM runs, and where. Exits 1 when it does not run."""
    settings = state(ctx).settings
    current = localim.status(settings.local_im_dir, _venv(ctx, venv))
    data = asdict(current)

    def text() -> str:
        if current.info is None:
            return f"not running (IM {'installed' if current.installed else 'not installed'} in {current.venv})"
        version = f"IM {current.version}" if current.version else "IM version unknown"
        return f"running at {current.info.url} (pid {current.info.pid}, {version})"

    emit(data, output, text)
    if not current.running:
        raise OperationFailed("the local IM is not running", hint="run: provision local-im start")
