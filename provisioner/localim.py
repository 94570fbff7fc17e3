"""Install, start, stop and inspect a local Infrastructure Manager (IM) on loopback.

The IM lives in its own venv (its pins never constrain ours), listens on 127.0.0.1 only, and keeps its
config, SQLite database and logs under ``<home>/local-im``. The tests and ``make demo`` use this same code.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from provisioner.errors import InputError, LocalIMError

IM_VERSION = "2.0.0"
HOST = "127.0.0.1"
_STATE_FILE = "state.json"
_PORT_FILE = "port"  # the port of the last start: kept by stop, so the IM comes back where clusters recorded it
_MARKER = "im_launcher.py"


@dataclass(frozen=True)
class LocalIM:
    """What ``start`` reports and ``status`` reads back."""

    url: str
    port: int
    pid: int
    run_dir: str
    auth_file: str
    log_file: str
    db_file: str


@dataclass(frozen=True)
class LocalIMStatus:
    """What ``local-im status`` reports: whether the local IM runs and is installed in its venv; when it runs,
    where (from its state file) and the version it answers with (None when it does not answer)."""

    running: bool
    installed: bool
    venv: str
    info: LocalIM | None = None
    version: str | None = None


def venv_python(venv: Path) -> Path:
    return venv.absolute() / "bin" / "python"


def is_installed(venv: Path) -> bool:
    python = venv_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('IM'))"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return probe.returncode == 0 and probe.stdout.strip() == IM_VERSION


def install(venv: Path, *, extra_pip_args: Sequence[str] = (), force: bool = False) -> bool:
    """Create ``venv`` and install IM==2.0.0 into it from the pinned constraints. Returns False if already there."""
    if is_installed(venv) and not force:
        return False
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], "create the IM venv")
    constraints = resources.files("provisioner") / "data" / "im-constraints.txt"
    with resources.as_file(constraints) as constraints_path:
        _run(
            [
                str(venv_python(venv)),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-c",
                str(constraints_path),
                *extra_pip_args,
                f"IM=={IM_VERSION}",
            ],
            "install IM into its venv",
        )
    if not is_installed(venv):
        raise LocalIMError(f"IM {IM_VERSION} is not importable from {venv} after install")
    return True


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise LocalIMError(f"could not {what} ({shlex.join(cmd[:3])} ... exited {proc.returncode}): {tail}")


def free_port() -> int:
    import socket  # here, as requests: reading the local IM's state needs no network module

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _config_text(run_dir: Path, port: int, db_file: Path, options: Mapping[str, str] | None = None) -> str:
    lines = {
        "ACTIVATE_REST": "True",
        "REST_ADDRESS": HOST,
        "REST_PORT": str(port),
        "DATA_DB": f"sqlite:///{db_file}",
        "USER_DB": "",
        "LOG_FILE": str(run_dir / "im.log"),
        "LOG_LEVEL": "INFO",
        "REMOTE_CONF_DIR": str(run_dir / "remote"),
        "MAX_SIMULTANEOUS_LAUNCHES": "4",
        "WAIT_PUBLIC_IP_TIMEOUT": "30",
        "VM_INFO_UPDATE_FREQUENCY": "5",
        "REST_MAX_BLOCKING_CALLS": "32",
    }
    for key, value in (options or {}).items():
        if not key or any(ch in f"{key}{value}" for ch in "\r\n"):
            raise InputError(f"invalid IM option {key!r}", field="options")
        lines[key] = str(value)
    body = "\n".join(f"{key} = {value}" for key, value in lines.items())
    return f"# Written by provision local-im start. IM reads nothing else.\n[im]\n{body}\n"


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def auth_file_path(run_dir: Path) -> Path:
    """Where the local IM's auth file is (it outlives a stop, like the database)."""
    return run_dir / "auth.dat"


def ensure_auth_file(run_dir: Path) -> Path:
    """An auth file for the local IM: the Dummy cloud (id ``sim``) and a random IM user. Kept 0600."""
    path = auth_file_path(run_dir)
    if not path.exists():
        password = secrets.token_urlsafe(18)
        _write_secret(
            path,
            "# Local IM (simulated cloud). Generated by provision local-im start.\n"
            "id = sim; type = Dummy\n"
            f"id = im; type = InfrastructureManager; username = provision; password = {password}\n",
        )
    return path


def read_state(run_dir: Path) -> LocalIM | None:
    try:
        data = json.loads((run_dir / _STATE_FILE).read_text(encoding="utf-8"))
        return LocalIM(**data)
    except (OSError, ValueError, TypeError):
        return None


