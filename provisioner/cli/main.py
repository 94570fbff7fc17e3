"""The ``provision`` command: global flags, command groups, and the one place that displays errors."""

from __future__ import annotations

import os
import signal
from typing import Any

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    os.write(2, b"interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def _guard_startup() -> Any:
    """Ctrl-C while the modules below import: one line and exit 130, not a traceback from deep in an import."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            return signal.signal(signal.SIGINT, _interrupted_while_starting)
    except ValueError:  # not the main thread: nothing to guard
        pass
    return None


_BEFORE_STARTUP = _guard_startup()

import copy  # noqa: E402 - imported after the guard above
import functools  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator, Mapping, MutableMapping  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import typer  # noqa: E402
import typer.core  # noqa: E402
import typer.main  # noqa: E402

from provisioner import __version__  # noqa: E402
from provisioner.errors import EXIT_BAD_INPUT, EXIT_FAILED, ProvisionError  # noqa: E402

if TYPE_CHECKING:
    from typer._click import Context, HelpFormatter
    from typer._click.shell_completion import CompletionItem


# The commands under ``provision``, in the order --help lists them: the module that defines each and the help line
# --help shows for it. A module is imported only when its command runs or shows its own help (or shell completion
# needs its commands), so ``provision --help`` and ``provision cluster list`` import only what they use.
# tests/unit/test_cli_startup.py checks each help line against the module's own.
@dataclass(frozen=True)
class Entry:
    """A command group or command of ``provision``: the module that holds it, loaded on first use, and its help line."""

    module: str  # under provisioner.cli
    help: str
    command: str | None = None  # a single command: the function's name in ``module``; None: the module's ``app``


ENTRIES: dict[str, Entry] = {
    "runbook": Entry(
        "runbook",
        "Print a runbook (the page an error's ``see provision runbook NAME`` line names), or list them.",
        command="runbook",
    ),
    "cluster": Entry("cluster", "Create and run clusters: the whole lifecycle, journaled and resumable."),
    "edge": Entry("edge", "Edge clusters: K3s on hosts you already have (no IM), then the add-ons."),
    "autoscale": Entry("autoscale", "Grow and shrink clusters between bounds, on a schedule and on demand."),
    "template": Entry("template", "Our TOSCA templates: list, show inputs, render for a site, validate."),
    "local-im": Entry("localim", "Install, start and stop a local IM (simulated cloud) on 127.0.0.1."),
    "infra": Entry("infra", "Low-level IM calls: infrastructures by id, and a cloud's images and quotas."),
    "workflow": Entry(
        "workflow",
        "Serverless workflows (OSCAR's FDL) across the clusters provision manages: validate, plan, apply, status, "
        "run, invoke, delete.",
    ),
    "continuum": Entry(
        "continuum",
        "A continuum: the clusters of one file (IM and edge), their add-ons and the workflow across them: "
        "up, plan, status, down.",
    ),
    "state": Entry(
        "state",
        "The state itself: locks held now, a copy into another backend (SQLite or PostgreSQL), a health check.",
    ),
}


def load_entry(name: str) -> Any:
    """The click command of ``ENTRIES[name]``, built as ``app.add_typer`` / ``app.command`` would have built it; a
    group's own commands are built (and prepared) one by one, on first use."""
    entry = ENTRIES[name]
    module = importlib.import_module(f"provisioner.cli.{entry.module}")
    holder = typer.Typer(rich_markup_mode=None)
    holder.callback()(_no_options)
    if entry.command is not None:
        holder.command(name)(getattr(module, entry.command))
        return typer.main.get_group(holder).commands[name]
    sub: typer.Typer = module.app
    shell = copy.copy(sub)  # the group itself: its help, options and settings, none of its commands
    shell.registered_commands = []
    holder.add_typer(shell, name=name, cls=HelpGroup)
    group: Any = typer.main.get_group(holder).commands[name]
    builders: dict[str, Callable[[], Any]] = {}
    for info in sub.registered_commands:
        assert info.callback is not None
        builders[info.name or typer.main.get_command_name(info.callback.__name__)] = functools.partial(
            typer.main.get_command_from_info,
            info,
            pretty_exceptions_short=holder.pretty_exceptions_short,
            rich_markup_mode=None,
        )
    group.commands = LazyCommands(builders, prepare=_prepare)
    return group


def _no_options() -> None:
    """The holder's callback: it makes ``holder`` a group, whose one command is the entry."""


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands: every name known at once, each command built (its module imported) and prepared on first
    use. ``helps`` gives what a listing shows for a command not built yet (else listing it builds it)."""

    def __init__(
        self,
        builders: Mapping[str, Callable[[], Any]],
        prepare: Callable[[Any], None],
        helps: Mapping[str, str] | None = None,
    ) -> None:
        self._builders = dict(builders)
        self._prepare = prepare
        self._helps = dict(helps or {})
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in self._builders:
                raise KeyError(name)
            command = self._builders[name]()
            self._prepare(command)
            self._built[name] = command
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._built and name not in self._builders:
            raise KeyError(name)
        self._built.pop(name, None)
        self._builders.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._builders
        yield from (name for name in self._built if name not in self._builders)

    def __len__(self) -> int:
        return len(set(self._builders) | set(self._built))

    def summary(self, name: str) -> Any:
        """A command to show in a list (its name and help): the built one, else a stand-in with its help if known."""
        if name in self._built or name not in self._helps:
            return self.get(name)
        return typer.core.TyperCommand(name=name, help=self._helps[name], rich_markup_mode=None)


def listed_help(command: Any) -> str:
    """What a group's --help shows beside a command: the first paragraph of its help, whole (wrapped, not cut)."""
    text = command.short_help or command.help or ""
    return " ".join(text.split("\n\n")[0].split())


class HelpGroup(typer.core.TyperGroup):
    """A group whose --help lists each command with the first paragraph of its help, as typer's rich help did."""

    def _summary(self, name: str) -> Any:
        commands = self.commands
        return commands.summary(name) if isinstance(commands, LazyCommands) else commands.get(name)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names only (typer's own builds every command)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        shown = [(name, self._summary(name)) for name in self.list_commands(ctx)]
        rows = [(name, listed_help(command)) for name, command in shown if command is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class LazyGroup(HelpGroup):
    """The root group: lists its commands and completes their names from ``ENTRIES``, without importing them."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        builders = {name: functools.partial(load_entry, name) for name in ENTRIES}
        self.commands = LazyCommands(builders, prepare=_prepare, helps={n: e.help for n, e in ENTRIES.items()})

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        from typer._click.shell_completion import CompletionItem

        named = [(name, self._summary(name)) for name in self.list_commands(ctx) if name.startswith(incomplete)]
        results = [
            CompletionItem(name, help=command.get_short_help_str())
            for name, command in named
            if command is not None and not command.hidden
        ]
        # The options: what click's Command (the class above TyperGroup) completes.
        results.extend(super(typer.core.TyperGroup, self).shell_complete(ctx, incomplete))
        return results


app = typer.Typer(
    name="provision",
    help="Stand up and run elastic Kubernetes clusters with OSCAR through the Infrastructure Manager (IM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    cls=LazyGroup,
    # Plain help (click's layout): typer's rich help alone takes longer to import than all of ``provision --help``
    # may take.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"provision {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    im_url: str | None = typer.Option(None, "--im-url", help="IM REST endpoint (env PROVISION_IM_URL)."),
    auth: Path | None = typer.Option(None, "--auth", help="IM auth file (im_client format) (env PROVISION_AUTH_FILE)."),
    home: Path | None = typer.Option(None, "--home", help="State directory (env PROVISION_HOME)."),
    state_url: str | None = typer.Option(
        None,
        "--state",
        help="Where the registry, journal and locks live: sqlite:///PATH (default: <home>/state.db) or "
        "postgresql://USER@HOST/DB, shared by a team (env PROVISION_STATE_URL).",
    ),
    config: Path | None = typer.Option(None, "--config", help="Config file (env PROVISION_CONFIG)."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Do not verify IM's TLS certificate (unsafe) (env PROVISION_INSECURE)."
    ),
    lock_timeout: float | None = typer.Option(
        None,
        "--lock-timeout",
        help="Seconds to wait for another command on the same cluster (env PROVISION_LOCK_TIMEOUT).",
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output on stderr (-vv: debug)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options apply to every command."""
    from provisioner.cli.common import AppState

    ctx.obj = AppState(
        flags={
            "im_url": im_url,
            "auth_file": auth,
            "home": home,
            "state_url": state_url,
            "config": config,
            "insecure": insecure or None,
            "lock_timeout": lock_timeout,
        },
        debug=debug,
    )
    _configure_logging(verbose)


def _configure_logging(verbose: int) -> None:
    import logging

    from provisioner.redact import install_log_masking

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paramiko's transport thread logs a traceback for every host that does not answer; ssh.py reports those
    # hosts itself (one line each), so paramiko speaks only with -vv.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)
    install_log_masking(root)


# The rule of every numeric option, checked as the command line is parsed: before anything is sent.
# tests/unit/test_cli_basics.py fails for a numeric option that is not named here.
NUMBER_RULES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "--timeout": ("must be greater than 0", lambda v: v > 0),
    "--ssh-timeout": ("must be greater than 0", lambda v: v > 0),
    "--playbook-timeout": ("must be greater than 0", lambda v: v > 0),
    "--interval": ("must be greater than 0", lambda v: v > 0),
    "--lock-timeout": ("must be 0 (try once) or more", lambda v: v >= 0),
    "--workers": ("must be 0 or more", lambda v: v >= 0),
    "--concurrency": ("must be 1 or more", lambda v: v >= 1),
    "--last": ("must be 1 or more", lambda v: v >= 1),
    "--port": ("must be a port number from 1 to 65535", lambda v: 1 <= v <= 65535),
}


def number_option(param: Any) -> str | None:
    """The long name of ``param`` when it is an option taking a number (not a -v counter), else None."""
    if param.param_type_name != "option" or getattr(param, "count", False):
        return None
    if param.bare_type() not in ("int", "float"):
        return None
    return str(next((opt for opt in param.opts if opt.startswith("--")), param.opts[0]))


def _number_check(option: str, previous: Callable[..., Any] | None) -> Callable[..., Any]:
    rule, ok = NUMBER_RULES[option]

    def check(ctx: Any, param: Any, value: Any) -> Any:
        if value is not None and (not math.isfinite(value) or not ok(value)):
            raise typer.BadParameter(f"{rule}, got {value!r}", ctx=ctx, param=param)
        return previous(ctx, param, value) if previous is not None else value

    return check


def walk(command: Any) -> Iterator[Any]:
    """``command`` and every command under it."""
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from walk(sub)


def quick_value(param: Any, value: Any, ctx: Any) -> tuple[bool, Any]:
    """``(True, what typer's coercion of ``value`` gives)`` for the values that need no converting (None, a str for a
    str, the default itself, an enum's own name), found without typer's pydantic adapters; else ``(False, None)``."""
    from enum import Enum

    from typer._param_types import coerce_cli_choice

    descriptor = param.type_descriptor
    info = descriptor.parameter_info
    if info.parser is not None or getattr(info, "click_type", None) is not None or descriptor.file_annotation:
        return False, None
    annotation = descriptor.annotation
    if param.multiple or param.nargs == -1:
        if value is None:
            return True, ()
        if annotation == list[str] and type(value) in (list, tuple) and all(type(v) is str for v in value):
            return True, list(value)
        return False, None
    if value is None:
        return True, None
    if annotation in (str, bool) and type(value) is annotation:
        return True, value
    if annotation in (int, float) and type(value) is annotation and _within(value, info.min, info.max):
        return True, value
    if isinstance(annotation, type) and issubclass(annotation, Enum) and isinstance(value, (annotation, str)):
        try:
            return True, coerce_cli_choice(
                value, choices=tuple(annotation), case_sensitive=info.case_sensitive, ctx=ctx
            )
        except ValueError:  # not one of them: typer's own coercion says so, in its words
            return False, None
    return False, None


def _within(value: float, low: float | None, high: float | None) -> bool:
    """Inside the bounds (where clamping changes nothing); out of them typer's own check answers."""
    return not math.isnan(value) and (low is None or value >= low) and (high is None or value <= high)


class QuickCoercion:
    """A parameter's coercion: ``quick_value`` when it knows the answer, else typer's own (built on first need).

    typer builds a pydantic adapter for every parameter a command line parses: importing pydantic alone takes longer
    than all of ``provision cluster list``, whose values (defaults, None, a name) need no converting."""

    def __init__(self, param: Any) -> None:
        self._param = param
        self._full: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        known, result = quick_value(param, value, ctx)
        if known:
            return result
        if self._full is None:
            from typer._coercion import build_runtime_param

            self._full = build_runtime_param(self._param.type_descriptor)
        return self._full.coerce(value, param=param, ctx=ctx)


def _prepare(command: Any) -> None:
    """What typer does not give: number rules, no metavar on flags, coercion without pydantic where none is needed
    (for ``command`` itself, not those under it)."""
    # The help option is made on demand from the context's names: made here, once, so it can be fixed too.
    help_option = command.get_help_option(typer.Context(command, help_option_names=["-h", "--help"]))
    for param in [*command.params, help_option]:
        # typer's parameters build their coercion on first use, kept in ``_runtime_param``: ours goes there first.
        if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = QuickCoercion(param)
        if param is None or param.param_type_name != "option":
            continue
        if param.is_flag or param.count:
            param.metavar = ""  # a flag takes no value: typer would show "<bool>" (or "<int>") next to it
        option = number_option(param)
        if option is not None:
            param.callback = _number_check(option, param.callback)


@functools.cache
def cli_command() -> Any:
    """The click command tree of ``app``: the root now, each command under it prepared as it is loaded."""
    root = typer.main.get_command(app)
    _prepare(root)
    return root


def message(text: str) -> None:
    from provisioner.cli.common import message as show

    show(text)


def _show_error(exc: ProvisionError, *, debug: bool = False) -> None:
    from provisioner.redact import mask
    from provisioner.triage import classify_error

    for line in getattr(exc, "problems", None) or [str(exc)]:
        message(f"error: {mask(line)}")
    body = getattr(exc, "body", None)
    if debug and body:
        message(f"IM's whole answer (--debug):\n{mask(body)}")
    if exc.hint:
        message(f"hint: {mask(exc.hint)}")
    found = classify_error(exc)
    if found is not None:
        # The evidence is left out when the error line above already says it.
        message(f"cause: {mask(found.short if found.evidence in str(exc) else found.line)}")
        message(found.see)


def _usage_error(exc: typer.TyperException) -> int:
    """Usage errors (unknown option, missing argument, bad value): one line on stderr, exit 2."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        sys.stdout.write(ctx.get_help() + "\n")
        return 0
    where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    message(f"error: {exc.format_message()}{where}")
    return EXIT_BAD_INPUT


def run(argv: list[str] | None = None) -> int:
    """Console-script entry point. Returns (and exits with) the process exit code."""
    code = main_exit_code(argv)
    # The command is done and the process ends: the collector's last passes at exit need not walk every object the
    # command made (about 15 ms of a create). Objects are still freed as the interpreter tears down.
    gc.freeze()
    sys.exit(code)


@dataclass
class _Interrupt:
    """Where a Ctrl-C (SIGINT) landed: the command running then and its parameters."""

    command: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def _running_command(frame: FrameType | None) -> _Interrupt:
    """The command whose code ``frame`` is in: the innermost frame holding its context as ``ctx``."""
    # Commands get the click Context typer builds on (typer.Context is a subclass, for annotations only).
    context_class = typer.Context.__mro__[1]
    while frame is not None:
        ctx = frame.f_locals.get("ctx")
        if isinstance(ctx, context_class):
            return _Interrupt(str(getattr(ctx, "command_path", "")), dict(getattr(ctx, "params", {})))
        frame = frame.f_back
    return _Interrupt()


def _resume_hint(interrupt: _Interrupt) -> str:
    """What to run to pick up where an interrupted command left off (IM keeps working on what it was sent)."""
    params = interrupt.params
    name = params.get("name") or "NAME"
    command = interrupt.command.removeprefix("provision ").strip()
    if command in ("cluster create", "cluster status", "cluster reconfigure"):
        then = f", then `provision cluster install {name}`" if params.get("install") else ""
        return f"IM goes on; resume with `provision cluster status {name} --wait`{then}"
    if command == "cluster scale":
        workers = params.get("workers")
        return f"IM goes on; resume with `provision cluster scale {name} --workers {workers if workers else 'N'}`"
    if command == "cluster destroy":
        return f"IM may still be deleting; resume with `provision cluster destroy {name} --yes`"
    if command == "cluster install":
        extra = f" --components {params['components']}" if params.get("components") else ""
        return f"the playbooks stopped; resume with `provision cluster install {name}{extra}` (it converges)"
    if command == "edge create":
        inventory = params.get("inventory") or "FILE"
        return f"the playbooks stopped; resume with `provision edge create {name} --inventory {inventory}`"
    if command == "infra destroy":
        return f"IM may still be deleting; resume with `provision infra destroy {params.get('infra_id')} --yes`"
    if command in ("continuum up", "workflow apply"):
        given = params.get("file") or params.get("fdl") or "FILE"
        named = f" --name {params['name']}" if command == "workflow apply" and params.get("name") else ""
        return f"each step is journaled; resume with `provision {command} {given}{named}` (it converges)"
    if command == "continuum down":
        return f"resume with `provision continuum down {name} --yes`"
    return ""


def _show_interrupt(interrupt: _Interrupt) -> int:
    hint = _resume_hint(interrupt)
    message(f"interrupted: {hint}" if hint else "interrupted")
    return EXIT_INTERRUPTED


def main_exit_code(argv: list[str] | None = None) -> int:
    interrupts: list[_Interrupt] = []

    def on_sigint(signum: int, frame: Any) -> None:
        # Noted here, where it lands: typer and click turn the KeyboardInterrupt into a bare exit code 130 or an
        # Abort, which tell neither that it was an interrupt nor what was running.
        interrupts.append(_running_command(frame))
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread (tests calling this in a worker): no handler of ours
        previous = None
    try:
        code = _run_app(argv)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        interrupts.append(_Interrupt())
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupts:
        return _show_interrupt(interrupts[0])
    return code


def _run_app(argv: list[str] | None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = cli_command().main(args=argv, standalone_mode=False, prog_name="provision")
    except ProvisionError as exc:
        _show_error(exc, debug=debug)
        return exc.exit_code
    except typer.Abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        message("aborted")
        return EXIT_FAILED
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        return _usage_error(exc)
    except Exception as exc:  # the one place that turns unexpected errors into a message
        if debug:
            raise
        from provisioner.redact import mask

        message(f"error: unexpected {type(exc).__name__}: {mask(str(exc))}")
        message("hint: this is a bug in provision; re-run with --debug for the traceback and report it")
        return EXIT_FAILED
    return int(result) if isinstance(result, int) else 0


if _BEFORE_STARTUP is not None:  # imports done: Ctrl-C is a KeyboardInterrupt again (main_exit_code handles it)
    signal.signal(signal.SIGINT, _BEFORE_STARTUP)
