"""The CLI's entry point: version, help, usage errors, and the one place that shows errors."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import __version__


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"provision {__version__}\n"


def test_help_lists_the_groups() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for group in ("local-im", "infra"):
        assert group in result.stdout


def test_unknown_command_is_one_line_exit_2() -> None:
    result = cli("frobnicate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: No such command 'frobnicate'. (see: provision --help)"]


def test_bad_option_value_exit_2() -> None:
    result = cli("local-im", "start", "--port", "http")
    assert result.returncode == 2
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("im_ulr: http://x\n")
    result = cli("infra", "list", env={"PROVISION_CONFIG": str(config), "PROVISION_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"error: im_ulr: unknown setting in {config} (did you mean 'im_url'?)"


def test_world_readable_auth_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("")
    auth = tmp_path / "auth.dat"
    auth.write_text("id = im; type = InfrastructureManager; username = u; password = s3cr3t-value\n")
    auth.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    result = cli(
        "--im-url",
        "http://127.0.0.1:9",
        "--auth",
        str(auth),
        "infra",
        "list",
        env={"PROVISION_HOME": str(tmp_path), "PROVISION_CONFIG": str(tmp_path / "none.yaml")},
    )
    assert result.returncode == 2
    assert "chmod 600" in result.stderr
    assert "s3cr3t-value" not in result.stderr


def test_no_im_configured_exit_2(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("")
    env = {"PROVISION_HOME": str(tmp_path), "PROVISION_CONFIG": str(tmp_path / "none.yaml"), "PROVISION_IM_URL": ""}
    result = cli("infra", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: --im-url: no IM endpoint configured"


def test_cluster_list_needs_no_im(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("")
    env = {"PROVISION_HOME": str(tmp_path), "PROVISION_CONFIG": str(tmp_path / "none.yaml"), "PROVISION_IM_URL": ""}
    result = cli("cluster", "list", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


# --- interrupts and confirmations ----------------------------------------------------------------------------------


def isolated_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "none.yaml").write_text("")
    auth = tmp_path / "auth.dat"
    auth.write_text("id = im; type = InfrastructureManager; username = u; password = p4ssw0rd-value\n")
    auth.chmod(0o600)
    return {
        **os.environ,
        "PROVISION_HOME": str(tmp_path / "home"),
        "PROVISION_CONFIG": str(tmp_path / "none.yaml"),
        "PROVISION_AUTH_FILE": str(auth),
    }


@contextlib.contextmanager
def silent_im() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback "IM" that accepts connections and never answers: the CLI waits on it until interrupted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def interrupted_once_waiting(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI against a silent IM; once it has connected (it is inside the command), send it a real SIGINT."""
    with silent_im() as (url, accepted):
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "--im-url", url, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not accepted and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert accepted, "the CLI never reached IM"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_while_waiting_on_im_says_how_to_resume(tmp_path: Path) -> None:
    result = interrupted_once_waiting(["infra", "destroy", "abc-123", "--yes"], isolated_env(tmp_path))
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == [
        "interrupted: IM may still be deleting; resume with `provision infra destroy abc-123 --yes`"
    ]
    assert result.stdout == ""


def test_ctrl_c_in_a_command_without_a_resume_step_says_interrupted(tmp_path: Path) -> None:
    result = interrupted_once_waiting(["infra", "list"], isolated_env(tmp_path))
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == ["interrupted"]


def test_resume_hints_of_the_long_commands() -> None:
    from provisioner.cli.main import _Interrupt, _resume_hint

    def hint(command: str, **params: object) -> str:
        return _resume_hint(_Interrupt(f"provision {command}", dict(params)))

    assert hint("cluster create", name="c1", install=False) == (
        "IM goes on; resume with `provision cluster status c1 --wait`"
    )
    assert hint("cluster create", name="c1", install=True).endswith(", then `provision cluster install c1`")
    assert (
        hint("cluster status", name="c1", wait=True) == "IM goes on; resume with `provision cluster status c1 --wait`"
    )
    assert hint("cluster scale", name="c1", workers=3) == (
        "IM goes on; resume with `provision cluster scale c1 --workers 3`"
    )
    assert hint("cluster destroy", name="c1") == (
        "IM may still be deleting; resume with `provision cluster destroy c1 --yes`"
    )
    assert hint("cluster install", name="c1", components="minio,oscar") == (
        "the playbooks stopped; resume with `provision cluster install c1 --components minio,oscar` (it converges)"
    )
    assert hint("continuum up", file="c.yaml") == (
        "each step is journaled; resume with `provision continuum up c.yaml` (it converges)"
    )
    assert hint("workflow apply", fdl="wf.yaml", name="masks") == (
        "each step is journaled; resume with `provision workflow apply wf.yaml --name masks` (it converges)"
    )
    assert hint("continuum down", name="demo") == "resume with `provision continuum down demo --yes`"
    assert hint("edge create", name="e1", inventory="inv.yml") == (
        "the playbooks stopped; resume with `provision edge create e1 --inventory inv.yml`"
    )
    assert hint("template list") == ""


# A SIGINT sent to itself when the module named on the command line is first imported, then the CLI's own entry
# (``python -m provisioner`` or the console script's ``provisioner.cli.main:run``): a real signal, landing
# deterministically while the modules import.
SIGINT_AT_IMPORT = """
import importlib.abc, os, signal, sys

TRIP_AT = sys.argv[1]

class Trip(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == TRIP_AT:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Trip())
entry = sys.argv[2]
sys.argv = ["provision", "cluster", "list"]
if entry == "module":
    import runpy
    runpy.run_module("provisioner", run_name="__main__", alter_sys=True)
else:
    from provisioner.cli.main import run
    sys.exit(run())
"""


