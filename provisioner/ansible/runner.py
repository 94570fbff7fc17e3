"""Running our playbooks with ansible-runner: progress from its events, artifacts kept, secrets kept out.

Each run gets an artifacts directory ``<home>/runs/<cluster>/<ident>/`` (ansible-runner's own layout: ``stdout``,
``job_events/``, ``command``, ``rc``, ``status``); the last :data:`KEEP_RUNS` runs of a cluster are kept.

Secrets never reach the artifacts: they are passed to ``ansible-playbook`` as ``-e @FILE`` where FILE is a 0600
file outside the artifacts directory, deleted when the run ends (the artifacts record only its path); the tasks
that use them are ``no_log`` (checked by the playbook tests); and nothing secret goes into the environment, which
ansible-runner writes into ``command``. After the run, the artifacts are scanned for the secret values (the secret
variables and the inventory's login and become passwords); a hit is scrubbed and reported as an error, so a leak
is caught loudly, not shipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import OperationFailed, OperationTimeout, PlaybookFailed
from provisioner.privfs import ensure_private_dir, write_secret_file
from provisioner.redact import register_secret
from provisioner.settings import data_path

KEEP_RUNS = 20
DEFAULT_PLAYBOOK_TIMEOUT = 3600.0  # seconds a whole run may take (--playbook-timeout)
FAILED_EVENTS = frozenset({"runner_on_failed", "runner_on_unreachable", "runner_on_async_failed"})


def playbook_dir() -> Path:
    """The playbooks, roles and vars shipped in the package (``provisioner/data/playbooks/``)."""
    return data_path("playbooks")


@dataclass(frozen=True)
class RunEvent:
    """One step of a run, for progress display: a task starting, or a task's result on a host."""

    kind: str  # "task" | "ok" | "changed" | "failed" | "unreachable" | "skipped" | "play"
    task: str | None = None
    host: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed on a host, or could not reach it, and that the playbook did not ignore: what
    :meth:`RunResult.raise_for_failure` reports."""

    host: str
    task: str
    role: str | None
    message: str
    unreachable: bool = False


@dataclass
class RunResult:
    """How one :func:`run_playbook` ended: ansible-runner's status and rc, the run's artifacts directory, the task
    failures, per-host counts, and the task running when it stopped."""

    ident: str
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    rc: int | None
    artifacts: Path
    failures: list[TaskFailure] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    tasks_seen: int = 0
    running_task: str | None = None  # the last task started ("role : task"), e.g. the one a timeout cut short
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0

    def raise_for_failure(self, what: str) -> None:
        if self.ok:
            return
        if self.status == "timeout":
            during = f"during task '{self.running_task}'" if self.running_task else "before its first task"
            limit = f"{self.timeout:g} s" if self.timeout is not None else "its time limit"
            raise OperationTimeout(
                f"{what}: ansible-playbook was stopped after {limit}, {during}",
                hint=f"a longer --playbook-timeout lets it finish; the run so far is in {self.artifacts}/stdout",
            )
        first = self.failures[0] if self.failures else None
        if first is not None:
            # Hosts run a task in parallel, so which one reports first is chance: name every host
            # that failed the same task, in a stable order.
            hosts = sorted(
                {f.host for f in self.failures if f.task == first.task and f.unreachable == first.unreachable}
            )
            verb = "could not reach" if first.unreachable else "failed on"
            raise PlaybookFailed(
                f"{what}: task '{first.task}' {verb} {', '.join(hosts)}: {first.message}",
                task=first.task,
                host=", ".join(hosts),
                hint=f"the whole run is in {self.artifacts}/stdout",
            )
        raise PlaybookFailed(
            f"{what}: ansible-playbook ended {self.status} (rc {self.rc})",
            hint=f"the whole run is in {self.artifacts}/stdout",
        )


def _message(res: Mapping[str, Any]) -> str:
    if res.get("censored"):
        return "(output hidden: the task handles a secret)"
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
    if not isinstance(msg, str):
        msg = json.dumps(msg)
    msg = " ".join(msg.split())
    return msg[:400] or "no message"


def _new_ident() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}-{time.monotonic_ns() % 100000:05d}"


@contextlib.contextmanager
def _secrets_file(home: Path, ident: str, secrets: Mapping[str, str]) -> Iterator[Path | None]:
    if not secrets:
        yield None
        return
    directory = Path(home) / "tmp"
    ensure_private_dir(directory)
    path = directory / f"{ident}.secrets.yml"
    for value in secrets.values():
        register_secret(value)
    write_secret_file(path, yaml.safe_dump(dict(secrets), default_flow_style=False))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _rotate(root: Path, keep: int) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def scrub_artifacts(artifacts: Path, secrets: Sequence[str]) -> list[Path]:
    """Replace any secret value found in the artifacts with ``***``; return the files that held one."""
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    hits: list[Path] = []
    if not values or not artifacts.exists():
        return hits
    for path in artifacts.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        cleaned = text
        for value in values:
            cleaned = cleaned.replace(value, "***")
        if cleaned != text:
            path.write_text(cleaned, encoding="utf-8")
            hits.append(path)
    return hits


RUN_MARKER = "AWX_ISOLATED_DATA_DIR"  # ansible-runner puts the run's artifacts directory in ansible-playbook's env


def _leftover_processes(artifacts: Path) -> list[int]:
    """The processes of a run still alive: everything whose environment carries the run's artifacts directory."""
    marker = f"{RUN_MARKER}={artifacts}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue  # gone, or not ours
    return [pid for pid in found if pid != os.getpid()]


