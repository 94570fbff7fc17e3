"""Planted secrets, then every command in every output mode and log level: the values must show up nowhere.

Planted: the OSCAR and MinIO passwords of an IM cluster (``--set``), the IM password of the auth file (a copy of the
local IM's, with a new password: the local IM has no user list, so it is simply another IM user), and the OSCAR and
MinIO passwords of an edge cluster whose preflight runs over SSH against real sshd hosts. Searched: stdout and
stderr of every command (JSON and text; ``-v``, ``-vv``, ``--debug``; refused inputs that carry a secret) and every
file under PROVISION_HOME except ``secrets/``: the state DB (registry, journal, decision log) and its WAL, locks,
inventories, known_hosts, Ansible run artifacts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.clihelper import CLI
from tests.conftest import RunningIM, SSHLab
from tests.faults.conftest import FAST, infras
from tests.integration.test_addons_cli import edge_inventory

pytestmark = [pytest.mark.im, pytest.mark.slow]

OSCAR_PW = "Planted-Oscar-7Qz9x2Lm"
MINIO_PW = "Planted-Minio-3Kd8w1Rp"
IM_PW = "Planted-IM-Pass-5Hj2v8Nc"
EDGE_OSCAR_PW = "Planted-Edge-Oscar-6Tn4rBv"
EDGE_MINIO_PW = "Planted-Edge-Minio-9Wc1sXe"
PLANTED = (OSCAR_PW, MINIO_PW, IM_PW, EDGE_OSCAR_PW, EDGE_MINIO_PW)


def planted_auth(local_im: RunningIM, path: Path) -> Path:
    text = local_im.auth_file.read_text()
    changed = re.sub(r"password = \S+", f"password = {IM_PW}", text)
    assert changed != text and IM_PW in changed
    path.write_text(changed)
    path.chmod(0o600)
    return path


def files_holding(home: Path, value: str) -> list[str]:
    hits = []
    for file in home.rglob("*"):
        rel = file.relative_to(home)
        if file.is_file() and rel.parts[0] != "secrets" and value.encode() in file.read_bytes():
            hits.append(str(rel))
    return hits


class Recorder:
    """Runs CLI commands and keeps every stdout and stderr."""

    def __init__(self, cli: CLI) -> None:
        self.cli = cli
        self.outputs: list[tuple[str, str]] = []

    def __call__(self, *args: str, ok: bool = True, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = self.cli(*args)
        self.outputs.append((" ".join(args), result.stdout + "\n" + result.stderr))
        if ok:
            assert result.returncode == code, (args, result.stderr)
        return result

    def leaks(self) -> list[tuple[str, str]]:
        return [(cmd, value) for cmd, text in self.outputs for value in PLANTED if value in text]


def test_planted_secrets_appear_nowhere(local_im: RunningIM, ssh_lab: SSHLab, tmp_path: Path) -> None:
    auth = planted_auth(local_im, tmp_path / "auth.dat")
    cli = CLI(tmp_path / "home", local_im.url, auth)
    cli.env.update(FAST)
    run = Recorder(cli)
    sets = ("--set", f"oscar_password={OSCAR_PW}", "--set", f"minio_password={MINIO_PW}")
    create = ("cluster", "create", "sec", "-t", "oscar", "-s", "local-sim", *sets)

    # The IM route: the whole lifecycle, in both output modes, at every log level.
    run("-vv", "--debug", *create, "-o", "json")
    run("-v", *create)  # the resume path
    run("-vv", "cluster", "status", "sec", "-o", "json")
    run("-v", "cluster", "status", "sec", "--wait")
    run("cluster", "outputs", "sec")
    run("-vv", "--debug", "cluster", "outputs", "sec", "-o", "json")
    run("-vv", "cluster", "scale", "sec", "--workers", "2", "-o", "json")
    run("-v", "cluster", "scale", "sec", "--workers", "1")
    run("-vv", "cluster", "logs", "sec")
    run("cluster", "logs", "sec", "-o", "json")
    run("-vv", "cluster", "list", "-o", "json")
    run("cluster", "inventory", "sec", "--path", str(cli.home / "inventories" / "sec" / "hosts.yml"))
    run("-vv", "cluster", "reconfigure", "sec", "-o", "json")
    run("-vv", "template", "render", "oscar", "--site", "local-sim", *sets)
    run("template", "validate", "oscar", *sets, "-o", "json")
    run("-vv", "--debug", "infra", "list")
    # Refused inputs that carry a planted value must not echo it.
    run(
        "cluster", "create", "sec2", "-t", "oscar", "-s", "local-sim", "--set", f"minio_password={MINIO_PW}" * 2, code=2
    )
    run("cluster", "create", "sec2", "-t", "oscar", "-s", "local-sim", "--set", f"admin_token={OSCAR_PW} x", code=2)
    run("--debug", "cluster", "create", "sec3", "-t", "oscar", "-s", "nosuch", *sets, code=2)

    # The edge route: preflight over SSH (an Ansible run, its artifacts kept under runs/).
    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml")
    edge_sets = ("--set", f"oscar_password={EDGE_OSCAR_PW}", "--set", f"minio_password={EDGE_MINIO_PW}")
    run("-vv", "--debug", "edge", "create", "edge-sec", "--inventory", str(inventory), "--preflight", *edge_sets,
        "-o", "json")  # fmt: skip
    assert list((cli.home / "runs" / "edge-sec").iterdir())  # the artifacts that are searched below exist

    # Everything written so far (before destroy forgets the clusters).
    assert run.leaks() == []
    for value in PLANTED:
        assert files_holding(cli.home, value) == [], value
    # The secrets themselves are where they belong, and only there.
    assert OSCAR_PW in (cli.home / "secrets" / "sec.yaml").read_text()
    assert not (cli.home / "secrets" / "edge-sec.yaml").exists()  # --preflight records nothing, secrets included

    before_destroy = infras(local_im)
    run("-vv", "--debug", "cluster", "destroy", "sec", "--yes")
    assert before_destroy == infras(local_im)  # the planted auth file is another IM user: not listed by the fixture
    assert run.leaks() == []
    for value in PLANTED:
        assert files_holding(cli.home, value) == [], value
    assert not (cli.home / "secrets" / "sec.yaml").exists()