def previous_port(run_dir: Path) -> int | None:
    """The port the local IM had when it last started (None before its first start)."""
    try:
        port = int((run_dir / _PORT_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:``port`` (connections of a stopped IM in TIME_WAIT do not count)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pid_is_ours(pid: int) -> bool:
    """True if ``pid`` is alive and is our IM launcher (guards against a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _MARKER.encode() in cmdline


def _answers(url: str, timeout: float = 2.0) -> str | None:
    import requests  # here: most commands read the local IM's state file and never ask it anything

    try:
        resp = requests.get(f"{url}/version", timeout=(timeout, timeout), headers={"Accept": "application/json"})
    except requests.RequestException:
        return None
    if resp.status_code != 200:
        return None
    try:
        version = resp.json().get("version")
    except ValueError:
        return None
    return str(version) if version else None


def start(
    run_dir: Path,
    venv: Path,
    *,
    port: int | None = None,
    fresh: bool = False,
    wait_seconds: float = 60.0,
    options: Mapping[str, str] | None = None,
) -> LocalIM:
    """Start IM on 127.0.0.1 and wait until ``GET /version`` answers. Returns what is running.

    ``options`` are ``[im]`` settings merged over the defaults (e.g. ``{"MAX_VM_FAILS": "1"}``).
    """
    run_dir, venv = run_dir.absolute(), venv.absolute()
    if not is_installed(venv):
        raise LocalIMError(f"IM {IM_VERSION} is not installed in {venv}", hint="run: provision local-im install")
    current = read_state(run_dir)
    if current and _pid_is_ours(current.pid):
        raise LocalIMError(
            f"a local IM is already running at {current.url} (pid {current.pid})",
            hint="run: provision local-im stop",
        )
    if port is not None and not 0 < port < 65536:
        raise InputError(f"must be between 1 and 65535, got {port}", field="--port")
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    db_file = run_dir / "inf.dat"
    if fresh:
        for stale in (db_file, run_dir / "im.log"):
            stale.unlink(missing_ok=True)
    chosen = port or _port_to_reuse(run_dir, fresh=fresh) or free_port()
    config = run_dir / "im.cfg"
    config.write_text(_config_text(run_dir, chosen, db_file, options), encoding="utf-8")
    auth_file = ensure_auth_file(run_dir)
    work = run_dir / "work"
    work.mkdir(exist_ok=True)
    (run_dir / "remote").mkdir(exist_ok=True)
    launcher = resources.files("provisioner") / "data" / _MARKER
    launcher_copy = run_dir / _MARKER
    launcher_copy.write_text(launcher.read_text(encoding="utf-8"), encoding="utf-8")
    stdout = open(run_dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child process
    try:
        proc = subprocess.Popen(
            [str(venv_python(venv)), str(launcher_copy), str(config)],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "IM_DATA_DB": f"sqlite:///{db_file}"},
        )
    finally:
        stdout.close()
    url = f"http://{HOST}:{chosen}"
    info = LocalIM(
        url=url,
        port=chosen,
        pid=proc.pid,
        run_dir=str(run_dir),
        auth_file=str(auth_file),
        log_file=str(run_dir / "im.log"),
        db_file=str(db_file),
    )
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalIMError(f"IM exited with code {proc.returncode} while starting: {_log_tail(run_dir)}")
        if _answers(url):
            (run_dir / _STATE_FILE).write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
            (run_dir / _PORT_FILE).write_text(f"{chosen}\n", encoding="utf-8")
            return info
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    _terminate(proc.pid, grace=5.0)
    raise LocalIMError(f"IM did not answer GET /version within {wait_seconds:.0f} s: {_log_tail(run_dir)}")


def _port_to_reuse(run_dir: Path, *, fresh: bool) -> int | None:
    """The port of the last start, so clusters recorded at that URL keep working. Taken: an error, unless the
    database is started afresh (then nothing recorded refers to it and any free port does)."""
    previous = previous_port(run_dir)
    if previous is None or port_is_free(previous):
        return previous
    if fresh:
        return None
    raise LocalIMError(
        f"the local IM's port {previous} (where its clusters are recorded: http://{HOST}:{previous}) is taken",
        hint="free that port and start again, or start on another one with --port N "
        f"and re-point the clusters: provision cluster sync --im-url http://{HOST}:N",
    )


def _log_tail(run_dir: Path, lines: int = 5) -> str:
    try:
        text = (run_dir / "stdout.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(empty log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists": reap it if we can.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False


def _terminate(pid: int, grace: float) -> str:
    """SIGTERM the process group, then SIGKILL after ``grace`` seconds. Returns how it ended."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return "terminated"
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "terminated"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return "killed"


def stop(run_dir: Path, *, grace: float = 10.0) -> str | None:
    """Stop the local IM by its PID. Returns "terminated"/"killed", or None if none was running."""
    info = read_state(run_dir)
    if info is None:
        return None
    outcome = _terminate(info.pid, grace) if _pid_is_ours(info.pid) else None
    (run_dir / _STATE_FILE).unlink(missing_ok=True)
    return outcome


def kill(run_dir: Path) -> bool:
    """SIGKILL the local IM at once (used by tests that simulate a crash). Keeps its data."""
    info = read_state(run_dir)
    if info is None or not _pid_is_ours(info.pid):
        return False
    os.killpg(info.pid, signal.SIGKILL)
    while _alive(info.pid):
        time.sleep(0.05)
    (run_dir / _STATE_FILE).unlink(missing_ok=True)
    return True


def status(run_dir: Path, venv: Path) -> LocalIMStatus:
    info = read_state(run_dir)
    installed = venv_python(venv).exists()
    if info is None or not _pid_is_ours(info.pid):
        return LocalIMStatus(running=False, installed=installed, venv=str(venv))
    return LocalIMStatus(running=True, installed=installed, venv=str(venv), info=info, version=_answers(info.url))
