"""Failure triage (pure): IM's real messages, collected from the local IM, and the tool's own errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.addons import Check, VerifyReport, fail_if_not_ok
from provisioner.errors import (
    EXIT_UNREACHABLE,
    CredentialsError,
    HostKeyChanged,
    IMAuthError,
    IMBadRequest,
    IMForbidden,
    IMServerError,
    IMTimeout,
    IMUnreachable,
    InputError,
    OperationFailed,
    OperationTimeout,
    PlaybookFailed,
    StateUnreachable,
)
from provisioner.triage import RUNBOOKS, Cause, Triage, analyse_contmsg, classify_error, classify_text, failed_task

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "data" / "im-messages").glob("*.json"))


def test_there_are_real_samples_for_every_class() -> None:
    expected = {json.loads(p.read_text())["expected"] for p in SAMPLES}
    assert expected == {cause.value for cause in Cause}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_real_im_message_is_classified(sample: Path) -> None:
    data = json.loads(sample.read_text())
    found = classify_text(data["text"])
    assert found is not None, data["text"]
    assert found.cause.value == data["expected"], found
    assert "\n" not in found.line and len(found.evidence) <= 220
    assert found.runbook == RUNBOOKS[found.cause]
    assert found.see == f"see provision runbook {found.runbook} (provisioner/data/runbooks/{found.runbook}.md)"


def sample_text(name: str) -> str:
    return str(json.loads((SAMPLES[0].parent / f"{name}.json").read_text())["text"])


def test_ansible_evidence_is_the_task_that_ended_the_run_not_an_ignored_one() -> None:
    log = sample_text("ansible-task-failed")
    assert "...ignoring" in log
    failed = failed_task(log)
    assert failed is not None and failed.what == "FAILED"
    assert failed.task is not None and "Get Facts" in failed.task
    found = classify_text(log)
    assert found is not None and found.evidence.startswith(f"task '{failed.task}' failed on ")


def test_unreachable_fatal_is_ssh_even_after_ignored_failures() -> None:
    log = (
        'TASK [a] ***\nfatal: [fe]: FAILED! => {"msg": "sudo: command not found"}\n...ignoring\n'
        'TASK [b] ***\nfatal: [fe]: UNREACHABLE! => {"msg": "Failed to connect to the host via ssh"}\n'
    )
    found = classify_text(log)
    assert found == Triage(Cause.SSH_UNREACHABLE, "task 'b' failed on fe: Failed to connect to the host via ssh")


def test_quota_wins_over_the_generic_words_around_it() -> None:
    # The Kubernetes Status says Forbidden and 403; the launch says Error: quota decides.
    found = classify_text(sample_text("quota-create"))
    assert found is not None and found.cause is Cause.QUOTA
    assert "exceeded quota" in found.evidence


def test_ssh_wait_timeout_is_ssh_not_timeout() -> None:
    found = classify_text(sample_text("ssh-unreachable-timeout"))
    assert found is not None and found.cause is Cause.SSH_UNREACHABLE


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            "Error launching the VMs of type wn to cloud ID ost of type OpenStack. Attempt 1: Quota exceeded for "
            "instances: Requested 1, but already used 10 of 10 instances",
            Cause.QUOTA,
        ),
        ("An error occurred (InstanceLimitExceeded) when calling the RunInstances operation", Cause.QUOTA),
        (
            "Error launching the VMs of type front to cloud ID ost of type OpenStack. Attempt 1: Image "
            "7d4e1c3a could not be found.",
            Cause.IMAGE_NOT_FOUND,
        ),
        ("An error occurred (InvalidAMIID.NotFound) when calling the RunInstances operation", Cause.IMAGE_NOT_FOUND),
        ("ERROR: Max contextualization time passed.", Cause.TIMEOUT),
        ("Contextualization disabled by the RADL/TOSCA template.", None),
        ("", None),
    ],
)
def test_cloud_message_shapes(text: str, cause: Cause | None) -> None:
    found = classify_text(text)
    assert (found.cause if found else None) == cause


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (IMUnreachable("cannot connect to IM at http://127.0.0.1:1: Connection refused"), Cause.IM_UNREACHABLE),
        (IMUnreachable("IM at https://im.example: TLS certificate verify failed, timed out"), Cause.IM_UNREACHABLE),
        (IMAuthError("Invalid InfrastructureManager credentials", status=401), Cause.AUTH),
        (IMForbidden("Access to this infrastructure not granted.", status=403), Cause.AUTH),
        (IMTimeout("IM at http://127.0.0.1:1 did not answer POST /infrastructures within 1 s"), Cause.TIMEOUT),
        (OperationTimeout("cluster 'a' was not configured within 60 s"), Cause.TIMEOUT),
        (
            OperationTimeout("timed out after 600 s waiting for SSH; not answering: fe (10.0.0.1)"),
            Cause.SSH_UNREACHABLE,
        ),
        (
            PlaybookFailed("install: task 'Install Knative' failed on fe: helm exited 1", task="x", host="fe"),
            Cause.ANSIBLE_TASK_FAILED,
        ),
        (
            PlaybookFailed("install: task 'Gathering Facts' could not reach wn-1: ssh: connect to host", host="wn-1"),
            Cause.SSH_UNREACHABLE,
        ),
        (IMServerError("IM failed: internal error", status=500), None),
        (OperationFailed("cluster 'a' ended failed: IM gave no reason"), None),
    ],
)
def test_errors_of_the_tool(error: Exception, cause: Cause | None) -> None:
    found = classify_error(error)
    assert (found.cause if found else None) == cause


def test_bad_input_and_security_stops_are_not_triaged() -> None:
    assert classify_error(InputError("must be 0 or more", field="--workers")) is None
    assert classify_error(CredentialsError("auth.dat: line 2: unknown type 'X'")) is None
    assert classify_error(HostKeyChanged("host key of fe changed; refused")) is None
    assert classify_error(ValueError("not ours")) is None


def test_im_log_behind_a_failed_cluster_decides() -> None:
    error = OperationFailed("cluster 'a' ended failed (VMs 1): Error launching the VMs of type wn")
    error.evidence = sample_text("quota-contmsg")
    found = classify_error(error)
    assert found is not None and found.cause is Cause.QUOTA


def test_analyse_contmsg_skips_ignored_failures() -> None:
    log = (
        'TASK [probe] ***\nfatal: [fe]: FAILED! => {"msg": "no"}\n...ignoring\n'
        'TASK [real] ***\nfatal: [wn-1]: FAILED! => {"msg": "disk full"}\n'
    )
    assert analyse_contmsg(log) == ("real", "wn-1", "task 'real' failed on wn-1: disk full")
    assert analyse_contmsg("TASK [probe] ***\nfatal: [fe]: FAILED! => {}\n...ignoring\nok\n") == (None, None, None)


def test_im_refusing_a_request_is_bad_input_not_an_outage() -> None:
    # IM's 400 to a template whose import it could not fetch: its traceback is full of connection words.
    refused = IMBadRequest(
        "IM refused POST /infrastructures (400): IM could not fetch import URL https://example.org/t.yaml: "
        "[Errno -3] Temporary failure in name resolution; Failed to establish a new connection: Connection refused",
        status=400,
    )
    assert classify_error(refused) is None


REFUSED = "root@10.0.0.1:22: connection refused"
OSCAR_DOWN = "https://10.0.0.1/health: HTTPSConnectionPool(host='10.0.0.1', port=443): Max retries exceeded"


@pytest.mark.parametrize(
    ("checks", "cause"),
    [
        # A node down: ssh, whatever the OSCAR check after it says (its words are IM-unreachable-like).
        ([("ssh front", "failed", REFUSED), ("oscar health", "failed", OSCAR_DOWN)], Cause.SSH_UNREACHABLE),
        ([("ssh front", "failed", "root@a-very-long-front-end-name.example.org:22: no answer (timed out)")],
         Cause.SSH_UNREACHABLE),
        # Every node answers, OSCAR does not: OSCAR, not IM (IM is not even asked).
        ([("ssh front", "ok", "answers SSH"), ("oscar health", "failed", OSCAR_DOWN),
          ("oscar config", "skipped", "OSCAR does not answer")], Cause.OSCAR_UNREACHABLE),
        ([("oscar health", "failed", "https://10.0.0.1/health answered 502")], Cause.OSCAR_UNREACHABLE),
        # IM not answering when verify asks it for OSCAR's endpoint is IM.
        ([("oscar health", "failed", "cannot read the OSCAR endpoint from IM: cannot connect to IM at "
          "http://127.0.0.1:1: Connection refused")], Cause.IM_UNREACHABLE),
    ],
)  # fmt: skip
def test_verify_failures_are_triaged_by_what_failed(checks: list[tuple[str, str, str]], cause: Cause | None) -> None:
    report = VerifyReport("c1", [Check(*check) for check in checks])
    with pytest.raises(OperationFailed) as raised:
        fail_if_not_ok(report)
    found = classify_error(raised.value)
    assert (found.cause if found else None) == cause, found
    if cause is Cause.OSCAR_UNREACHABLE:
        assert found is not None and found.runbook == "oscar-down"


def test_a_node_that_answers_ssh_but_refuses_the_login_is_not_unreachable() -> None:
    report = VerifyReport("c1", [Check("ssh front", "failed", "root@10.0.0.1:22: authentication refused (no key)")])
    with pytest.raises(OperationFailed) as raised:
        fail_if_not_ok(report)
    assert type(raised.value) is OperationFailed


# --- the shared state database ---------------------------------------------------------------------------------------

PG_REFUSED = (
    "cannot connect to the state database postgresql://ops:***@db.example:5432/provision: connection failed: "
    'connection to server at "10.0.0.5", port 5432 failed: Connection refused'
)


@pytest.mark.parametrize(
    "message",
    [
        PG_REFUSED,
        "cannot connect to the state database postgresql://ops:***@db.example/provision: failed to resolve host "
        "'db.example': [Errno -2] Name or service not known",
        "cannot connect to the state database postgresql://ops:***@db.example/provision: connection failed: "
        'connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication failed for user "ops"',
        "cannot connect to the state database postgresql://ops@db.example/provision: connection failed: connection "
        'to server at "10.0.0.5", port 5432 failed: timeout expired',
        "the connection to the state database postgresql://ops@db.example/provision broke mid-write: server closed "
        "the connection unexpectedly",
        "cluster 'c1' is no longer locked: the connection holding its lock in the state database "
        "postgresql://ops@db.example/provision broke (terminating connection due to administrator command); stopped "
        "rather than go on without the lock",
    ],
)
def test_an_unreachable_state_database_is_its_own_cause_not_im_nor_auth(message: str) -> None:
    # Told by the exception (what pg.py raises), and by the words alone (a continuum step's recorded error).
    by_error = classify_error(StateUnreachable(message))
    by_text = classify_text(message)
    assert by_error is not None and by_text is not None
    assert by_error.cause is by_text.cause is Cause.STATE_UNREACHABLE
    assert by_error.runbook == "state-down"
    assert by_error.see == "see provision runbook state-down (provisioner/data/runbooks/state-down.md)"
    assert StateUnreachable(message).exit_code == EXIT_UNREACHABLE


def test_im_refusing_connections_is_still_im_unreachable() -> None:
    found = classify_text("cannot connect to IM at http://127.0.0.1:8899: Connection refused")
    assert found is not None and found.cause is Cause.IM_UNREACHABLE
    # An error of another kind that merely quotes the state database's reason is not called an IM outage either.
    found = classify_error(OperationFailed(PG_REFUSED))
    assert found is not None and found.cause is Cause.STATE_UNREACHABLE
