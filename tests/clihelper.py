"""The real ``provision`` command run as a subprocess, with its own home."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioner.state import StateStore

PYTHON_VALUES = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\['|\[\]|\{'")


def assert_human(text: str) -> None:
    """No Python value leaked into a command's text output: None, True/False, a list's or a dict's repr."""
    assert not PYTHON_VALUES.search(text), text


class CLI:
    """The ``provision`` command with its own home, pointed at one IM URL.

    It runs in ``cwd`` (default: the home's parent, a test's tmp_path), never in the repository: commands write
    relative paths there (``inventories/NAME/hosts.yml``, with 0600 host_vars holding passwords).
    """

    def __init__(self, home: Path, im_url: str, auth_file: Path, cwd: Path | None = None) -> None:
        self.home = home
        self.cwd = cwd if cwd is not None else home.parent
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.yaml").write_text("{}\n")
        self.env = {
            **os.environ,
            "PROVISION_HOME": str(home),
            "PROVISION_CONFIG": str(home / "config.yaml"),
            "PROVISION_IM_URL": im_url,
            "PROVISION_AUTH_FILE": str(auth_file),
            # No progress lines on the (piped) stderr, which tests read for error lines; tests of them set it.
            "PROVISION_PROGRESS_INTERVAL": "0",
            # The simulated cloud is done in a fraction of a second: look again soon (the schedule is unit-tested).
            "PROVISION_POLL_INITIAL": "0.2",
        }

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "provisioner", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
        )

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provisioner", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            timeout=300,
            check=False,
        )

    def in_process(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The same command run in this process (``main_exit_code``, the console entry point's body): the
        environment, working directory and standard streams are this CLI's for the call, then restored. For
        commands that end before sending anything (bad input): no interpreter start-up per case."""
        from provisioner.cli.main import main_exit_code

        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        out, err = io.StringIO(), io.StringIO()
        os.environ.clear()
        os.environ.update({**self.env, **(env or {})})
        os.chdir(self.cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main_exit_code(list(args))
        finally:
            from provisioner.state import use_url

            use_url(None)  # the command named its state backend for this process: the default again after it
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        return subprocess.CompletedProcess(["provision", *args], code, out.getvalue(), err.getvalue())

    @property
    def state_url(self) -> str | None:
        """The state database this CLI's commands use (``PROVISION_STATE_URL``), ``None`` for ``<home>/state.db``."""
        return self.env.get("PROVISION_STATE_URL") or None

    def store(self) -> StateStore:
        """This CLI's state, opened where its commands open it (``with cli.store() as store: ...``)."""
        from provisioner.state import Store
        from provisioner.state.pg import PgStore

        url = self.state_url
        return PgStore.open(url) if url else Store.open(self.home)

    def state_text(self) -> str:
        """Everything the state database holds, as text (to look for what must not be there)."""
        url = self.state_url
        if not url:
            import sqlite3

            path = self.home / "state.db"
            if not path.exists():
                return ""
            conn = sqlite3.connect(path)
            try:
                return "\n".join(conn.iterdump())
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            return "\n".join(
                str(row)
                for table in tables
                for row in conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608 - the catalogue's names
            )

    def json(self, *args: str) -> object:
        result = self(*args, "-o", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def record_installed_edge(home: Path, name: str, inventory: Path, **extra: Any) -> None:
    """Record ``name`` as an installed edge cluster on ``inventory`` (K3s cannot be installed here)."""
    from provisioner.model import ClusterKind
    from provisioner.state import Store, inputs_hash, new_deployment_id

    with Store.open(home) as store:
        store.upsert_cluster(
            name,
            im_url="",
            kind=ClusterKind.EDGE,
            template="k3s-edge",
            site="edge",
            inputs={},
            deployment_id=new_deployment_id(),
            inputs_hash=inputs_hash({}),
            infra_id=None,
            state="installed",
            extra={"kind": "edge", "inventory_source": str(inventory), **extra},
        )


# Runs the CLI as the console script does (provisioner.cli.main), then reports what was imported on stderr's last line.
_REPORTING = """
import json, sys
from provisioner.cli.main import main_exit_code
code = main_exit_code(sys.argv[1:])
sys.stderr.write("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def run_reporting_modules(
    args: tuple[str, ...], env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], int, set[str]]:
    """``provision ARGS`` in a fresh interpreter: the process, its exit code and every module it imported."""
    proc = subprocess.run(
        [sys.executable, "-c", _REPORTING, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return proc, int(report["code"]), set(report["modules"])


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages count with their submodules) are in ``modules``."""
    return [name for name in names if any(m == name or m.startswith(name + ".") for m in modules)]
