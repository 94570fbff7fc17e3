"""Signal parsing (pure): kubeconfig, pods/nodes -> pending and idle workers, OSCAR job logs -> waiting; fetching the
kubeconfig with a fake command runner (permission denied, sudo -n)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import yaml

from provisioner.ansible.ssh import CommandResult
from provisioner.autoscale import signals

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(**user: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "clusters": [
                {"name": "other", "cluster": {"server": "https://wrong:6443"}},
                {"name": "k", "cluster": {"server": "https://10.0.0.1:6443/", "certificate-authority-data": b64("CA")}},
            ],
            "contexts": [{"name": "admin@k", "context": {"cluster": "k", "user": "admin"}}],
            "current-context": "admin@k",
            "users": [{"name": "admin", "user": user}],
        }
    )


def test_parse_kubeconfig_takes_the_current_context() -> None:
    access = signals.parse_kubeconfig(
        kubeconfig(**{"client-certificate-data": b64("CERT"), "client-key-data": b64("KEY")})
    )
    assert access.server == "https://10.0.0.1:6443"
    assert (access.ca_pem, access.cert_pem, access.key_pem, access.token) == (b"CA", b"CERT", b"KEY", None)
    assert "KEY" not in repr(access)
    assert signals.parse_kubeconfig(kubeconfig(token="abc.def")).token == "abc.def"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: [", "not valid YAML"),
        ("::", "names no API server"),
        ("[]", "not a mapping"),
        (yaml.safe_dump({"clusters": [{"name": "k", "cluster": {}}]}), "names no API server"),
        # not base64 (a hand-edited file, a truncated copy)
        (kubeconfig(**{"client-key-data": "not base64!"}), "client-key-data is not base64"),
        (kubeconfig(**{"client-key-data": "QUJ"}), "client-key-data is not base64"),  # bad padding
        # odd shapes
        (yaml.safe_dump({"contexts": "x", "clusters": [{"name": "k", "cluster": "oops"}]}), "malformed"),
        (yaml.safe_dump({"current-context": "c", "contexts": [{"name": "c", "context": ["x"]}]}), "malformed"),
    ],
)
def test_parse_kubeconfig_refuses_garbage(text: str, fragment: str) -> None:
    with pytest.raises(signals.SourceError) as err:
        signals.parse_kubeconfig(text)
    assert fragment in str(err.value)
    assert str(err.value).startswith("kubernetes: ")


UNSCHEDULABLE = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]


def pod(
    ns: str,
    phase: str,
    node: str | None = None,
    daemonset: bool = False,
    conditions: list[dict[str, str]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, object]:
    meta: dict[str, object] = {"namespace": ns, "name": f"p-{ns}-{phase}"}
    if daemonset:
        meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent"}]
    if labels:
        meta["labels"] = labels
    status: dict[str, object] = {"phase": phase}
    if conditions is not None:
        status["conditions"] = conditions
    return {"metadata": meta, "status": status, "spec": {"nodeName": node} if node else {}}


def nodes(*pairs: tuple[str, str]) -> dict[str, object]:
    return {
        "items": [
            {"metadata": {"name": n}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
            for n, ip in pairs
        ]
    }


OSCAR_JOB = {"oscar_service": "cowsay", "job-name": "cowsay-abc12"}


def test_classify_pods_counts_unschedulable_pods_outside_kube_system_and_finds_busy_nodes() -> None:
    pods = {
        "items": [
            pod("kube-system", "Pending", conditions=UNSCHEDULABLE),  # kube-system: not our demand
            pod("oscar-svc", "Pending", conditions=UNSCHEDULABLE, labels=OSCAR_JOB),  # an OSCAR job's pod
            pod("oscar-svc", "Pending", conditions=UNSCHEDULABLE, labels={"oscar_service": "web"}),  # not a Job's
            pod("default", "Pending", conditions=UNSCHEDULABLE),
            pod("default", "Pending"),  # just created: the scheduler has not looked at it yet
            pod("default", "Pending", conditions=[{"type": "PodScheduled", "status": "True"}]),
            pod("default", "Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Other"}]),
            pod("default", "Pending", "wn-3", conditions=UNSCHEDULABLE),  # bound (pulling its image): busy, no demand
            pod("oscar-svc", "Running", "wn-1"),
            pod("monitoring", "Running", "wn-2", daemonset=True),
            pod("monitoring", "Pending", "wn-2", daemonset=True),
            pod("kube-system", "Running", "wn-4"),
            pod("default", "Succeeded", "wn-4"),
            pod("default", "Failed", "wn-4"),
        ]
    }
    census = signals.classify_pods(pods, nodes(("wn-1", "10.0.0.5"), ("wn-2", "10.0.0.6")))
    assert (census.pending, census.oscar_job_pending) == (3, 1)
    assert census.busy == {"wn-1", "wn-3"}
    assert census.addresses["wn-2"] == {"10.0.0.6", "wn-2"}


def test_a_node_whose_pod_is_still_starting_is_not_idle() -> None:
    """A pod bound to a node but still Pending (pulling its image) makes that node busy: its worker is kept."""
    census = signals.classify_pods(
        {"items": [pod("default", "Pending", "wn-1")]}, nodes(("wn-1", "10.0.0.5"), ("wn-2", "10.0.0.6"))
    )
    workers = [VM("1", ["10.0.0.5"]), VM("2", ["10.0.0.6"])]
    assert signals.idle_workers(workers, census.busy, census.addresses, {}, NOW) == {"2": NOW.isoformat()}


@pytest.mark.parametrize(
    ("pods", "nodes_", "fragment"),
    [
        ([], {"items": []}, "pods answer is not a JSON object"),
        ("<html>", {"items": []}, "pods answer is not a JSON object"),
        ({"items": "x"}, {"items": []}, "pods answer's items are not a list of objects"),
        ({"items": [1, 2]}, {"items": []}, "pods answer's items are not a list of objects"),
        ({"items": [{"metadata": "x"}]}, {"items": []}, "metadata is not a mapping"),
        ({"items": [{"status": ["Pending"]}]}, {"items": []}, "status is not a mapping"),
        ({"items": []}, {"items": [{"status": {"addresses": "10.0.0.1"}}]}, "addresses is not a list"),
        ({"items": []}, None, "nodes answer is not a JSON object"),
    ],
)
def test_classify_pods_refuses_odd_answers_with_a_source_error(pods: object, nodes_: object, fragment: str) -> None:
    with pytest.raises(signals.SourceError) as err:
        signals.classify_pods(pods, nodes_)
    assert fragment in str(err.value)


def test_classify_pods_takes_missing_fields_as_empty() -> None:
    census = signals.classify_pods({"items": [{}, {"metadata": None, "status": None}]}, {"kind": "NodeList"})
    assert (census.pending, census.busy, census.addresses) == (0, frozenset(), {})


@dataclass
class VM:
    id: str
    private_ips: list[str] = field(default_factory=list)
    public_ips: list[str] = field(default_factory=list)


def test_idle_workers_keep_their_first_idle_time_and_skip_busy_or_unknown() -> None:
    workers = [VM("1", ["10.0.0.5"]), VM("2", ["10.0.0.6"]), VM("3", ["10.0.0.7"]), VM("4", ["10.0.0.9"])]
    node_addresses = {"a": {"10.0.0.5"}, "b": {"10.0.0.6"}, "c": {"10.0.0.7"}}
    earlier = "2026-11-25T09:30:00+00:00"
    idle = signals.idle_workers(workers, {"a"}, node_addresses, {"2": earlier, "1": earlier}, NOW)
    # 1 is busy now (its earlier idle time is dropped), 2 stays idle since earlier, 3 is newly idle,
    # 4 is not a node yet (booting): not idle.
    assert idle == {"2": earlier, "3": NOW.isoformat()}


def test_count_jobs() -> None:
    logs = {
        "svc-a": {"jobs": {"j1": {"status": "Pending"}, "j2": {"status": "Running"}, "j3": {"status": "pending"}}},
        "svc-b": {"j4": {"status": "Succeeded"}, "j5": {"status": "Pending"}, "j6": {"status": "Suspended"}},
        "svc-c": [],
        "svc-d": {"j7": {"status": "Failed"}, "j8": {"status": "Unknown"}, "j9": "?"},
    }
    assert signals.count_jobs(logs) == (4, 1)  # waiting: j1, j3, j5, j6; with no pod yet: j6


@pytest.mark.parametrize(
    ("answer", "jobs", "token"),
    [
        ({"jobs": {"a": {"status": "Pending"}}, "next_page": "tok", "remaining_jobs": 3}, {"a"}, "tok"),
        ({"jobs": {"a": {"status": "Pending"}}}, {"a"}, None),  # the last page has no next_page
        ({"jobs": {}, "next_page": ""}, set(), None),
        ({"jobs": None}, set(), None),
        ({"a": {"status": "Pending"}, "b": {"status": "Running"}}, {"a", "b"}, None),  # older OSCAR: the map itself
    ],
)
def test_jobs_page(answer: object, jobs: set[str], token: str | None) -> None:
    page, next_token = signals.jobs_page(answer, "svc")
    assert (set(page), next_token) == (jobs, token)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [([], "not a JSON object"), ({"jobs": [1]}, "jobs is not a JSON object"), ({"jobs": {}, "next_page": 3}, "text")],
)
def test_jobs_page_refuses_odd_answers(answer: object, fragment: str) -> None:
    with pytest.raises(signals.SourceError, match=fragment):
        signals.jobs_page(answer, "svc")


# --- fetching the kubeconfig on the front-end (a fake runner of our own interface) ---------------------------------


class FrontShell:
    """The front-end's shell as the fetch sees it: files readable by the SSH user, files only root reads, sudo."""

    def __init__(self, *, readable: dict[str, str], root_only: dict[str, str], sudo: str | None) -> None:
        self.readable = readable
        self.root_only = root_only
        self.sudo = sudo  # None: sudo -n works; else its error line
        self.commands: list[str] = []

    def __call__(self, command: str) -> CommandResult:
        self.commands.append(command)
        elevated = command.startswith("sudo -n ")
        path = command.split(" -- ", 1)[1].strip("'")
        if elevated and self.sudo is not None:
            return CommandResult("front", 1, "", f"{self.sudo}\n")
        if path in self.readable or (elevated and path in self.root_only):
            return CommandResult("front", 0, {**self.readable, **self.root_only}[path], "")
        if path in self.root_only:
            return CommandResult("front", 1, "", f"cat: {path}: Permission denied\n")
        return CommandResult("front", 1, "", f"cat: {path}: No such file or directory\n")


