"""Signal sources for the autoscaler, behind one small interface: what a cluster needs, read once per tick.

* :class:`KubernetesSource`: pending pods outside ``kube-system``, and which workers run no pods of their own
  (idle). The kubeconfig is fetched from the front-end over SSH (host key pinned) and cached 0600 under
  ``<home>/kube/<cluster>.conf``; the API server is then asked directly (``/api/v1/pods``, ``/api/v1/nodes``).
* :class:`OscarSource`: OSCAR jobs waiting (status ``Pending``) across the cluster's services
  (``/system/services``, ``/system/logs/<service>``), with OSCAR's basic auth.

A source that cannot be read raises :class:`SourceError`; the job turns that into a ``hold`` and logs it. Parsing is
pure (``classify_pods``, ``count_waiting_jobs``, ``parse_kubeconfig``) and tested without a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from provisioner.credentials import register_secret, write_secret_file
from provisioner.errors import ProvisionError

EXCLUDED_NAMESPACES = frozenset({"kube-system"})
KUBECONFIG_PATHS = ("/etc/kubernetes/admin.conf", "/etc/rancher/k3s/k3s.yaml")


class SourceError(Exception):
    """A signal source could not be read; the message names the source and the cause (one line)."""


@dataclass(frozen=True)
class SourceContext:
    cluster: str
    workers: Sequence[Any]  # VMInfo of the live workers
    now: datetime
    idle_since: Mapping[str, str] = field(default_factory=dict)  # vm id -> ISO time, from the last decision


@dataclass(frozen=True)
class Reading:
    pending_pods: int | None = None
    waiting_jobs: int | None = None
    idle_since: dict[str, str] | None = None  # vm id -> ISO time first seen idle (busy workers absent)


class SignalSource(Protocol):
    name: str

    def read(self, ctx: SourceContext) -> Reading: ...


# --- pure parsing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeAccess:
    server: str
    ca_pem: bytes | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def parse_kubeconfig(text: str) -> KubeAccess:
    """The current context's server and credentials (inline data only, as kubeadm and K3s write them)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourceError("kubeconfig is not valid YAML") from exc
    if not isinstance(doc, dict):
        raise SourceError("kubeconfig is not a mapping")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or [] if isinstance(c, dict)}
    current = contexts.get(doc.get("current-context")) or next(iter(contexts.values()), {})
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or [] if isinstance(c, dict)}
    users = {u.get("name"): u.get("user") or {} for u in doc.get("users") or [] if isinstance(u, dict)}
    cluster = clusters.get(current.get("cluster")) or next(iter(clusters.values()), {})
    user = users.get(current.get("user")) or next(iter(users.values()), {})
    server = cluster.get("server")
    if not server:
        raise SourceError("kubeconfig names no API server")

    def data(obj: Mapping[str, Any], key: str) -> bytes | None:
        value = obj.get(key)
        return base64.b64decode(value) if value else None

    token = user.get("token")
    if token:
        register_secret(str(token))
    return KubeAccess(
        server=str(server).rstrip("/"),
        ca_pem=data(cluster, "certificate-authority-data"),
        cert_pem=data(user, "client-certificate-data"),
        key_pem=data(user, "client-key-data"),
        token=str(token) if token else None,
    )


def _owned_by_daemonset(pod: Mapping[str, Any]) -> bool:
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == "DaemonSet" for o in owners if isinstance(o, dict))


def classify_pods(pods: Mapping[str, Any], nodes: Mapping[str, Any]) -> tuple[int, set[str], dict[str, set[str]]]:
    """From ``/api/v1/pods`` and ``/api/v1/nodes``: (pending pods outside kube-system, busy node names,
    node name -> its addresses). A node is busy when it runs a pod that is not a DaemonSet's and not in
    kube-system (so monitoring agents do not keep a worker alive)."""
    pending = 0
    busy: set[str] = set()
    for pod in pods.get("items") or []:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") in EXCLUDED_NAMESPACES:
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            pending += 1
        elif phase == "Running" and not _owned_by_daemonset(pod):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                busy.add(str(node_name))
    addresses: dict[str, set[str]] = {}
    for node in nodes.get("items") or []:
        name = str((node.get("metadata") or {}).get("name"))
        addresses[name] = {str(a.get("address")) for a in (node.get("status") or {}).get("addresses") or []}
        addresses[name].add(name)
    return pending, busy, addresses


def idle_workers(
    workers: Sequence[Any],
    busy_nodes: set[str],
    node_addresses: Mapping[str, set[str]],
    previous: Mapping[str, str],
    now: datetime,
) -> dict[str, str]:
    """vm id -> ISO time it was first seen idle, for workers that are nodes and run nothing of their own.
    A worker that is not (yet) a node, or is busy, is left out (= busy: never removed for idleness)."""
    result: dict[str, str] = {}
    for vm in workers:
        ips = {ip for ip in [*getattr(vm, "private_ips", []), *getattr(vm, "public_ips", [])] if ip}
        node = next((n for n, addrs in node_addresses.items() if addrs & ips), None)
        if node is None or node in busy_nodes:
            continue
        result[str(vm.id)] = previous.get(str(vm.id), now.isoformat())
    return result