def _stop_leftovers(artifacts: Path) -> None:
    """Kill what a stopped run left running.

    At the time limit ansible-runner SIGKILLs ansible-playbook's process group, but Ansible's workers run in
    sessions of their own (``setsid``), with the task's processes under them: they would go on (a remote command,
    a local sleep) after the command has said the run was stopped. Each one's whole process group is killed.
    """
    for _ in range(5):
        pids = _leftover_processes(artifacts)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    home: Path,
    cluster: str,
    public_vars: Mapping[str, Any],
    secret_vars: Mapping[str, str],
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    limit: str | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    extra_env: Mapping[str, str] | None = None,
    verbosity: int = 0,
    scan_secrets: Sequence[str] = (),
    timeout: float | None = None,
) -> RunResult:
    """Run ``playbooks/<playbook>`` (or an absolute path) on ``inventory``; never raises for a failed task.

    ``scan_secrets``: more values the artifacts must not hold (the inventory's passwords, kept in its 0600
    host_vars), scanned for with the secret variables after the run. ``timeout``: seconds the whole run may take
    (whole seconds, at least 1); past it ansible-runner kills ansible-playbook's process group and the result's
    status is ``timeout``, with ``running_task`` the task it was in."""
    import ansible_runner

    book = Path(playbook) if Path(playbook).is_absolute() else playbook_dir() / playbook
    if not book.is_file():
        raise OperationFailed(f"playbook {book} is missing from this installation")
    root = Path(home) / "runs" / cluster
    ensure_private_dir(root)
    ident = _new_ident()
    for value in scan_secrets:
        register_secret(value)  # masked wherever this process shows text
    artifacts = root / ident
    work = root / f".work-{ident}"
    ensure_private_dir(work)
    public_file = work / "vars.yml"
    public_file.write_text(yaml.safe_dump(dict(public_vars), default_flow_style=False), encoding="utf-8")
    failures: list[TaskFailure] = []
    stats: dict[str, dict[str, int]] = {}
    seen = {"tasks": 0}
    running: dict[str, str | None] = {"task": None}

    def handle(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        task = data.get("task")
        host = data.get("host")
        role = data.get("role")
        if name == "playbook_on_task_start":
            seen["tasks"] += 1
            kind = "task"
            running["task"] = f"{role} : {task}" if role else str(task)
        elif name == "playbook_on_play_start":
            kind = "play"
            task = data.get("play")
        elif name == "runner_on_ok":
            kind = "changed" if (data.get("res") or {}).get("changed") else "ok"
        elif name == "runner_on_skipped":
            kind = "skipped"
        elif name in FAILED_EVENTS:
            kind = "unreachable" if name == "runner_on_unreachable" else "failed"
            if not data.get("ignore_errors"):
                failures.append(
                    TaskFailure(
                        host=str(host),
                        task=str(task),
                        role=role,
                        message=_message(data.get("res") or {}),
                        unreachable=kind == "unreachable",
                    )
                )
        elif name == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped"):
                for h, n in (data.get(key) or {}).items():
                    stats.setdefault(h, {})[key] = n
            return True
        else:
            return True
        if on_event is not None:
            on_event(RunEvent(kind=kind, task=task, host=host, role=role))
        return True

    # TMPDIR may itself be long (a test's tmp_path): then /tmp, whose sockets fit (ssh adds about 50 bytes).
    control_dir = tempfile.mkdtemp(prefix="pv-cp-", dir=None if len(tempfile.gettempdir()) <= 40 else "/tmp")  # noqa: S108 - mkdtemp: 0700, a fresh name
    env = {
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        # A unix socket path must stay under 108 bytes: a short private directory, not one under the home.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir,
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_ROLES_PATH": str(playbook_dir() / "roles"),
        # The venv's ansible-playbook, whatever PATH the caller has.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        **(extra_env or {}),
    }
    with _secrets_file(home, ident, secret_vars) as secret_file:
        cmdline = f"-e @{public_file}" + (f" -e @{secret_file}" if secret_file else "")
        runner: Any = None
        try:
            runner = ansible_runner.run(
                private_data_dir=str(work),
                artifact_dir=str(root),
                ident=ident,
                playbook=str(book),
                project_dir=str(playbook_dir()),
                inventory=str(inventory),
                cmdline=cmdline,
                tags=",".join(tags) or None,
                skip_tags=",".join(skip_tags) or None,
                limit=limit,
                envvars=env,
                event_handler=handle,
                quiet=True,
                verbosity=verbosity or None,
                rotate_artifacts=0,
                suppress_env_files=True,
                timeout=max(1, math.ceil(timeout)) if timeout is not None else None,
            )
        finally:
            if runner is None or str(runner.status) in ("timeout", "canceled"):
                _stop_leftovers(artifacts)  # stopped at the time limit, or interrupted
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(control_dir, ignore_errors=True)
    leaked = scrub_artifacts(artifacts, [*secret_vars.values(), *scan_secrets])
    _rotate(root, KEEP_RUNS)
    if leaked:
        raise OperationFailed(
            f"a secret reached the ansible artifacts ({', '.join(p.name for p in leaked[:3])}); it was scrubbed",
            hint="this is a bug in a playbook task (missing no_log): please report it",
        )
    return RunResult(
        ident=ident,
        status=str(runner.status),
        rc=runner.rc,
        artifacts=artifacts,
        failures=failures,
        stats=stats,
        tasks_seen=seen["tasks"],
        running_task=running["task"],
        timeout=timeout,
    )
