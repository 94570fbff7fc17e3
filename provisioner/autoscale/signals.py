"""Signal sources for the autoscaler, behind one small interface: what a cluster needs, read once per tick.

* :class:`KubernetesSource`: pods that cannot be scheduled (unbound, ``PodScheduled=False/Unschedulable``,
  outside ``kube-system``), and which workers run no pods of their own (idle). The kubeconfig is fetched from the
  front-end over SSH (host key pinned; ``sudo -n`` when the SSH user may not read it) and cached 0600 under
  ``<home>/kube/<cluster>.conf``. The API server is asked through the same SSH connection (a local port forwarded
  to the kubeconfig's ``server:`` as the front-end sees it, see :mod:`provisioner.autoscale.tunnel`), with TLS
  verified against the kubeconfig's CA and the kubeconfig's host name (unless ``--insecure``). A cached
  kubeconfig that is refused (401/403) or fails TLS verification is fetched again once.
* :class:`OscarSource`: OSCAR jobs waiting (status ``Pending``: OSCAR reports the phase of the job's pod, which may
  be unschedulable or placed and starting; or ``Suspended``: the job has no pod yet) across the cluster's services
  (``/system/services``, then every page of ``/system/logs/<service>``), with OSCAR's basic auth.

A source that cannot be read raises :class:`SourceError`; the job turns that (and anything else a source raises)
into a ``hold`` and logs it. Parsing is pure (``classify_pods``, ``jobs_page``, ``count_jobs``,
``parse_kubeconfig``, ``fetch_kubeconfig`` with an injected command runner) and tested without a cluster.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import yaml

from provisioner.errors import OSCARError, OSCARUnreachable, ProvisionError, SourceError
from provisioner.oscar.client import MAX_PAGES as OSCAR_CLIENT_MAX_PAGES
from provisioner.oscar.client import OscarClient
from provisioner.oscar.client import jobs_page as oscar_jobs_page
from provisioner.privfs import ensure_private_dir, write_secret_file
from provisioner.redact import register_secret
from provisioner.state.cluster_files import ClusterFiles
from provisioner.text import shorten

if TYPE_CHECKING:
    import paramiko
    import requests

    from provisioner.ansible.inventory import Inventory
    from provisioner.ansible.ssh import CommandResult, HostKeyPins
    from provisioner.autoscale.tunnel import Forward

__all__ = [
    "EXCLUDED_NAMESPACES",
    "KUBECONFIG_PATHS",
    "FrontEnd",
    "KubeAccess",
    "KubernetesSource",
    "OscarSource",
    "PodCensus",
    "Reading",
    "SignalSource",
    "SourceContext",
    "SourceError",
    "classify_pods",
    "count_jobs",
    "fetch_kubeconfig",
    "idle_workers",
    "jobs_page",
    "kube_cache_path",
    "parse_kubeconfig",
]

EXCLUDED_NAMESPACES = frozenset({"kube-system"})
KUBECONFIG_PATHS = ("/etc/kubernetes/admin.conf", "/etc/rancher/k3s/k3s.yaml")
# OSCAR labels the pods of the Kubernetes Jobs it creates for asynchronous invocations with both of these.
OSCAR_SERVICE_LABEL = "oscar_service"
JOB_NAME_LABEL = "job-name"
OSCAR_NO_POD_STATUS = "suspended"  # OSCAR lists a job whose pod does not exist (yet) as Suspended
OSCAR_WAITING_STATUSES = frozenset({"pending", OSCAR_NO_POD_STATUS})  # Pending: the pod's phase
OSCAR_MAX_PAGES = OSCAR_CLIENT_MAX_PAGES  # a server whose continuation tokens never end is refused


@dataclass(frozen=True)
class SourceContext:
    """What a signal source is given at a tick: the cluster, its live workers, the tick's time, and since when
    each worker was idle at the last decision."""

    cluster: str
    workers: Sequence[Any]  # VMInfo of the live workers
    now: datetime
    idle_since: Mapping[str, str] = field(default_factory=dict)  # vm id -> ISO time, from the last decision


@dataclass(frozen=True)
class Reading:
    """What one signal source read at a tick, None for what it does not read; the job merges the sources' readings
    into the decision's :class:`~provisioner.autoscale.engine.Signals`."""

    pending_pods: int | None = None
    oscar_job_pods: int | None = None  # of pending_pods, the pods of OSCAR jobs (also counted as waiting OSCAR jobs)
    waiting_jobs: int | None = None
    jobs_without_pod: int | None = None  # of waiting_jobs, those OSCAR lists as Suspended (no pod yet)
    idle_since: dict[str, str] | None = None  # vm id -> ISO time first seen idle (busy workers absent)