def count_waiting_jobs(logs_by_service: Mapping[str, Any]) -> int:
    """OSCAR ``/system/logs/<service>`` answers, by service: count the jobs whose status is Pending."""
    waiting = 0
    for answer in logs_by_service.values():
        jobs = answer.get("jobs", answer) if isinstance(answer, dict) else {}
        if not isinstance(jobs, dict):
            continue
        for job in jobs.values():
            if isinstance(job, dict) and str(job.get("status", "")).lower() == "pending":
                waiting += 1
    return waiting


# --- the sources ----------------------------------------------------------------------------------------------------


class KubernetesSource:
    """Pending pods and idle workers from the cluster's Kubernetes API."""

    name = "kubernetes"

    def __init__(self, stack: Any, *, timeout: float = 10.0) -> None:
        self.stack = stack  # provisioner.addons.Stack: the inventory and the pinned SSH
        self.timeout = timeout

    def kubeconfig(self, cluster: str) -> KubeAccess:
        import paramiko

        from provisioner.ansible import ssh

        cache = Path(self.stack.home) / "kube" / f"{cluster}.conf"
        if cache.exists():
            return parse_kubeconfig(cache.read_text(encoding="utf-8"))
        try:
            inventory = self.stack.build_inventory(cluster)
            command = " || ".join(f"cat {p} 2>/dev/null" for p in KUBECONFIG_PATHS)
            out = ssh.run_command(inventory, inventory.front, self.stack.pins(cluster), command, timeout=self.timeout)
        except (ProvisionError, paramiko.SSHException, OSError, EOFError) as exc:
            raise SourceError(f"kubernetes: cannot fetch the kubeconfig from the front-end: {exc}") from exc
        if out.exit_status != 0 or not out.stdout.strip():
            raise SourceError("kubernetes: no kubeconfig on the front-end (is Kubernetes installed?)")
        access = parse_kubeconfig(out.stdout)
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret_file(cache, out.stdout)
        return access

    def read(self, ctx: SourceContext) -> Reading:
        import requests

        access = self.kubeconfig(ctx.cluster)
        with _tls_files(access) as (verify, cert):
            headers = {"Authorization": f"Bearer {access.token}"} if access.token else {}
            try:
                pods = requests.get(
                    f"{access.server}/api/v1/pods", headers=headers, verify=verify, cert=cert, timeout=self.timeout
                )
                nodes = requests.get(
                    f"{access.server}/api/v1/nodes", headers=headers, verify=verify, cert=cert, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise SourceError(f"kubernetes: API server {access.server} does not answer: {exc}") from exc
        for resp in (pods, nodes):
            if resp.status_code != 200:
                raise SourceError(f"kubernetes: {resp.url} answered {resp.status_code}")
        pending, busy, addresses = classify_pods(pods.json(), nodes.json())
        return Reading(
            pending_pods=pending, idle_since=idle_workers(ctx.workers, busy, addresses, ctx.idle_since, ctx.now)
        )


@contextlib.contextmanager
def _tls_files(access: KubeAccess) -> Iterator[tuple[str | bool, tuple[str, str] | None]]:
    """requests wants files: the CA and client cert/key go to a private temporary directory for one read."""
    with tempfile.TemporaryDirectory(prefix="pv-kube-") as tmp:
        os.chmod(tmp, 0o700)
        verify: str | bool = True
        cert: tuple[str, str] | None = None
        if access.ca_pem:
            ca = Path(tmp) / "ca.pem"
            ca.write_bytes(access.ca_pem)
            verify = str(ca)
        if access.cert_pem and access.key_pem:
            crt, key = Path(tmp) / "client.pem", Path(tmp) / "client.key"
            crt.write_bytes(access.cert_pem)
            write_secret_file(key, access.key_pem.decode("ascii", "replace"))
            cert = (str(crt), str(key))
        yield verify, cert


class OscarSource:
    """Jobs waiting in OSCAR, over its REST API."""

    name = "oscar"

    def __init__(self, url_for: Any, password_for: Any, *, verify: bool | str = True, timeout: float = 10.0) -> None:
        self.url_for = url_for  # cluster -> OSCAR base URL
        self.password_for = password_for  # cluster -> the oscar user's password
        self.verify = verify
        self.timeout = timeout

    def read(self, ctx: SourceContext) -> Reading:
        import requests

        try:
            base = str(self.url_for(ctx.cluster)).rstrip("/")
            auth = ("oscar", str(self.password_for(ctx.cluster)))
        except ProvisionError as exc:
            raise SourceError(f"oscar: no endpoint or credentials: {exc}") from exc
        try:
            services = requests.get(f"{base}/system/services", auth=auth, verify=self.verify, timeout=self.timeout)
            if services.status_code != 200:
                raise SourceError(f"oscar: {base}/system/services answered {services.status_code}")
            logs = {}
            for service in services.json() or []:
                name = service.get("name") if isinstance(service, dict) else None
                if not name:
                    continue
                resp = requests.get(f"{base}/system/logs/{name}", auth=auth, verify=self.verify, timeout=self.timeout)
                if resp.status_code != 200:
                    raise SourceError(f"oscar: {base}/system/logs/{name} answered {resp.status_code}")
                logs[name] = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise SourceError(f"oscar: {base} cannot be read: {str(exc).splitlines()[0][:200]}") from exc
        return Reading(waiting_jobs=count_waiting_jobs(logs))
