"""What every command group shares: settings from the global flags, output rendering, the IM client."""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from provisioner.errors import EXIT_FAILED, InputError
from provisioner.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from provisioner.im import IMClient
    from provisioner.lifecycle import Lifecycle, Progress


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
            from provisioner.state.interface import use_url
            from provisioner.tosca.secrets import use_ref

            self._settings = load_settings(self.flags)
            # Once, as the settings are resolved: every store and lock this command opens uses that backend, and
            # every cluster's secrets come from the team's reference when there is one.
            use_url(self._settings.state_url)
            use_ref(self._settings.secrets_ref)
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


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Go on only with --yes or a "y" at the prompt; "n" is exit 1 ("aborted"), no terminal to ask on exit 2."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError(
            f"refusing to {what} without confirmation (no terminal to ask on)",
            field="--yes",
            hint="pass --yes to go ahead without being asked",
        )
    if not typer.confirm(question, err=True):
        message("aborted")
        raise typer.Exit(EXIT_FAILED)


def emit(data: Any, fmt: OutputFormat, text: Callable[[], str] | str | None = None) -> None:
    """Print a command's data: one JSON document on stdout, or the text rendering.

    ``data`` may be a function returning it, called only when the data is printed (not for a text rendering)."""
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data() if callable(data) else data, indent=2, sort_keys=False, default=str) + "\n")
        return
    rendered = text() if callable(text) else text
    if rendered is None:
        rendered = json.dumps(data() if callable(data) else data, indent=2, default=str)
    if rendered:
        sys.stdout.write(rendered.rstrip("\n") + "\n")


def im_endpoint(settings: Settings) -> tuple[str, Path]:
    """The IM URL and auth file to use: the configured ones, or the running local IM's."""
    url = settings.im_url
    auth_file = settings.auth_file
    if url is None or auth_file is None:
        from provisioner import localim  # only when something is not configured

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


def _client_for(settings: Settings, url: str, auth_file: Path) -> IMClient:
    from provisioner.im import IMClient, Timeouts
    from provisioner.im.auth import AuthData

    return IMClient(
        url,
        AuthData.load(auth_file),
        timeouts=Timeouts(connect=settings.connect_timeout, read=settings.read_timeout),
        verify=settings.verify,
    )


def client_for_auth_file(ctx: typer.Context, url: str, auth_file: Path | None) -> IMClient:
    """A client for ``url`` with the credentials of ``auth_file`` (default: the configured one, read afresh)."""
    settings = state(ctx).settings
    if auth_file is None:
        _, auth_file = im_endpoint(settings)
    return _client_for(settings, url, auth_file)


def im_client(ctx: typer.Context) -> IMClient:
    settings = state(ctx).settings
    url, auth_file = im_endpoint(settings)
    return _client_for(settings, url, auth_file)


def lifecycle(ctx: typer.Context, progress: ProgressLine | None = None) -> Lifecycle:
    """The lifecycle service for this invocation, reporting to ``progress`` when given."""
    from provisioner.lifecycle import Lifecycle

    settings = state(ctx).settings
    try:
        url, auth_file = im_endpoint(settings)
    except InputError as missing:
        from provisioner import localim

        # Commands that only read the registry (cluster list) need no IM; the others raise this when they do.
        # A stopped local IM: its clusters' recorded loopback URLs are used with its kept auth file (a command
        # on one says IM is unreachable, exit 3); commands needing the default endpoint raise ``missing``.
        error = missing
        kept = localim.auth_file_path(settings.local_im_dir)
        local = f"http://{localim.HOST}:"
        kept_auth = settings.auth_file or kept

        def unavailable(im_url: str) -> IMClient:
            if settings.im_url is None and im_url.startswith(local) and kept_auth.exists():
                return _client_for(settings, im_url, kept_auth)
            raise error

        return Lifecycle(settings, client_factory=unavailable, default_im_url="unconfigured", progress=progress)
    return Lifecycle(
        settings,
        client_factory=lambda im_url: _client_for(settings, im_url, auth_file),
        default_im_url=url,
        progress=progress,
    )