class SignalSource(Protocol):
    name: str

    def read(self, ctx: SourceContext) -> Reading: ...


def kube_cache_path(home: Path, cluster: str) -> Path:
    """Where the kubeconfig fetched from ``cluster``'s front-end is cached (0600)."""
    return ClusterFiles(Path(home), cluster).kube_cache


# --- pure parsing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeAccess:
    """Where a cluster's Kubernetes API server answers and with which credentials: the kubeconfig's current
    context (:func:`parse_kubeconfig`)."""

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
        raise SourceError("kubernetes: the kubeconfig is not valid YAML") from exc
    if not isinstance(doc, dict):
        raise SourceError("kubernetes: the kubeconfig is not a mapping")
    try:
        return _access(doc)
    except (AttributeError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
        raise SourceError(f"kubernetes: the kubeconfig is malformed ({type(exc).__name__}: {exc})") from exc


def _access(doc: Mapping[str, Any]) -> KubeAccess:
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or [] if isinstance(c, dict)}
    current = contexts.get(doc.get("current-context")) or next(iter(contexts.values()), {})
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or [] if isinstance(c, dict)}
    users = {u.get("name"): u.get("user") or {} for u in doc.get("users") or [] if isinstance(u, dict)}
    cluster = clusters.get(current.get("cluster")) or next(iter(clusters.values()), {})
    user = users.get(current.get("user")) or next(iter(users.values()), {})
    server = cluster.get("server")
    if not server:
        raise SourceError("kubernetes: the kubeconfig names no API server")

    def data(obj: Mapping[str, Any], key: str) -> bytes | None:
        value = obj.get(key)
        if not value:
            return None
        try:
            return base64.b64decode(str(value), validate=True)
        except binascii.Error as exc:
            raise SourceError(f"kubernetes: the kubeconfig's {key} is not base64 ({exc})") from exc

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


