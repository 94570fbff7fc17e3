"""Fixtures and helpers of the fault suite: the real CLI, against the real IM, directly or through a FaultProxy."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from provisioner.state import Phase, Store
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy

# Short timeouts so that a refused or stalled request fails fast instead of after minutes.
FAST = {"PROVISION_CONNECT_TIMEOUT": "2", "PROVISION_READ_TIMEOUT": "20", "PROVISION_LOCK_TIMEOUT": "60"}

CREATE_PHASES = [Phase.RENDERED, Phase.SUBMITTING, Phase.INFRA_ID_KNOWN, Phase.WAITING, Phase.CONFIGURED]


@pytest.fixture
def cli(local_im: RunningIM, tmp_path: Path) -> CLI:
    made = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    made.env.update(FAST)
    return made


@pytest.fixture
def pcli(local_im: RunningIM, proxy: FaultProxy, tmp_path: Path) -> CLI:
    """The CLI pointed at the fault proxy (which forwards to the real IM)."""
    made = CLI(tmp_path / "home", proxy.url, local_im.auth_file)
    made.env.update(FAST)
    return made


def infras(local_im: RunningIM) -> set[str]:
    with local_im.client() as client:
        return set(client.list_infrastructures())


def phases(home: Path, name: str) -> list[Phase]:
    with Store.open(home) as store:
        return [entry.phase for entry in store.journal(name)]


def in_order(expected: list[Phase], actual: list[Phase]) -> bool:
    """``expected`` appears in ``actual`` as a subsequence (in this order, other phases may come between)."""
    rest = iter(actual)
    return all(any(phase == seen for seen in rest) for phase in expected)


def record(home: Path, name: str) -> Any:
    """The registry row of ``name`` (a ClusterRecord), or None."""
    with Store.open(home) as store:
        return store.get_cluster(name)


def wait_for_phase(home: Path, name: str, phase: Phase, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Poll the journal until ``phase`` is its last entry (fails if the process ends or the time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (home / "state.db").exists():
            with Store.open(home) as store:
                last = store.last_phase(name)
            if last is not None and last.phase == phase:
                return
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the CLI ended ({proc.returncode}) before phase {phase}: {err.strip()}")
        time.sleep(0.005)
    pytest.fail(f"phase {phase} of {name} not reached within {timeout} s")


def workers_in_im(local_im: RunningIM, infra_id: str) -> int:
    """IM's own count of live workers (VMs named ``wn`` not being deleted)."""
    with local_im.client() as client:
        vms = [client.vm_info(infra_id, vm) for vm in client.vm_ids(infra_id)]
    return sum(1 for vm in vms if str(vm.name) == "wn" and vm.state != "deleting")


def forwarded_posts(proxy: FaultProxy, path_prefix: str = "/infrastructures") -> int:
    """How many POSTs to exactly ``path_prefix`` (query aside) the proxy let through to IM."""
    return sum(1 for s in proxy.seen if s.method == "POST" and s.forwarded and s.path.split("?")[0] == path_prefix)
