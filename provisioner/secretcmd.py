"""Running a ``command(...)`` that prints a secret: the IM auth file's values, an FDL's ``oidc_token`` and a
cluster's secrets reference all use this one runner.

The command is split with :func:`shlex.split` and run without a shell, without stdin and with a timeout. Its
output is a secret: it never appears in an error (the last line of stderr may, masked, unless it repeats the
output), and the caller registers it for masking (:func:`provisioner.redact.register_secret`). Errors are
:class:`~provisioner.errors.CredentialsError` naming ``where``.

Pure of everything but the subprocess it runs.
"""

from __future__ import annotations

import shlex
import subprocess

from provisioner.errors import CredentialsError
from provisioner.redact import mask, register_secret

COMMAND_TIMEOUT = 30.0  # seconds a command(...) may run
OIDC_ADVICE = "an oidc-agent account may need to be loaded first"


def command_of(value: str) -> str | None:
    """The command inside a ``command(CMD)`` value, or ``None`` when ``value`` is not one."""
    return value[len("command(") : -1] if value.startswith("command(") and value.endswith(")") else None


def first_word(command: str) -> str:
    return command.split(maxsplit=1)[0] if command.strip() else "?"


def run_command(command: str, where: str, *, keep_newlines: bool = False, advice: str | None = None) -> str:
    """The standard output of ``command``; with ``keep_newlines=False`` (one value) its newlines are removed.

    Refuses an empty output. The output is not registered for masking here (see :func:`run_secret_command`).
    ``advice`` is added to the hint of a failed command ("run NAME by hand; ADVICE")."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CredentialsError(f"{where}: cannot parse command({first_word(command)} ...): {exc}") from None
    if not argv:
        raise CredentialsError(f"{where}: command() is empty")
    name = argv[0]
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"{where}: command {name} did not finish within {COMMAND_TIMEOUT:g} s",
            hint="run the command by hand to see what it waits for",
        ) from None
    except OSError as exc:
        raise CredentialsError(f"{where}: cannot run command {name}: {exc.strerror or exc}") from None
    text = result.stdout.decode("utf-8", errors="replace").replace("\r", "")
    output = text if keep_newlines else text.replace("\n", "")
    if result.returncode != 0:
        raise CredentialsError(
            f"{where}: command {name} failed (exit status {result.returncode}){_stderr_excerpt(result.stderr, output)}",
            hint=f"run {name} by hand" + (f"; {advice}" if advice else ""),
        )
    if not output.strip():
        raise CredentialsError(f"{where}: command {name} printed nothing")
    return output


def run_secret_command(command: str, where: str) -> str:
    """The output of ``command`` (the inside of a ``command(...)`` value), newlines removed, registered for masking.

    Errors (:class:`~provisioner.errors.CredentialsError`) name ``where`` and never include the output."""
    value = run_command(command, where, advice=OIDC_ADVICE)
    register_secret(value)
    return value


def _stderr_excerpt(stderr: bytes, output: str) -> str:
    """The last line of stderr, short and masked, unless it repeats anything the command printed on stdout."""
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    if output.strip() and (output.strip() in line or any(w in line for w in output.split() if len(w) >= 8)):
        return ""
    return f": {mask(line)[:200]}"