@pytest.mark.parametrize("entry", ["module", "console-script"])
@pytest.mark.parametrize("module", ["typer", "provisioner.cli.cluster", "provisioner.settings"])
def test_ctrl_c_while_the_modules_import_is_one_line(tmp_path: Path, entry: str, module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SIGINT_AT_IMPORT, module, entry],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == ["interrupted"]
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["cluster", "destroy", "c1"], ["infra", "destroy", "abc-123"]])
def test_destroy_without_a_terminal_or_yes_is_refused(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "--im-url", "http://127.0.0.1:9", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: --yes: refusing to destroy "), lines
    assert lines[1:] == ["hint: pass --yes to go ahead without being asked"]


@pytest.mark.parametrize("args", [["cluster", "destroy", "c1"], ["infra", "destroy", "abc-123"]])
def test_answering_no_at_the_confirmation_is_aborted_exit_1(tmp_path: Path, args: list[str]) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "--im-url", "http://127.0.0.1:9", *args],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=isolated_env(tmp_path),
        )
        os.close(secondary)
        os.write(primary, b"n\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(primary)
    assert proc.returncode == 1, err
    assert err.startswith("Destroy ") and err.endswith("aborted\n"), err
    assert out.strip() == ""  # click leaves the prompt's trailing space on stdout


# --- numeric options and flags in --help ---------------------------------------------------------------------------


def test_every_numeric_option_has_a_rule() -> None:
    from provisioner.cli.main import NUMBER_RULES, cli_command, number_option, walk

    found = {number_option(p) for command in walk(cli_command()) for p in command.params} - {None}
    assert found, "no numeric options found: the check itself is broken"
    assert found <= set(NUMBER_RULES), f"numeric options without a rule: {sorted(found - set(NUMBER_RULES))}"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["cluster", "create", "c1", "-t", "oscar", "-s", "local-sim", "--timeout", "-5"],
            "error: Invalid value for '--timeout': must be greater than 0, got -5.0 "
            "(see: provision cluster create --help)",
        ),
        (
            ["cluster", "scale", "c1", "--workers", "-1"],
            "error: Invalid value for '--workers' / '-w': must be 0 or more, got -1 "
            "(see: provision cluster scale --help)",
        ),
        (
            ["--lock-timeout", "nan", "cluster", "list"],
            "error: Invalid value for '--lock-timeout': must be 0 (try once) or more, got nan (see: provision --help)",
        ),
        (
            ["local-im", "start", "--port", "65536"],
            "error: Invalid value for '--port': must be a port number from 1 to 65535, got 65536 "
            "(see: provision local-im start --help)",
        ),
    ],
)
def test_a_bad_number_is_one_line_exit_2_naming_the_option_and_the_rule(
    tmp_path: Path, args: list[str], line: str
) -> None:
    env = isolated_env(tmp_path)
    result = cli("--im-url", "http://127.0.0.1:9", *args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [line]
    assert not (tmp_path / "home").exists()  # refused before the command ran: not even the state directory


def test_lock_timeout_zero_is_a_valid_flag(tmp_path: Path) -> None:
    result = cli("--lock-timeout", "0", "cluster", "list", env=isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr


def test_flags_show_no_value_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    from provisioner.cli.main import cli_command, main_exit_code, walk

    def paths(command: object, prefix: list[str]) -> Iterator[list[str]]:
        yield prefix
        for name, sub in getattr(command, "commands", {}).items():
            yield from paths(sub, [*prefix, name])

    seen = 0
    for path in paths(cli_command(), []):
        assert main_exit_code([*path, "--help"]) == 0
        shown = capsys.readouterr().out
        assert "<bool>" not in shown and "--help" in shown, (path, shown)
        seen += 1
    assert seen == len(list(walk(cli_command()))) > 20
    main_exit_code(["cluster", "create", "--help"])
    assert "<float>" in capsys.readouterr().out  # options that take a value still show its type


# --- progress off a terminal ---------------------------------------------------------------------------------------


def test_throttle_prints_a_new_state_at_once_and_the_same_one_every_interval() -> None:
    from provisioner.cli.common import Throttle

    now = [0.0]
    throttle = Throttle(30.0, clock=lambda: now[0])
    seen = []
    for at, key in [(0, "pending"), (1, "pending"), (2, "running"), (20, "running"), (32, "running"), (33, "x")]:
        now[0] = float(at)
        seen.append(throttle.due(key))
    assert seen == [True, False, True, False, True, True]


def test_progress_lines_off_a_terminal_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from provisioner.cli.common import ProgressLine, RunProgress, Throttle
    from provisioner.lifecycle import Progress

    now = [0.0]
    line = ProgressLine(Throttle(30.0, clock=lambda: now[0]))
    for at, st in [(0, "pending"), (5, "pending"), (10, "running"), (45, "running"), (50, "configured")]:
        now[0] = float(at)
        line(Progress(cluster="c1", phase="waiting", elapsed=float(at), state=st, vm_states={"0": st}))
    line.close()
    run = RunProgress(Throttle(30.0, clock=lambda: now[0]))
    run.event(type("E", (), {"kind": "task", "role": "k3s", "task": "install", "host": None})())
    run.event(type("E", (), {"kind": "ok", "role": "k3s", "task": "install", "host": "front"})())
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "c1: pending after 0 s (1 pending)",
        "c1: running after 10 s (1 running)",
        "c1: running after 45 s (1 running)",
        "c1: configured after 50 s (1 configured)",
        "ansible: k3s : install",
    ]
