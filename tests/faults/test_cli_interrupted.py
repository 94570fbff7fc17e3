"""Ctrl-C (a real SIGINT) during the long commands: exit 130, one line saying how to resume; resuming converges.

And the progress lines off a terminal: on the piped stderr, never on stdout (``-o json`` stays one document).
"""

from __future__ import annotations

import json
import signal

import pytest

from provisioner.state import Phase
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy
from tests.faults.conftest import infras, wait_for_phase

pytestmark = pytest.mark.im


def create_args(name: str, workers: int = 1) -> tuple[str, ...]:
    return ("cluster", "create", name, "-t", "kubernetes", "-s", "local-sim", "--set", f"wn_num={workers}")


def test_ctrl_c_during_create_wait_says_how_to_resume(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    name = "int-create"
    before = infras(local_im)
    proxy.add("pass", "delay:2", "delay:2")  # the POST, then slow state polls: the CLI is in its wait
    proc = pcli.popen(*create_args(name))
    wait_for_phase(pcli.home, name, Phase.WAITING, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"interrupted: IM goes on; resume with `provision cluster status {name} --wait`"]
    assert out == ""
    status = pcli("cluster", "status", name, "--wait", "-o", "json")  # the resume the line names
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["state"] == "configured"
    assert infras(local_im) - before == {view["infra_id"]}

    proxy.add("delay:2")  # the scale's POST: the CLI is inside the command when interrupted
    proc = pcli.popen("cluster", "scale", name, "--workers", "2")
    wait_for_phase(pcli.home, name, Phase.SCALING, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"interrupted: IM goes on; resume with `provision cluster scale {name} --workers 2`"]
    again = pcli("cluster", "scale", name, "--workers", "2", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["workers"] == 2

    proxy.add("delay:2")  # the DELETE
    proc = pcli.popen("cluster", "destroy", name, "--yes")
    wait_for_phase(pcli.home, name, Phase.DESTROYING, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == [
        f"interrupted: IM may still be deleting; resume with `provision cluster destroy {name} --yes`"
    ]
    done = pcli("cluster", "destroy", name, "--yes")
    assert done.returncode == 0, done.stderr
    assert infras(local_im) == before


def test_progress_lines_on_a_piped_stderr_and_stdout_one_json_document(cli: CLI, local_im: RunningIM) -> None:
    name = "progress-lines"
    # A heartbeat at every poll: the test reads what the lines say, not when they come.
    created = cli(*create_args(name), "-o", "json", env={"PROVISION_PROGRESS_INTERVAL": "0.001"})
    try:
        assert created.returncode == 0, created.stderr
        view = json.loads(created.stdout)  # the whole of stdout is one JSON document
        assert view["state"] == "configured"
        lines = created.stderr.splitlines()
        assert lines, "no progress line on a piped stderr"
        assert all(line.startswith(f"{name}: ") for line in lines), lines
        assert any(" s (" in line for line in lines)
        quiet = cli("cluster", "status", name, "--wait", "-o", "json")  # the harness's PROVISION_PROGRESS_INTERVAL=0
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    finally:
        cli("cluster", "destroy", name, "--yes")
