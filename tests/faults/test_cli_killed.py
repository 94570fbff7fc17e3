"""The CLI SIGKILLed at every journal phase of create, scale and destroy; the same command again converges.

The kill comes the instant a phase is durable in the journal (``tests/faults/killat.py``: deterministic, even for
phases followed within microseconds by the next one), or from outside while IM is slowed by the fault proxy and
the test watches the journal. After each kill the test re-runs the command and checks IM itself (exactly one
infrastructure, the right worker count) and the registry (one record, IM's infrastructure id and worker count).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from provisioner.state import Phase
from tests.clihelper import CLI
from tests.conftest import REPO, RunningIM
from tests.faultproxy import FaultProxy
from tests.faults.conftest import CREATE_PHASES, in_order, infras, phases, record, wait_for_phase, workers_in_im

pytestmark = pytest.mark.im


def killed_at(cli: CLI, phase: Phase, *args: str, nth: int = 1) -> None:
    """Run the CLI until the journal records ``phase`` (its ``nth`` time in this run), where it is SIGKILLed."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.faults.killat", phase.value, str(nth), *args],
        capture_output=True,
        text=True,
        env=cli.env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)


def create_args(name: str, workers: int = 1) -> tuple[str, ...]:
    return ("cluster", "create", name, "-t", "kubernetes", "-s", "local-sim", "--set", f"wn_num={workers}")


def check_registry(cli: CLI, local_im: RunningIM, name: str, infra: str, workers: int) -> None:
    listed = cli.json("cluster", "list")
    assert isinstance(listed, list)
    assert [(c["name"], c["infra_id"], c["workers"]) for c in listed] == [(name, infra, workers)]
    assert workers_in_im(local_im, infra) == workers
    assert (cli.home / "secrets" / f"{name}.yaml").exists()  # the generated admin token is kept for the next run


def destroy(cli: CLI, name: str) -> None:
    done = cli("cluster", "destroy", name, "--yes")
    assert done.returncode == 0, done.stderr


# --- create -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [Phase.RENDERED, Phase.SUBMITTING, Phase.INFRA_ID_KNOWN, Phase.WAITING])
def test_create_killed_at_phase_then_create_again(phase: Phase, cli: CLI, local_im: RunningIM) -> None:
    name = f"kc-{phase.value.replace('_', '-')}"
    before = infras(local_im)
    killed_at(cli, phase, *create_args(name))
    assert phases(cli.home, name)[-1] == phase
    posted = phase in (Phase.INFRA_ID_KNOWN, Phase.WAITING)
    assert len(infras(local_im) - before) == (1 if posted else 0)  # killed before the POST: nothing in IM
    rec = record(cli.home, name)
    # The registry gets the id just after the infra_id_known entry: killed between the two, only the journal has it
    # (and IM, by deployment id).
    assert rec is not None and (rec.infra_id is not None) == (phase == Phase.WAITING)

    again = cli(*create_args(name), "-o", "json")
    assert again.returncode == 0, again.stderr
    view = json.loads(again.stdout)
    assert view["state"] == "configured"
    assert infras(local_im) - before == {view["infra_id"]}, "exactly one infrastructure"
    check_registry(cli, local_im, name, view["infra_id"], 1)
    journal = phases(cli.home, name)
    assert in_order(CREATE_PHASES, journal), journal
    assert journal.count(Phase.RENDERED) == 1  # the re-run resumed the same deployment, not a new one
    destroy(cli, name)
    assert not infras(local_im) - before