class Throttle:
    """Which progress lines to print off a terminal: a new state at once, the same state at most every ``every`` s."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._key: object = None
        self._at: float | None = None

    def due(self, key: object) -> bool:
        now = self._clock()
        if self._at is not None and key == self._key and now - self._at < self._every:
            return False
        self._key, self._at = key, now
        return True


def _plain_line(text: str) -> None:
    """One progress line on stderr (never stdout), flushed: CI logs and cron mails see it when it happens."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def progress_for(ctx: typer.Context, output: OutputFormat) -> ProgressLine | None:
    """The progress display for a command: a live line on a terminal (text mode), plain lines off one."""
    if sys.stderr.isatty():
        return ProgressLine() if output is OutputFormat.text else None
    every = state(ctx).settings.progress_interval
    return ProgressLine(Throttle(every)) if every > 0 else None


def run_progress_for(ctx: typer.Context, output: OutputFormat) -> RunProgress | None:
    """The same for SSH waits and Ansible runs."""
    if sys.stderr.isatty():
        return RunProgress() if output is OutputFormat.text else None
    every = state(ctx).settings.progress_interval
    return RunProgress(Throttle(every)) if every > 0 else None


class ProgressLine:
    """Elapsed time and the VM states: one live line on a TTY, or (given a Throttle) plain lines off one."""

    def __init__(self, plain: Throttle | None = None) -> None:
        self._status: Any = None
        self._plain = plain

    def __call__(self, event: Progress) -> None:
        from collections import Counter

        counts = Counter(event.vm_states.values())
        vms = ", ".join(f"{n} {st}" for st, n in sorted(counts.items())) or "no VMs yet"
        state_text = event.state or ("IM not answering, retrying" if event.phase == "im-unreachable" else "...")
        text = f"{event.cluster}: {state_text} after {event.elapsed:.0f} s ({vms})"
        if self._plain is not None:
            if self._plain.due((event.cluster, event.phase, event.state, vms)):
                _plain_line(text)
            return
        if self._status is None:
            self._status = stderr_console().status(text)  # rich: only on a terminal
            self._status.start()
        else:
            self._status.update(text)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def ssh_waiting(results: list[Any], *, details: bool) -> str:
    """One line on an SSH wait (ssh.wait_ready's round of results): how many answer, the hosts still awaited
    (with why, given ``details``) and the ones given up on (refused)."""
    from provisioner.ansible.ssh import awaited

    ready = sum(1 for r in results if r.ok)
    line = f"waiting for SSH: {ready}/{len(results)} nodes answer"
    waiting = awaited(results)
    if waiting:
        what = "; ".join(f"{r.host} ({r.detail})" for r in waiting) if details else ", ".join(r.host for r in waiting)
        line += f"; still waiting for: {what}"
    refused = [r for r in results if r.given_up]
    if refused:
        line += f"; not waiting for (connection refused): {', '.join(r.host for r in refused)}"
    return line


class SSHWaitLines:
    """Where there is no live line (stderr is not a terminal): a plain line on stderr each time the set of hosts
    still awaited changes, so that a long wait is never silent. Nothing when every host answers at once."""

    def __init__(self) -> None:
        self._last: tuple[str, ...] | None = None

    def __call__(self, results: list[Any]) -> None:
        from provisioner.ansible.ssh import awaited

        waiting = tuple(r.host for r in awaited(results))
        if not waiting or waiting == self._last:
            return
        self._last = waiting
        message(ssh_waiting(results, details=True))


class RunProgress:
    """SSH waits and Ansible runs (the task running and the hosts done with it): live on a TTY, else plain lines."""

    def __init__(self, plain: Throttle | None = None) -> None:
        self._status: Any = None
        self._task = ""
        self._done: list[str] = []
        self._plain = plain

    def _show(self, text: str, key: object) -> None:
        if self._plain is not None:
            if self._plain.due(key):
                _plain_line(text)
            return
        if self._status is None:
            self._status = stderr_console().status(text)  # rich: only on a terminal
            self._status.start()
        else:
            self._status.update(text)

    def ssh(self, results: list[Any]) -> None:
        text = ssh_waiting(results, details=False)
        self._show(text, text)

    def event(self, event: Any) -> None:
        if event.kind == "task":
            self._task = f"{event.role} : {event.task}" if event.role else str(event.task)
            self._done = []
        elif event.kind in ("ok", "changed", "skipped", "failed", "unreachable") and event.host:
            self._done.append(f"{event.host} {event.kind}")
        elif event.kind != "play":
            return
        suffix = f" ({', '.join(self._done[-4:])})" if self._done else ""
        # Off a terminal: a line per task (not per host), and the task again while it runs long.
        self._show(f"ansible: {self._task or event.task}{suffix}", ("ansible", self._task or event.task))

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
