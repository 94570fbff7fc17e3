"""Doc-tests of the ops runbooks: every ``sh runnable`` block of ``provisioner/data/runbooks/*.md`` runs, in order,
against the real local IM (and, for the edge route, the loopback sshd hosts), as an on-call person would type it.

A runbook's blocks share one shell environment (``export`` carries over), one ``PROVISION_HOME`` and one working
directory. ``stage=`` options put the situation the runbook is about in place first (IM stopped, a token expired,
the registry lost); see :data:`STAGES`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import localim
from provisioner.privfs import write_secret_file
from provisioner.settings import ENV_STATE_URL
from tests.conftest import REPO, RunningIM, SSHLab
from tests.jwt import expired_jwt
from tests.pglab import PgLab
from tests.runbooks.mdblocks import Block, runnable_blocks

pytestmark = [pytest.mark.im, pytest.mark.slow]

RUNBOOKS = sorted((REPO / "provisioner" / "data" / "runbooks").glob("*.md"))
NOT_RUNBOOKS = {"README.md"}


@dataclass
class Desk:
    """Where the on-call person works: a shell environment, a state directory and a working directory."""

    cwd: Path
    env: dict[str, str]
    local_im: RunningIM
    ssh_lab: SSHLab | None
    pg_lab: PgLab | None = None  # the team's state database, for the runbooks about it (state-*)

    @property
    def home(self) -> Path:
        return Path(self.env["PROVISION_HOME"])


def _im_down(desk: Desk) -> None:
    localim.stop(desk.local_im.run_dir)


def _im_back(desk: Desk) -> None:
    """IM started again at the same address with the same database (as after a host reboot)."""
    localim.start(desk.local_im.run_dir, desk.local_im.venv, port=int(desk.local_im.url.rsplit(":", 1)[1]))


def _cluster_exists(desk: Desk) -> None:
    """The cluster the runbook is about, made the normal way."""
    made = subprocess.run(
        ["provision", "cluster", "create", desk.env["CLUSTER"], "-t", "kubernetes", "-s", "local-sim",
         "--set", "wn_num=2"],
        env=desk.env, cwd=desk.cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


def _expired_token(desk: Desk) -> None:
    write_secret_file(
        desk.cwd / "expired.dat",
        f"id = sim; type = Dummy\nid = im; type = InfrastructureManager; token = {expired_jwt()}\n",
    )


def _rotated_credentials(desk: Desk) -> None:
    write_secret_file(
        desk.cwd / "new-auth.dat",
        "id = sim; type = Dummy\nid = im; type = InfrastructureManager; username = ops-2026; password = rotated-pw-7\n",
    )


def _registry_lost(desk: Desk) -> None:
    for suffix in ("", "-wal", "-shm"):
        (desk.home / f"state.db{suffix}").unlink(missing_ok=True)


def _edge_hosts(desk: Desk) -> None:
    from tests.integration.test_addons_cli import edge_inventory

    assert desk.ssh_lab is not None
    edge_inventory(desk.ssh_lab, desk.cwd / "edge-hosts.yml")


def _state_down(desk: Desk) -> None:
    """The team's PostgreSQL stopped as by its service's restart (sessions ended), its files kept."""
    assert desk.pg_lab is not None
    desk.pg_lab.halt()


def _state_back(desk: Desk) -> None:
    assert desk.pg_lab is not None
    desk.pg_lab.resume()


STAGES: dict[str, Callable[[Desk], None]] = {
    "im-down": _im_down,
    "im-back": _im_back,
    "cluster-exists": _cluster_exists,
    "expired-token": _expired_token,
    "rotated-credentials": _rotated_credentials,
    "registry-lost": _registry_lost,
    "edge-hosts": _edge_hosts,
    "state-down": _state_down,
    "state-back": _state_back,
}


def run_block(desk: Desk, block: Block) -> subprocess.CompletedProcess[str]:
    envfile = desk.cwd / ".runbook-env"
    script = f"[ -f {envfile} ] && . {envfile}\ntrap 'export -p > {envfile}' EXIT\nset -eo pipefail\n{block.code}"
    return subprocess.run(
        ["bash", "-c", script],
        cwd=desk.cwd,
        env=desk.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def desk(local_im: RunningIM, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Desk]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("{}\n")
    cwd = tmp_path / "desk"
    cwd.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PROVISION_HOME": str(home),
        "PROVISION_CONFIG": str(home / "config.yaml"),
        "PROVISION_IM_URL": local_im.url,
        "PROVISION_AUTH_FILE": str(local_im.auth_file),
        "PROVISION_CONNECT_TIMEOUT": "2",
        "PROVISION_READ_TIMEOUT": "30",
        # What the runbooks ask the reader to set first.
        "CLUSTER": "ops-demo",
        "SITE": "local-sim",
        "EDGE": "edge-demo",
    }
    lab = request.getfixturevalue("ssh_lab") if "edge" in request.node.name else None
    pg_lab: PgLab | None = None
    if "[state-" in request.node.name:  # the state is the team's PostgreSQL (a database of this test's own)
        pg_lab = request.getfixturevalue("pg_lab")
        env[ENV_STATE_URL] = pg_lab.url(pg_lab.create_database())
    with local_im.client() as client:
        before = set(client.list_infrastructures())
    yield Desk(cwd=cwd, env=env, local_im=local_im, ssh_lab=lab, pg_lab=pg_lab)
    if pg_lab is not None and not pg_lab.running():  # the worker's PostgreSQL serves the next tests too
        pg_lab.resume()
    # Leave the shared IM running, and without what the runbook made, for the next test.
    if localim.read_state(local_im.run_dir) is None:
        localim.start(local_im.run_dir, local_im.venv, port=int(local_im.url.rsplit(":", 1)[1]))
    # A runbook may have handed its cluster to rotated credentials: clean up as every owner it may have now.
    for auth_file in (local_im.auth_file, cwd / "new-auth.dat"):
        if auth_file.exists():
            with local_im.client(auth_file=auth_file) as client:
                for infra in set(client.list_infrastructures()) - before:
                    client.destroy(infra, force=True)


def test_there_is_a_runbook_for_every_situation() -> None:
    names = {p.name for p in RUNBOOKS}
    for wanted in (
        "deploy.md",
        "scale.md",
        "stuck-or-unconfigured.md",
        "worker-failed.md",
        "token-expired.md",
        "im-down.md",
        "destroy.md",
        "recover-registry.md",
        "edge-k3s.md",
        "cloud-refused.md",
    ):
        assert wanted in names


def test_triage_points_only_at_runbooks_that_exist() -> None:
    from provisioner.triage import RUNBOOKS as BY_CAUSE
    from provisioner.triage import Cause, Triage

    for cause in Cause:
        page = REPO / "provisioner" / "data" / "runbooks" / f"{Triage(cause, 'x').runbook}.md"
        assert page.is_file(), BY_CAUSE[cause]


@pytest.mark.parametrize("runbook", [p for p in RUNBOOKS if p.name not in NOT_RUNBOOKS], ids=lambda p: p.stem)
def test_runbook_commands_run(runbook: Path, desk: Desk, local_im: RunningIM) -> None:
    blocks = runnable_blocks(runbook)
    assert blocks, f"{runbook.name} has no runnable block"
    text = runbook.read_text()
    for heading in ("## What you see", "## Why", "## What to do"):
        assert heading in text, f"{runbook.name} lacks '{heading}'"
    for block in blocks:
        if block.stage is not None:
            STAGES[block.stage](desk)
        result = run_block(desk, block)
        out = result.stdout + result.stderr
        assert result.returncode == block.exit, f"{block.where}: exit {result.returncode}\n{block.code}\n{out}"
        assert "Traceback" not in out, f"{block.where}\n{out}"
        for wanted in block.expect:
            assert wanted in out, f"{block.where}: {wanted!r} not in the output\n{out}"