@pytest.mark.parametrize("phase", [Phase.RENDERED, Phase.INFRA_ID_KNOWN, Phase.WAITING])
def test_create_killed_at_phase_then_status_converges(phase: Phase, cli: CLI, local_im: RunningIM) -> None:
    name = f"ks-{phase.value.replace('_', '-')}"
    before = infras(local_im)
    killed_at(cli, phase, *create_args(name))
    status = cli("cluster", "status", name, "--wait", "-o", "json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    if phase == Phase.RENDERED:
        # Nothing was sent: status says so and creates nothing; create then does.
        assert view["infra_id"] is None and "run the same create command again" in view["note"]
        assert infras(local_im) == before
        view = cli.json(*create_args(name))
    assert isinstance(view, dict)
    assert view["state"] == "configured"
    assert infras(local_im) - before == {view["infra_id"]}
    check_registry(cli, local_im, name, view["infra_id"], 1)
    assert in_order(CREATE_PHASES, phases(cli.home, name))
    destroy(cli, name)


def test_create_killed_from_outside_while_waiting(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    """A real external SIGKILL during --wait (IM's answers slowed by the proxy); `status --wait` picks up."""
    name = "kw-outside"
    before = infras(local_im)
    proxy.add("pass", "delay:2", "delay:2")  # the POST, then slow state polls
    proc = pcli.popen(*create_args(name, workers=2))
    wait_for_phase(pcli.home, name, Phase.WAITING, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert phases(pcli.home, name)[-1] == Phase.WAITING
    status = pcli("cluster", "status", name, "--wait", "-o", "json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["state"] == "configured" and view["workers"] == 2
    assert infras(local_im) - before == {view["infra_id"]}
    check_registry(pcli, local_im, name, view["infra_id"], 2)
    destroy(pcli, name)


# --- scale ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "nth"), [(Phase.SCALING, 1), (Phase.SCALED, 1)])
def test_scale_killed_at_phase_then_scale_again(phase: Phase, nth: int, cli: CLI, local_im: RunningIM) -> None:
    name = f"kk-{phase.value}"
    created = cli.json(*create_args(name))
    assert isinstance(created, dict)
    infra = created["infra_id"]
    before = infras(local_im)
    killed_at(cli, phase, "cluster", "scale", name, "--workers", "3", nth=nth)
    assert phases(cli.home, name)[-1] == phase
    if phase == Phase.SCALING:
        assert workers_in_im(local_im, infra) == 1  # killed before the POST
    again = cli("cluster", "scale", name, "--workers", "3", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["workers"] == 3
    settled = cli.json("cluster", "status", name, "--wait")
    assert isinstance(settled, dict)
    assert settled["state"] == "configured" and settled["workers"] == 3
    assert infras(local_im) == before
    check_registry(cli, local_im, name, infra, 3)
    assert record(cli.home, name).inputs["wn_num"] == 3
    journal = phases(cli.home, name)
    assert in_order([*CREATE_PHASES, Phase.SCALING, Phase.SCALED], journal), journal
    destroy(cli, name)


# --- destroy ----------------------------------------------------------------------------------------------------------


def test_destroy_killed_at_destroying_then_destroy_again(cli: CLI, local_im: RunningIM) -> None:
    name = "kd-destroying"
    created = cli.json(*create_args(name))
    assert isinstance(created, dict)
    killed_at(cli, Phase.DESTROYING, "cluster", "destroy", name, "--yes")
    assert phases(cli.home, name)[-1] == Phase.DESTROYING
    assert created["infra_id"] in infras(local_im)  # killed before the DELETE
    assert record(cli.home, name) is not None  # still known: the registry does not forget what it has not destroyed
    destroy(cli, name)
    assert created["infra_id"] not in infras(local_im)
    assert cli.json("cluster", "list") == []
    assert phases(cli.home, name)[-1] == Phase.DESTROYED


def test_destroy_killed_from_outside_with_the_delete_in_flight(
    pcli: CLI, proxy: FaultProxy, local_im: RunningIM
) -> None:
    name = "kd-outside"
    created = pcli.json(*create_args(name))
    assert isinstance(created, dict)
    proxy.seen.clear()
    proxy.add("delay:1.5")  # the DELETE reaches IM after the CLI is gone
    proc = pcli.popen("cluster", "destroy", name, "--yes")
    wait_for_phase(pcli.home, name, Phase.DESTROYING, proc)
    deadline = time.monotonic() + 30
    while not proxy.seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.seen and proxy.seen[0].method == "DELETE"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert record(pcli.home, name) is not None
    again = pcli("cluster", "destroy", name, "--yes")  # while the killed one's DELETE is still on its way
    assert again.returncode == 0, again.stderr
    assert created["infra_id"] not in infras(local_im)
    proxy.wait_answered("DELETE")  # the late DELETE has now reached IM (and IM answered): nothing comes back
    assert created["infra_id"] not in infras(local_im)
    assert pcli.json("cluster", "list") == []
    journal = phases(pcli.home, name)
    assert journal[-3:] == [Phase.DESTROYING, Phase.DESTROYING, Phase.DESTROYED]
