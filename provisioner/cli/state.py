"""``provision state``: the locks held now, a copy of the state into another backend, and a health check."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from provisioner.cli.common import OutputFormat, OutputOption, emit, message, state
from provisioner.cli.render import table
from provisioner.errors import EXIT_FAILED

if TYPE_CHECKING:
    from provisioner.state.admin import HeldLock

app = typer.Typer(
    help="The state itself: locks held now, a copy into another backend (SQLite or PostgreSQL), a health check.",
    no_args_is_help=True,
)

_LOCK_COLUMNS = ["SUBJECT", "USER", "HOST", "PID", "COMMAND", "SINCE"]


def _lock_rows(locks: list[HeldLock]) -> list[tuple[object, ...]]:
    return [
        tuple("-" if v is None else v for v in (x.subject, x.user, x.host, x.pid, x.command, x.since)) for x in locks
    ]


@app.command("locks")
def locks_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The locks held now and who holds each (user, host, pid, command, since)."""
    from provisioner.state.admin import held_locks

    home = state(ctx).settings.home
    held = held_locks(home)
    emit([asdict(h) for h in held], output, lambda: table(_LOCK_COLUMNS, _lock_rows(list(held)), empty="no locks held"))


@app.command("migrate")
def migrate_cmd(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="The destination state URL: sqlite:///PATH or postgresql://..."),
    output: OutputFormat = OutputOption,
) -> None:
    """Copy the current state (clusters, journal, decisions, workflows) into the backend at --to.

    Only what the destination lacks is copied (a second run copies nothing); a destination with different content
    for the same cluster, workflow or journal position is refused (exit 1), naming the first difference. The copy is
    verified by row counts and sha256 checksums per table. Exit 2 for a bad URL, 3 when it cannot be reached."""
    from provisioner.state.admin import migrate

    home = state(ctx).settings.home
    result = migrate(home, to)

    def text() -> str:
        copied = ", ".join(f"{n} {t}" for t, n in result.copied.items())
        head = (
            f"nothing new to copy: {result.destination} already holds {result.source}"
            if result.nothing_new
            else f"copied {copied} from {result.source} to {result.destination}"
        )
        rows = [(t, c["rows"], c["sha256"]) for t, c in result.checksums.items()]
        return head + "\n" + table(["TABLE", "ROWS", "SHA256"], rows) + "\nverified: counts and checksums match"

    emit(result.as_dict(), output, text)


@app.command("doctor")
def doctor_cmd(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """The backend and its schema version, open locks, and journal phases left unfinished with the command that
    resumes each. Exit 0 when healthy, 1 when something needs attention."""
    from provisioner.state.admin import doctor

    home = state(ctx).settings.home
    report = doctor(home)

    def text() -> str:
        expected = report.as_dict()["expected_schema_version"]
        if report.schema_version == 0 and report.schema_current:
            current = "no state yet (the first command makes it)"
        elif report.schema_current:
            current = "current"
        elif report.schema_version < expected:
            current = f"older than this tool's ({expected}): migrated on its first use, this one included"
        else:
            current = f"NEWER than this tool's ({expected}): upgrade provision"
        lines = [
            f"backend: {report.backend} ({report.location})",
            f"schema version: {report.schema_version}, {current}",
        ]
        lines.append(table(_LOCK_COLUMNS, _lock_rows(list(report.locks)), empty="locks: none held"))
        if report.unfinished:
            lines.append(
                table(
                    ["NAME", "LAST PHASE", "SINCE", "WHAT", "RESUME WITH"],
                    [(u.name, u.phase, u.since, u.what, u.resume) for u in report.unfinished],
                )
            )
        else:
            lines.append("unfinished: nothing")
        lines.append("healthy" if report.healthy else "needs attention")
        return "\n".join(lines)

    emit(report.as_dict(), output, text)
    if not report.healthy:
        if output is OutputFormat.text:
            message("state doctor: something needs attention (see above)")
        raise typer.Exit(EXIT_FAILED)
