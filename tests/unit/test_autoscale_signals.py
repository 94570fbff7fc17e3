"""Signal parsing (pure): kubeconfig, pods/nodes -> pending and idle workers, OSCAR job logs -> waiting."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import yaml

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


@pytest.mark.parametrize("text", ["::", "[]", yaml.safe_dump({"clusters": [{"name": "k", "cluster": {}}]})])
def test_parse_kubeconfig_refuses_garbage(text: str) -> None:
    with pytest.raises(signals.SourceError):
        signals.parse_kubeconfig(text)


def pod(ns: str, phase: str, node: str | None = None, daemonset: bool = False) -> dict[str, object]:
    meta: dict[str, object] = {"namespace": ns, "name": f"p-{ns}-{phase}"}
    if daemonset:
        meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent"}]
    return {"metadata": meta, "status": {"phase": phase}, "spec": {"nodeName": node} if node else {}}


def nodes(*pairs: tuple[str, str]) -> dict[str, object]:
    return {
        "items": [
            {"metadata": {"name": n}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
            for n, ip in pairs
        ]
    }


def test_classify_pods_counts_pending_outside_kube_system_and_finds_busy_nodes() -> None:
    pods = {
        "items": [
            pod("kube-system", "Pending"),
            pod("oscar-svc", "Pending"),
            pod("default", "Pending"),
            pod("oscar-svc", "Running", "wn-1"),
            pod("monitoring", "Running", "wn-2", daemonset=True),
            pod("kube-system", "Running", "wn-3"),
            pod("default", "Succeeded", "wn-3"),
        ]
    }
    pending, busy, addresses = signals.classify_pods(pods, nodes(("wn-1", "10.0.0.5"), ("wn-2", "10.0.0.6")))
    assert pending == 2
    assert busy == {"wn-1"}
    assert addresses["wn-2"] == {"10.0.0.6", "wn-2"}


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


def test_count_waiting_jobs() -> None:
    logs = {
        "svc-a": {"jobs": {"j1": {"status": "Pending"}, "j2": {"status": "Running"}, "j3": {"status": "pending"}}},
        "svc-b": {"j4": {"status": "Succeeded"}, "j5": {"status": "Pending"}},
        "svc-c": [],
    }
    assert signals.count_waiting_jobs(logs) == 3
