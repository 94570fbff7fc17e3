"""The ``provision`` command: global flags, command groups, and the one place that displays errors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from provisioner import __version__
from provisioner.cli import autoscale, cluster, edge, infra, localim, runbook, template
from provisioner.cli.common import AppState, message
from provisioner.errors import EXIT_BAD_INPUT, EXIT_FAILED, ProvisionError

app = typer.Typer(
    name="provision",
    help="Stand up and run elastic Kubernetes clusters with OSCAR through the Infrastructure Manager (IM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(cluster.app, name="cluster")
app.add_typer(edge.app, name="edge")
app.add_typer(autoscale.app, name="autoscale")
app.add_typer(template.app, name="template")
app.add_typer(localim.app, name="local-im")
app.add_typer(infra.app, name="infra")
app.command("runbook")(runbook.runbook)


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
    ctx.obj = AppState(
        flags={
            "im_url": im_url,
            "auth_file": auth,
            "home": home,
            "config": config,
            "insecure": insecure or None,
            "lock_timeout": lock_timeout,
        },
        debug=debug,
    )
    _configure_logging(verbose)


def _configure_logging(verbose: int) -> None:
    from provisioner.credentials import install_log_masking

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_log_masking(root)


def _show_error(exc: ProvisionError, *, debug: bool = False) -> None:
    from provisioner.credentials import mask
    from provisioner.triage import classify_error

    message(f"error: {mask(str(exc))}")
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
    sys.exit(code)


def main_exit_code(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = app(args=argv, standalone_mode=False, prog_name="provision")
    except ProvisionError as exc:
        _show_error(exc, debug=debug)
        return exc.exit_code
    except typer.Abort:
        message("aborted")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        return _usage_error(exc)
    except KeyboardInterrupt:
        message("interrupted")
        return 130
    except Exception as exc:  # the one place that turns unexpected errors into a message
        if debug:
            raise
        from provisioner.credentials import mask

        message(f"error: unexpected {type(exc).__name__}: {mask(str(exc))}")
        message("hint: this is a bug in provision; re-run with --debug for the traceback and report it")
        return EXIT_FAILED
    return int(result) if isinstance(result, int) else 0
