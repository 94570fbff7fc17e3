"""IM SIGKILLed and restarted (same port, same database) under a running create or scale.

The fault proxy holds the CLI's requests so that the crash lands where the test says: during ``--wait`` (IM done with
its own work, the CLI not yet told), with a scale's POST still on its way, or right after an async POST. The command
(or a re-run of it) must converge: exactly one infrastructure, the right worker count, the journal's phases in order.
"""

from __future__ import annotations

import json
import time

import pytest

from provisioner.state import Phase
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy
from tests.faults.conftest import (
    CREATE_PHASES,
    forwarded_posts,
    in_order,
    infras,
    phases,
    record,
    wait_for_phase,
    workers_in_im,
)

pytestmark = [pytest.mark.im, pytest.mark.slow]


def create_args(name: str, workers: int) -> tuple[str, ...]:
    return ("cluster", "create", name, "-t", "kubernetes", "-s", "local-sim", "--set", f"wn_num={workers}")


def im_state(local_im: RunningIM, infra: str) -> str:
    with local_im.client() as client:
        return client.state(infra).state


def wait_in_im(local_im: RunningIM, infra: str, state: str = "configured", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while im_state(local_im, infra) != state:
        assert time.monotonic() < deadline, f"IM did not reach {state}"
        time.sleep(0.2)


def test_im_crashes_during_create_wait(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    """IM has done its work; the CLI is still waiting (its poll held by the proxy) when IM is killed and restarted."""
    name = "crash-create"
    before = infras(local_im)
    proxy.add("pass", "delay:4")  # the POST goes through; the first state poll is held while IM dies
    proc = pcli.popen(*create_args(name, 2), "--timeout", "120", "-o", "json")
    wait_for_phase(pcli.home, name, Phase.WAITING, proc)
    infra = record(pcli.home, name).infra_id
    wait_in_im(local_im, infra)
    assert proc.poll() is None  # the CLI is still in its wait
    local_im.crash_and_restart()
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err
    view = json.loads(out)
    assert (view["infra_id"], view["state"], view["workers"]) == (infra, "configured", 2)
    assert infras(local_im) - before == {infra}
    assert workers_in_im(local_im, infra) == 2
    assert forwarded_posts(proxy) == 1
    assert in_order(CREATE_PHASES, phases(pcli.home, name))
    assert cli_destroy(pcli, name)
    assert not infras(local_im) - before


def test_im_crashes_right_after_an_async_create(cli: CLI, local_im: RunningIM) -> None:
    """IM killed right after accepting an async create. If it had not launched the VMs yet, IM 2.0.0 does not resume
    that work after a restart (the infrastructure stays 'pending' for good) and no wait can converge: the CLI must
    then end with exit 4 and the resume hint. Killed mid-contextualization, IM reports 'unconfigured' after the
    restart: exit 1, and a reconfigure converges. Either way a re-run never creates a second infrastructure."""
    name = "crash-launch"
    before = infras(local_im)
    created = cli(*create_args(name, 2), "--no-wait", "-o", "json")
    assert created.returncode == 0, created.stderr
    infra = json.loads(created.stdout)["infra_id"]
    local_im.crash_and_restart()
    waited = cli(*create_args(name, 2), "--timeout", "6", "-o", "json")
    assert "Traceback" not in waited.stderr
    journal = phases(cli.home, name)
    if waited.returncode == 0:  # IM had finished launching before it was killed
        assert json.loads(waited.stdout)["state"] == "configured"
        assert journal[-1] == Phase.CONFIGURED
    elif waited.returncode == 1:  # killed mid-contextualization: IM reports the VMs unconfigured after its restart
        first = waited.stderr.splitlines()[0]
        assert first.startswith("error: ") and "ended unconfigured" in first, waited.stderr
        assert f"provision cluster logs {name}" in waited.stderr
        # The runbook's way out: reconfigure the same infrastructure (nothing new is created).
        fixed = cli("cluster", "reconfigure", name, "--timeout", "60", "-o", "json")
        assert fixed.returncode == 0, fixed.stderr
        assert json.loads(fixed.stdout)["state"] == "configured"
    else:
        assert waited.returncode == 4, waited.stderr
        assert f"provision cluster status {name} --wait" in waited.stderr
        assert journal[-2:] == [Phase.WAITING, Phase.TIMED_OUT]
    assert infras(local_im) - before == {infra}
    assert journal.count(Phase.SUBMITTING) == 1
    assert record(cli.home, name).infra_id == infra
    assert cli_destroy(cli, name)
    assert not infras(local_im) - before


def test_im_crashes_during_scale_wait(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    name = "crash-scale"
    created = pcli.json(*create_args(name, 1))
    assert isinstance(created, dict)
    infra = created["infra_id"]
    before = infras(local_im)
    reads = 1 + len(created["vms"])  # the state, then each VM it names
    proxy.add(*(["pass"] * (reads + 1)), "delay:4")  # reads, the POST, then a held state poll
    proc = pcli.popen("cluster", "scale", name, "--workers", "3", "--timeout", "120", "-o", "json")
    wait_for_phase(pcli.home, name, Phase.WAITING, proc)
    assert phases(pcli.home, name)[-2] == Phase.SCALED
    wait_in_im(local_im, infra)
    assert proc.poll() is None
    local_im.crash_and_restart()
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err
    assert json.loads(out)["workers"] == 3
    assert workers_in_im(local_im, infra) == 3
    assert infras(local_im) == before
    assert record(pcli.home, name).workers == 3
    assert phases(pcli.home, name)[-4:] == [Phase.SCALING, Phase.SCALED, Phase.WAITING, Phase.CONFIGURED]
    assert cli_destroy(pcli, name)


def test_im_crashes_with_the_scale_post_in_flight(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    """IM dies while the scale's POST is held in the proxy: the POST meets a dead or restarting IM. A re-run of the
    scale (if the first one failed) converges to the asked count, with no other infrastructure."""
    name = "crash-post"
    created = pcli.json(*create_args(name, 1))
    assert isinstance(created, dict)
    infra = created["infra_id"]
    before = infras(local_im)
    reads = 1 + len(created["vms"])  # the state, then each VM it names
    proxy.add(*(["pass"] * reads), "delay:0.5")
    proc = pcli.popen("cluster", "scale", name, "--workers", "2", "--timeout", "120")
    wait_for_phase(pcli.home, name, Phase.SCALING, proc)
    local_im.crash_and_restart()
    _, err = proc.communicate(timeout=150)
    assert "Traceback" not in err
    if proc.returncode != 0:
        assert proc.returncode in (1, 3, 4), err
        assert err.startswith("error: ")
        again = pcli("cluster", "scale", name, "--workers", "2", "-o", "json")
        assert again.returncode == 0, again.stderr
    settled = pcli.json("cluster", "status", name, "--wait")
    assert isinstance(settled, dict)
    assert settled["workers"] == 2
    assert workers_in_im(local_im, infra) == 2
    assert infras(local_im) == before
    assert record(pcli.home, name).workers == 2
    assert cli_destroy(pcli, name)


def cli_destroy(cli: CLI, name: str) -> bool:
    deadline = time.monotonic() + 30
    while True:
        done = cli("cluster", "destroy", name, "--yes")
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stderr
            return True
        time.sleep(1)
