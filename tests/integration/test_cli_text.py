"""The text output of the commands that read IM, through the real CLI against the real IM (local-sim).

What a person reads: tables with headers, ``-`` where IM has no value (the simulated cloud has no public IPs),
lists joined with ``, ``, ``1 worker``; never a Python value (``None``, ``['10.0.0.2']``, ``True``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clihelper import CLI, assert_human
from tests.conftest import RunningIM

pytestmark = pytest.mark.im


@pytest.fixture
def cli(local_im: RunningIM, tmp_path: Path) -> CLI:
    return CLI(tmp_path / "home", local_im.url, local_im.auth_file)


def text(cli: CLI, *args: str) -> str:
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert_human(result.stdout)
    assert "[" not in result.stdout, result.stdout  # no list printed as Python prints it
    return result.stdout


def test_cluster_and_infra_text(cli: CLI) -> None:
    created = text(cli, "cluster", "create", "words", "--template", "kubernetes", "--site", "local-sim")
    assert created.splitlines()[0] == "cluster words: configured (1 worker)"
    try:
        view = cli.json("cluster", "status", "words")
        assert isinstance(view, dict)
        infra_id = view["infra_id"]

        lines = text(cli, "cluster", "status", "words").splitlines()
        assert lines[0] == "cluster words: configured (1 worker)"
        assert lines[2].split() == ["VM", "ROLE", "STATE", "PRIVATE", "IP", "PUBLIC", "IP"]
        rows = [line.split() for line in lines[3:5]]
        assert [(r[1], r[4]) for r in rows] == [("front", "-"), ("wn", "-")]

        listed = text(cli, "cluster", "list").splitlines()
        assert listed[0].split() == ["NAME", "STATE", "WORKERS", "TEMPLATE", "SITE", "INFRASTRUCTURE"]
        assert listed[1].split() == ["words", "configured", "1", "kubernetes", "local-sim", infra_id]

        scaled = text(cli, "cluster", "scale", "words", "--workers", "2")
        assert scaled.splitlines()[0] == "cluster words: configured (2 workers)"

        outputs = cli.json("cluster", "outputs", "words")
        assert isinstance(outputs, dict) and len(outputs["wn_private_ips"]) == 2
        lines = text(cli, "cluster", "outputs", "words").splitlines()
        assert lines[0].split() == ["OUTPUT", "VALUE"]
        shown = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
        assert shown["wn_private_ips"] == ", ".join(outputs["wn_private_ips"])
        assert shown["front_public_ip"] == "-" and outputs["front_public_ip"] is None

        ids = text(cli, "infra", "list").splitlines()
        assert ids[0] == "INFRASTRUCTURE" and infra_id in ids[1:]
        vms = text(cli, "infra", "vms", infra_id).splitlines()
        assert vms[0].split() == ["VM", "NAME", "STATE", "PRIVATE", "IP", "PUBLIC", "IP"]
        assert len(vms) == 4 and all(line.split()[-1] == "-" for line in vms[1:])
        state = text(cli, "infra", "state", infra_id).splitlines()
        assert state[0] == "configured" and state[1].split() == ["VM", "STATE"] and len(state) == 5
        infra_outputs = text(cli, "infra", "outputs", infra_id).splitlines()
        assert infra_outputs[0].split() == ["OUTPUT", "VALUE"]
        assert json.loads(cli("infra", "outputs", infra_id, "-o", "json").stdout) == cli.json(
            "cluster", "outputs", "words"
        )
    finally:
        assert cli("cluster", "destroy", "words", "--yes").returncode == 0
