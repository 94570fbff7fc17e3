"""The time limit of an ansible-runner run, for real: a tiny playbook that sleeps, on this machine (local
connection). The run is stopped at the limit, the result names the task it was in, and raising it gives exit 4."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import yaml

from provisioner.ansible import runner
from provisioner.errors import EXIT_TIMEOUT, OperationTimeout
from tests.playbooks.conftest import ansible_env, local_inventory

SLEEP_TASK = "Sleep past the time limit"
# sleep's argument: tells this run's process apart from any other (another run of this test may be going on).
MARK = f"299.{os.getpid()}{random.randrange(10**6):06d}"


def sleeping_playbook(path: Path) -> Path:
    play = {
        "name": "Sleep",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}},
            {"name": SLEEP_TASK, "ansible.builtin.command": f"sleep {MARK}", "changed_when": False},
        ],
    }
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return path


def sleeping_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", MARK.encode()]:
            found.append(cmdline.parent.name)
    return found


def test_a_run_past_its_time_limit_is_stopped_naming_the_task(ansible_base: Path, tmp_path: Path) -> None:
    book = sleeping_playbook(tmp_path / "sleep.yml")
    inventory = local_inventory(ansible_base / "hosts.yml")
    env = {k: v for k, v in ansible_env(ansible_base).items() if k in ("HOME", "ANSIBLE_HOME", "ANSIBLE_REMOTE_TEMP")}
    result = runner.run_playbook(
        str(book), inventory, home=tmp_path / "home", cluster="sleepy", public_vars={}, secret_vars={},
        extra_env=env, timeout=2,
    )  # fmt: skip
    assert result.status == "timeout" and not result.ok
    assert result.running_task == SLEEP_TASK
    # ansible-runner killed ansible-playbook's process group: the task's sleep is not left running.
    deadline = time.monotonic() + 10  # the group is killed; the kernel may take a moment to take the process away
    while sleeping_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeping_processes() == []
    with pytest.raises(OperationTimeout) as stopped:
        result.raise_for_failure("install of oscar on sleepy")
    assert stopped.value.exit_code == EXIT_TIMEOUT
    assert str(stopped.value) == (
        f"install of oscar on sleepy: ansible-playbook was stopped after 2 s, during task '{SLEEP_TASK}'"
    )
    assert "--playbook-timeout" in (stopped.value.hint or "")
    assert str(result.artifacts) in (stopped.value.hint or "")


def test_a_run_within_its_time_limit_succeeds(ansible_base: Path, tmp_path: Path) -> None:
    book = tmp_path / "quick.yml"
    play = {"hosts": "all", "gather_facts": False, "tasks": [{"name": "Quick", "ansible.builtin.debug": {"msg": 1}}]}
    book.write_text(yaml.safe_dump([play]))
    inventory = local_inventory(ansible_base / "hosts.yml")
    env = {k: v for k, v in ansible_env(ansible_base).items() if k in ("HOME", "ANSIBLE_HOME", "ANSIBLE_REMOTE_TEMP")}
    result = runner.run_playbook(
        str(book), inventory, home=tmp_path / "home", cluster="quick", public_vars={}, secret_vars={},
        extra_env=env, timeout=120,
    )  # fmt: skip
    assert result.ok and result.running_task == "Quick"
    result.raise_for_failure("quick run")
