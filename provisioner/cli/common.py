"""What every command group shares: settings from the global flags, output rendering, the IM client."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from provisioner.errors import InputError
from provisioner.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from provisioner.im import IMClient


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"


OutputOption = typer.Option(OutputFormat.text, "--output", "-o", help="Output format: text or json.")


@dataclass
class AppState:
    """The global flags, resolved into Settings on first use."""

    flags: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.flags)
        return self._settings


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def message(text: str) -> None:
    """A human message: always stderr, so stdout stays clean for data."""
    stderr_console().print(text, markup=False)


def emit(data: Any, fmt: OutputFormat, text: Callable[[], str] | str | None = None) -> None:
    """Print a command's data: one JSON document on stdout, or the text rendering."""
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        return
    rendered = text() if callable(text) else text
    if rendered is None:
        rendered = json.dumps(data, indent=2, default=str)
    if rendered:
        sys.stdout.write(rendered.rstrip("\n") + "\n")


def im_endpoint(settings: Settings) -> tuple[str, Path]:
    """The IM URL and auth file to use: the configured ones, or the running local IM's."""
    from provisioner import localim

    url = settings.im_url
    auth_file = settings.auth_file
    if url is None or auth_file is None:
        local = localim.read_state(settings.local_im_dir)
        if local is not None:
            url = url or local.url
            auth_file = auth_file or Path(local.auth_file)
    if url is None:
        raise InputError(
            "no IM endpoint configured",
            field="--im-url",
            hint="set --im-url or PROVISION_IM_URL, or start the local IM: provision local-im start",
        )
    if auth_file is None:
        raise InputError(
            "no auth file configured", field="--auth", hint="set --auth or PROVISION_AUTH_FILE to your IM auth file"
        )
    return url, auth_file


def im_client(ctx: typer.Context) -> IMClient:
    from provisioner.credentials import AuthData
    from provisioner.im import IMClient, Timeouts

    settings = state(ctx).settings
    url, auth_file = im_endpoint(settings)
    auth = AuthData.load(auth_file)
    return IMClient(
        url,
        auth,
        timeouts=Timeouts(connect=settings.connect_timeout, read=settings.read_timeout),
        verify=settings.verify,
    )