ADMIN, K3S = signals.KUBECONFIG_PATHS


def test_fetch_reads_what_the_user_may_read_without_sudo() -> None:
    shell = FrontShell(readable={K3S: "k3s-config"}, root_only={}, sudo="sudo: a password is required")
    assert signals.fetch_kubeconfig(shell, signals.KUBECONFIG_PATHS, "cloudadm@fe") == "k3s-config"
    assert shell.commands == [f"cat -- {ADMIN}", f"cat -- {K3S}"]


def test_fetch_uses_sudo_when_the_plain_read_is_refused() -> None:
    shell = FrontShell(readable={}, root_only={ADMIN: "admin-config"}, sudo=None)
    assert signals.fetch_kubeconfig(shell, signals.KUBECONFIG_PATHS, "cloudadm@fe") == "admin-config"
    assert shell.commands == [f"cat -- {ADMIN}", f"sudo -n cat -- {ADMIN}"]


def test_fetch_reports_permission_denied_and_sudo_refusal_not_no_kubeconfig() -> None:
    shell = FrontShell(readable={}, root_only={ADMIN: "admin-config"}, sudo="sudo: a password is required")
    with pytest.raises(signals.SourceError) as err:
        signals.fetch_kubeconfig(shell, signals.KUBECONFIG_PATHS, "cloudadm@10.0.0.1")
    message = str(err.value)
    assert message.startswith("kubernetes: cannot read the kubeconfig on the front-end cloudadm@10.0.0.1")
    assert f"{ADMIN}: cat: {ADMIN}: Permission denied; with sudo -n: sudo: a password is required" in message
    assert "no kubeconfig" not in message


def test_fetch_without_any_kubeconfig_says_so() -> None:
    shell = FrontShell(readable={}, root_only={}, sudo=None)
    with pytest.raises(signals.SourceError, match=r"no kubeconfig on the front-end fe .*is Kubernetes installed"):
        signals.fetch_kubeconfig(shell, signals.KUBECONFIG_PATHS, "fe")
    assert not any(c.startswith("sudo") for c in shell.commands)  # a missing file is not worth a sudo


def test_fetch_quotes_paths() -> None:
    shell = FrontShell(readable={}, root_only={}, sudo=None)
    with pytest.raises(signals.SourceError):
        signals.fetch_kubeconfig(shell, ["/tmp/x; rm -rf /"], "fe")
    assert shell.commands == ["cat -- '/tmp/x; rm -rf /'"]


def test_a_long_source_error_is_cut_on_a_word_boundary() -> None:
    # The line a hold reason quotes (``signal source failed: ...``) from a source's long error.
    text = "\n  " + "the API server answered something long " * 10 + "\nsecond"
    line = signals._first_line(text)
    assert len(line) <= 200 and line.endswith("…") and not line.endswith(" …")
    assert line[:-1].split() == text.split()[: len(line[:-1].split())]  # whole words, none cut
