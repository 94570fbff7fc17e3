"""Picking the failing task and host out of an IM contextualization log (pure)."""

from __future__ import annotations

from provisioner.model import check_name
from provisioner.triage import analyse_contmsg

ANSIBLE_LOG = """\
Contextualization agent started.
TASK [Gathering Facts] *********************************************************
ok: [front]
TASK [grycap.kubernetes : Install kubeadm] *************************************
changed: [front]
TASK [grycap.kubernetes : Join the cluster] ************************************
fatal: [wn-2]: FAILED! => {"changed": true, "msg": "kubeadm join timed out after 300 s", "rc": 1}
PLAY RECAP *********************************************************************
front : ok=2 changed=1 failed=0
"""


def test_failing_task_and_host() -> None:
    task, host, reason = analyse_contmsg(ANSIBLE_LOG)
    assert task == "grycap.kubernetes : Join the cluster"
    assert host == "wn-2"
    assert reason == "task 'grycap.kubernetes : Join the cluster' failed on wn-2: kubeadm join timed out after 300 s"


def test_unreachable_host_without_msg() -> None:
    log = "TASK [ping] ***\nfatal: [front]: UNREACHABLE! => {}\n"
    assert analyse_contmsg(log) == ("ping", "front", "task 'ping' failed on front: UNREACHABLE")


def test_im_error_line_without_ansible() -> None:
    log = "Some info\nError waiting the VM to be running: No correct Master VM found\n\n"
    task, host, reason = analyse_contmsg(log)
    assert (task, host) == (None, None)
    assert reason == "Error waiting the VM to be running: No correct Master VM found"


def test_clean_log_has_no_reason() -> None:
    assert analyse_contmsg("Contextualization disabled by the RADL/TOSCA template.\n") == (None, None, None)


def test_cluster_names() -> None:
    assert check_name("oscar-1") == "oscar-1"
    for bad in ("", "1abc", "Upper", "under_score", "x" * 64):
        try:
            check_name(bad)
        except Exception as exc:  # InputError
            assert getattr(exc, "exit_code", None) == 2
        else:
            raise AssertionError(f"{bad!r} accepted")