def _mapping(obj: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceError(f"kubernetes: {what}: {key} is not a mapping")
    return value


def _items(doc: object, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(doc, dict):
        raise SourceError(f"kubernetes: the {what} answer is not a JSON object")
    items = doc.get("items")
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise SourceError(f"kubernetes: the {what} answer's items are not a list of objects")
    return items


@dataclass(frozen=True)
class PodCensus:
    """What ``/api/v1/pods`` and ``/api/v1/nodes`` say about demand and idleness."""

    pending: int  # pods that cannot be scheduled: unbound, PodScheduled False/Unschedulable, outside kube-system
    oscar_job_pending: int  # of those, the pods of OSCAR jobs (labels oscar_service and job-name)
    busy: frozenset[str]  # nodes running (or about to run) a pod of their own
    addresses: dict[str, set[str]]  # node name -> its addresses (and its name)


def _owned_by_daemonset(meta: Mapping[str, Any]) -> bool:
    owners = meta.get("ownerReferences") or []
    return isinstance(owners, list) and any(isinstance(o, dict) and o.get("kind") == "DaemonSet" for o in owners)


def _unschedulable(status: Mapping[str, Any]) -> bool:
    conditions = status.get("conditions") or []
    return isinstance(conditions, list) and any(
        isinstance(c, dict)
        and c.get("type") == "PodScheduled"
        and c.get("status") == "False"
        and c.get("reason") == "Unschedulable"
        for c in conditions
    )


def classify_pods(pods: object, nodes: object) -> PodCensus:
    """From ``/api/v1/pods`` and ``/api/v1/nodes``.

    * Pending demand: pods outside kube-system that are not bound to a node and that the scheduler marked
      ``PodScheduled=False`` with reason ``Unschedulable`` (no node fits: a new worker may). A pod already bound
      (pulling its image, waiting for a volume) needs no new worker.
    * Busy nodes: a node is busy when a pod that is not a DaemonSet's and not in kube-system is bound to it and
      not finished (Pending or Running), so monitoring agents do not keep a worker alive, and a worker whose pod
      is still starting is not removed.

    An answer of the wrong shape raises :class:`SourceError` (never anything else)."""
    pending = 0
    oscar = 0
    busy: set[str] = set()
    for pod in _items(pods, "pods"):
        meta = _mapping(pod, "metadata", "a pod")
        if meta.get("namespace") in EXCLUDED_NAMESPACES:
            continue
        status = _mapping(pod, "status", "a pod")
        node_name = _mapping(pod, "spec", "a pod").get("nodeName")
        phase = status.get("phase")
        if node_name:
            if phase in ("Pending", "Running") and not _owned_by_daemonset(meta):
                busy.add(str(node_name))
        elif phase == "Pending" and _unschedulable(status):
            pending += 1
            labels = _mapping(meta, "labels", "a pod's metadata")
            if OSCAR_SERVICE_LABEL in labels and JOB_NAME_LABEL in labels:
                oscar += 1
    addresses: dict[str, set[str]] = {}
    for node in _items(nodes, "nodes"):
        name = str(_mapping(node, "metadata", "a node").get("name"))
        listed = _mapping(node, "status", "a node").get("addresses") or []
        if not isinstance(listed, list):
            raise SourceError("kubernetes: a node's status.addresses is not a list")
        addresses[name] = {str(a.get("address")) for a in listed if isinstance(a, dict) and a.get("address")}
        addresses[name].add(name)
    return PodCensus(pending, oscar, frozenset(busy), addresses)


def idle_workers(
    workers: Sequence[Any],
    busy_nodes: set[str] | frozenset[str],
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


def jobs_page(answer: object, service: str) -> tuple[dict[str, Any], str | None]:
    """One answer of OSCAR's ``GET /system/logs/<service>``: (job name -> job info, the next page's token or None).

    :func:`provisioner.oscar.client.jobs_page` (current OSCAR's ``{"jobs": ..., "next_page": ...}`` pages, or an
    older release's job map in one page), with an answer of another shape raised as :class:`SourceError`."""
    try:
        return oscar_jobs_page(answer, service)
    except OSCARError as exc:
        raise SourceError(f"oscar: {exc}") from exc


def count_jobs(logs_by_service: Mapping[str, Any]) -> tuple[int, int]:
    """Job maps (or whole ``/system/logs`` answers) by service: (the jobs that wait, those of them with no pod).

    OSCAR (``pkg/handlers/logs.go``) gives a job the phase of its pod as status, or ``Suspended`` when it has no
    pod: waiting = ``Pending`` (the pod is not running yet: unschedulable, or placed and starting) + ``Suspended``.
    """
    waiting = without_pod = 0
    for answer in logs_by_service.values():
        jobs = answer.get("jobs", answer) if isinstance(answer, dict) else {}
        if not isinstance(jobs, dict):
            continue
        for job in jobs.values():
            status = str(job.get("status", "")).lower() if isinstance(job, dict) else ""
            if status in OSCAR_WAITING_STATUSES:
                waiting += 1
                without_pod += status == OSCAR_NO_POD_STATUS
    return waiting, without_pod


def _first_line(text: str, limit: int = 200) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return shorten(line, limit)


def fetch_kubeconfig(run: Callable[[str], CommandResult], paths: Sequence[str], where: str) -> str:
    """Read the first kubeconfig of ``paths`` on the front-end, running commands there with ``run``.

    Each path is read with ``cat``; when that is refused (kubeadm's admin.conf is root's, 0600), with
    ``sudo -n cat`` (never prompting). A path that does not exist is skipped. The error names, per path, why it
    could not be read, as the front-end said it (never "no kubeconfig" when the truth is "permission denied")."""
    problems: list[str] = []
    for path in paths:
        quoted = shlex.quote(path)
        plain = run(f"cat -- {quoted}")
        if plain.exit_status == 0 and plain.stdout.strip():
            return plain.stdout
        if plain.exit_status == 0:
            problems.append(f"{path} is empty")
            continue
        why = _first_line(plain.stderr) or f"cat exited {plain.exit_status}"
        if "no such file" in why.lower():
            continue
        elevated = run(f"sudo -n cat -- {quoted}")
        if elevated.exit_status == 0 and elevated.stdout.strip():
            return elevated.stdout
        sudo_why = _first_line(elevated.stderr) or f"exited {elevated.exit_status}"
        problems.append(f"{path}: {why}; with sudo -n: {sudo_why}")
    if not problems:
        raise SourceError(
            f"kubernetes: no kubeconfig on the front-end {where} (looked for {', '.join(paths)}; "
            "is Kubernetes installed?)"
        )
    raise SourceError(
        f"kubernetes: cannot read the kubeconfig on the front-end {where}: {'; '.join(problems)} "
        "(let the SSH user read it, or allow it passwordless sudo)"
    )


# --- the sources ----------------------------------------------------------------------------------------------------


class FrontEnd(Protocol):
    """How to reach a cluster's front-end over SSH (:class:`provisioner.addons.Stack` is one)."""

    home: Path

    def build_inventory(self, name: str) -> Inventory: ...

    def pins(self, name: str) -> HostKeyPins: ...


class _Refused(SourceError):
    """The API server refused the credentials (401/403) or its certificate failed verification."""


class KubernetesSource:
    """Unschedulable pods and idle workers from the cluster's Kubernetes API, through SSH to the front-end."""

    name = "kubernetes"

    def __init__(
        self,
        front: FrontEnd,
        *,
        verify: bool = True,
        timeout: float = 10.0,
        paths: Sequence[str] = KUBECONFIG_PATHS,
    ) -> None:
        self.front = front  # the inventory and the pinned SSH
        self.verify = verify  # False only with --insecure
        self.timeout = timeout
        self.paths = tuple(paths)

    def read(self, ctx: SourceContext) -> Reading:
        import paramiko

        from provisioner.ansible import ssh

        try:
            inventory = self.front.build_inventory(ctx.cluster)
            front = inventory.front
        except StopIteration:
            raise SourceError("kubernetes: the cluster's inventory has no front-end") from None
        except ProvisionError as exc:
            raise SourceError(f"kubernetes: cannot find the front-end: {exc}") from exc
        where = f"{front.user}@{front.endpoint}"
        try:
            with ssh.session(inventory, front, self.front.pins(ctx.cluster), self.timeout) as client:
                census = self._census(client, ctx.cluster, where)
        except SourceError:
            raise
        except ProvisionError as exc:  # e.g. HostKeyChanged: refused, never accepted
            raise SourceError(f"kubernetes: SSH to the front-end {where}: {exc}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else _first_line(str(exc)) or type(exc).__name__
            raise SourceError(f"kubernetes: SSH to the front-end {where} failed: {reason}") from exc
        return Reading(
            pending_pods=census.pending,
            oscar_job_pods=census.oscar_job_pending,
            idle_since=idle_workers(ctx.workers, census.busy, census.addresses, ctx.idle_since, ctx.now),
        )

    # -- the kubeconfig --

    def _census(self, client: paramiko.SSHClient, cluster: str, where: str) -> PodCensus:
        cache = kube_cache_path(self.front.home, cluster)
        cached: KubeAccess | None = None
        with contextlib.suppress(OSError, UnicodeDecodeError, SourceError):  # no cache, or a bad one: fetch it
            cached = parse_kubeconfig(cache.read_text(encoding="utf-8"))
        if cached is not None:
            try:
                return self._ask(client, cached)
            except _Refused:
                pass  # stale (a rebuilt control plane, rotated credentials): fetch it again, once
        text = fetch_kubeconfig(lambda command: self._run(client, command), self.paths, where)
        access = parse_kubeconfig(text)
        with contextlib.suppress(OSError, ProvisionError):  # no cache this time: the next tick fetches it again
            ensure_private_dir(cache.parent)
            write_secret_file(cache, text)
        return self._ask(client, access)

    def _run(self, client: paramiko.SSHClient, command: str) -> CommandResult:
        from provisioner.ansible.ssh import CommandResult

        _, stdout, stderr = client.exec_command(command, timeout=self.timeout)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        return CommandResult("front", stdout.channel.recv_exit_status(), out, err)

    # -- the API server, through the front-end --

    def _ask(self, client: paramiko.SSHClient, access: KubeAccess) -> PodCensus:
        import requests

        from provisioner.autoscale.tunnel import local_forward

        parts = urlsplit(access.server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise SourceError(f"kubernetes: the kubeconfig's server {access.server!r} is not an http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise SourceError(f"kubernetes: the kubeconfig's server {access.server!r} has a bad port") from None
        transport = client.get_transport()
        if transport is None:
            raise SourceError("kubernetes: the SSH connection to the front-end closed")
        with (
            local_forward(transport, (parts.hostname, port), timeout=self.timeout) as forward,
            _tls_files(access) as (ca_file, cert),
            requests.Session() as session,
        ):
            session.trust_env = False  # a proxy from the environment must not see the forwarded port
            if parts.scheme == "https":
                session.mount("https://", _server_name_adapter(parts.hostname))
            verify: bool | str = (ca_file or True) if self.verify else False
            base = f"{parts.scheme}://127.0.0.1:{forward.port}"
            pods = self._get(session, base, "/api/v1/pods", access, verify, cert, forward)
            nodes = self._get(session, base, "/api/v1/nodes", access, verify, cert, forward)
        return classify_pods(pods, nodes)

    def _get(
        self,
        session: requests.Session,
        base: str,
        path: str,
        access: KubeAccess,
        verify: bool | str,
        cert: tuple[str, str] | None,
        forward: Forward,
    ) -> object:
        import requests

        headers = {"Authorization": f"Bearer {access.token}"} if access.token else {}
        where = f"{access.server}{path}"
        try:
            resp = session.get(base + path, headers=headers, verify=verify, cert=cert, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise _Refused(f"kubernetes: TLS with the API server {access.server} failed: {_tls_reason(exc)}") from exc
        except requests.RequestException as exc:
            reason = forward.describe_failure() or _first_line(str(exc))
            raise SourceError(
                f"kubernetes: the API server {access.server} (through the front-end) does not answer: {reason}"
            ) from exc
        if resp.status_code in (401, 403):
            raise _Refused(f"kubernetes: {where} answered {resp.status_code} (the kubeconfig's credentials)")
        if resp.status_code != 200:
            raise SourceError(f"kubernetes: {where} answered {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            kind = resp.headers.get("Content-Type") or "no content type"
            raise SourceError(f"kubernetes: {where} answered something that is not JSON ({kind})") from None


def _tls_reason(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"\[SSL[^\]]*\][^'\")]*", text) or re.search(
        r"hostname '[^']*' doesn't match (?:either of )?'[^']*'(?:, '[^']*')*", text
    )
    return (found.group(0) if found else _first_line(text)).strip()


def _server_name_adapter(hostname: str) -> Any:
    """A requests adapter that checks the certificate (and sends SNI) for ``hostname`` -- the kubeconfig's server --
    while it connects to the local end of the forward."""
    from requests.adapters import HTTPAdapter

    class ServerNameAdapter(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
            pool_kwargs["server_hostname"] = hostname
            pool_kwargs["assert_hostname"] = hostname
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    return ServerNameAdapter()


@contextlib.contextmanager
def _tls_files(access: KubeAccess) -> Iterator[tuple[str | None, tuple[str, str] | None]]:
    """requests wants files: the CA and client cert/key go to a private temporary directory for one read."""
    with tempfile.TemporaryDirectory(prefix="pv-kube-") as tmp:
        os.chmod(tmp, 0o700)
        ca: str | None = None
        cert: tuple[str, str] | None = None
        if access.ca_pem:
            ca_path = Path(tmp) / "ca.pem"
            ca_path.write_bytes(access.ca_pem)
            ca = str(ca_path)
        if access.cert_pem and access.key_pem:
            crt, key = Path(tmp) / "client.pem", Path(tmp) / "client.key"
            crt.write_bytes(access.cert_pem)
            write_secret_file(key, access.key_pem.decode("ascii", "replace"))
            cert = (str(crt), str(key))
        yield ca, cert


class OscarSource:
    """Jobs waiting in OSCAR, over its REST API."""

    name = "oscar"

    def __init__(self, url_for: Any, password_for: Any, *, verify: bool | str = True, timeout: float = 10.0) -> None:
        self.url_for = url_for  # cluster -> OSCAR base URL
        self.password_for = password_for  # cluster -> the oscar user's password
        self.verify = verify
        self.timeout = timeout

    def read(self, ctx: SourceContext) -> Reading:
        try:
            base = str(self.url_for(ctx.cluster)).rstrip("/")
            password = str(self.password_for(ctx.cluster))
        except ProvisionError as exc:
            raise SourceError(f"oscar: no endpoint or credentials: {exc}") from exc
        logs: dict[str, dict[str, Any]] = {}
        try:
            with OscarClient(base, password=password, verify=self.verify, timeout=self.timeout) as client:
                for service in client.services():
                    name = service.get("name")
                    if name:
                        logs[str(name)] = client.service_logs(str(name), max_pages=OSCAR_MAX_PAGES)
        except OSCARUnreachable as exc:
            raise SourceError(f"oscar: {base} cannot be read: {exc.reason}") from exc
        except OSCARError as exc:
            raise SourceError(f"oscar: {exc}") from exc
        waiting, without_pod = count_jobs(logs)
        return Reading(waiting_jobs=waiting, jobs_without_pod=without_pod)
