"""After IM: inventories, SSH readiness, the add-on playbooks (install), the checks (verify), and the edge route.

The data flow: the registry record and IM's VM info (or, for an edge cluster, the user's inventory) become an
:class:`~provisioner.ansible.inventory.Inventory`; paramiko waits until every node answers SSH and pins the host
keys; ansible-runner runs ``playbooks/site.yml`` (or ``edge.yml``) with the public variables from the cluster's
inputs and the secret ones from its 0600 secrets file. Nothing here prints: progress goes to a callback.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provisioner import tosca
from provisioner.ansible import inventory as inv
from provisioner.ansible import runner, ssh
from provisioner.errors import InputError, OperationFailed, PlaybookFailed, ProvisionError
from provisioner.lifecycle import EDGE_IM_URL, Lifecycle, check_name
from provisioner.state import Phase, Store, inputs_hash, new_deployment_id

COMPONENTS = ("knative", "yunikorn", "minio", "onedata", "oscar", "registry")
SECRET_VARS = ("minio_password", "oscar_password", "onedata_token", "registry_password", "admin_token", "k3s_token")
EDGE_TEMPLATE = "k3s-edge"
EDGE_SITE = "edge"
KUBECONFIG_KUBEADM = "/etc/kubernetes/admin.conf"
KUBECONFIG_K3S = "/etc/rancher/k3s/k3s.yaml"
DEFAULT_INVENTORY_DIR = Path("inventories")


# --- pure helpers -----------------------------------------------------------------------------------------------------


KNATIVE_MIN_KUBE = (1, 31)  # Knative Serving 1.18 (the pinned release) supports Kubernetes 1.31 and later


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def parse_components(text: str | Sequence[str] | None) -> list[str] | None:
    """``knative,minio`` -> ["knative", "minio"] (in install order); None when not given."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names = [p.strip().lower() for p in items if p.strip()]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise InputError(f"unknown component {unknown[0]!r} (known: {', '.join(COMPONENTS)})", field="--components")
    if not names:
        raise InputError(f"give at least one of: {', '.join(COMPONENTS)}", field="--components")
    return [c for c in COMPONENTS if c in names]


def default_components(inputs: Mapping[str, Any], template: str) -> list[str]:
    """What a cluster gets when ``--components`` is not given: what its inputs ask for."""
    if template == "kubernetes":
        wanted = set()
    else:
        wanted = {"minio", "oscar"}
        if inputs.get("knative", True):
            wanted.add("knative")
    if inputs.get("kube_install_yunikorn"):
        wanted.add("yunikorn")
    if inputs.get("onedata_host"):
        wanted.add("onedata")
    if inputs.get("registry_server"):
        wanted.add("registry")
    return [c for c in COMPONENTS if c in wanted]


def with_dependencies(components: Sequence[str], inputs: Mapping[str, Any]) -> list[str]:
    """OSCAR is configured with MinIO, and with Knative and YuniKorn when the inputs ask for them: selecting it
    selects those too (the roles are idempotent, so re-running an installed one changes nothing)."""
    chosen = set(components)
    if "oscar" in chosen:
        chosen.add("minio")
        if inputs.get("knative", True):
            chosen.add("knative")
        if inputs.get("kube_install_yunikorn"):
            chosen.add("yunikorn")
    return [c for c in COMPONENTS if c in chosen]


def check_components(components: Sequence[str], inputs: Mapping[str, Any]) -> None:
    """Refuse combinations the playbooks cannot satisfy, before anything runs (exit 2)."""
    chosen = set(components)
    if "onedata" in chosen and not inputs.get("onedata_host"):
        raise InputError("onedata needs the onedata_host, onedata_space and onedata_token inputs", field="--components")
    version = str(inputs.get("kube_version") or "")
    if "knative" in chosen and version and _version_tuple(version) < KNATIVE_MIN_KUBE:
        raise InputError(
            f"knative (pinned in playbooks/vars/versions.yml) needs Kubernetes >= "
            f"{'.'.join(map(str, KNATIVE_MIN_KUBE))}; the cluster's kube_version is {version}",
            field="--components",
        )
    if "registry" in chosen and not inputs.get("registry_server"):
        raise InputError(
            "registry needs the registry_server, registry_user and registry_password inputs", field="--components"
        )


def playbook_vars(
    cluster: str, inputs: Mapping[str, Any], components: Sequence[str], *, insecure: bool, kubeconfig: str
) -> dict[str, Any]:
    """The public variables of a run (the playbooks' contract; see playbooks/README.md)."""
    return {
        "provision_cluster_name": cluster,
        "provision_components": list(components),
        "provision_insecure": bool(insecure),
        "provision_kubeconfig": kubeconfig,
        "cluster_name": inputs.get("cluster_name") or cluster,
        "domain_name": inputs.get("domain_name") or "",
        "cert_user_email": inputs.get("cert_user_email") or "",
        "oscar_serverless_backend": "knative" if "knative" in components else "",
        "oscar_yunikorn_enabled": "yunikorn" in components,
        "onedata_host": inputs.get("onedata_host") or "",
        "onedata_space": inputs.get("onedata_space") or "",
        "registry_server": inputs.get("registry_server") or "",
        "registry_user": inputs.get("registry_user") or "",
    }


def secret_vars(secrets: Mapping[str, str]) -> dict[str, str]:
    return {name: str(secrets[name]) for name in SECRET_VARS if secrets.get(name)}


def nodes_ready(doc: Mapping[str, Any]) -> tuple[bool, str]:
    """From ``kubectl get nodes -o json``: are all nodes Ready? With a one-line account."""
    items = doc.get("items") or []
    if not items:
        return False, "no nodes registered"
    not_ready = []
    for node in items:
        name = (node.get("metadata") or {}).get("name", "?")
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") != "True":
            reason = (ready or {}).get("reason") or "no Ready condition"
            not_ready.append(f"{name} ({reason})")
    if not_ready:
        return False, f"{len(items) - len(not_ready)}/{len(items)} Ready; not ready: {', '.join(not_ready)}"
    return True, f"{len(items)}/{len(items)} nodes Ready"


def oscar_config_problems(config: Mapping[str, Any], components: Sequence[str]) -> list[str]:
    """Does OSCAR's ``/system/config`` show Knative, YuniKorn and MinIO wired as asked?"""
    problems = []
    backend = str(config.get("serverless_backend") or "")
    if "knative" in components and backend != "knative":
        problems.append(f"serverless_backend is {backend or 'empty'!r}, expected 'knative'")
    yunikorn = bool(config.get("yunikorn_enable"))
    if yunikorn != ("yunikorn" in components):
        problems.append(f"yunikorn_enable is {str(yunikorn).lower()}, expected {str('yunikorn' in components).lower()}")
    if "minio" in components:
        minio = config.get("minio_provider") or {}
        if not isinstance(minio, Mapping) or not minio.get("endpoint"):
            problems.append("minio_provider has no endpoint")
    return problems


# --- results ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallReport:
    cluster: str
    components: list[str]
    preflight_only: bool
    inventory: str
    ssh: list[dict[str, Any]]
    run_id: str
    artifacts: str
    status: str
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | failed | skipped
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    cluster: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "failed" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


# --- the service ------------------------------------------------------------------------------------------------------


class Stack:
    """Install and check the add-on stack of a cluster (IM or edge)."""

    def __init__(
        self,
        lc: Lifecycle,
        *,
        on_event: Callable[[runner.RunEvent], None] | None = None,
        on_ssh: Callable[[list[ssh.SSHResult]], None] | None = None,
        ssh_timeout: float = 600.0,
    ) -> None:
        self.lc = lc
        self.home = lc.home
        self.on_event = on_event
        self.on_ssh = on_ssh
        self.ssh_timeout = ssh_timeout

    # -- inventory --

    def pins(self, name: str) -> ssh.HostKeyPins:
        return ssh.HostKeyPins(self.home, name)

    def build_inventory(self, name: str) -> inv.Inventory:
        rec = self.lc.record(name)
        if rec.im_url == EDGE_IM_URL:
            return inv.load_user_inventory(Path(rec.extra["inventory_source"]), name)
        return inv.from_vms(name, self.lc.live_vms(name), self.home)

    def write_inventory(self, name: str, path: Path | None = None) -> tuple[inv.Inventory, Path]:
        inventory = self.build_inventory(name)
        target = Path(path) if path is not None else DEFAULT_INVENTORY_DIR / name / "hosts.yml"
        written = inv.write(inventory, target, inv.known_hosts_path(self.home, name))
        return inventory, written.resolve()

    # -- install --

    def install(
        self,
        name: str,
        components: Sequence[str] | None = None,
        *,
        preflight_only: bool = False,
        inventory_path: Path | None = None,
    ) -> InstallReport:
        rec = self.lc.record(name)
        edge = rec.im_url == EDGE_IM_URL
        chosen = list(components) if components is not None else default_components(rec.inputs, rec.template)
        chosen = with_dependencies(chosen, rec.inputs)
        if not chosen and not edge:
            raise InputError(
                f"nothing to install for template {rec.template!r}; name the components", field="--components"
            )
        check_components(chosen, rec.inputs)
        with self.lc.lock(name, "cluster install"):
            return self._run(name, rec, chosen, edge=edge, preflight_only=preflight_only, path=inventory_path)

    def _run(
        self, name: str, rec: Any, chosen: list[str], *, edge: bool, preflight_only: bool, path: Path | None
    ) -> InstallReport:
        inventory, written = self.write_inventory(name, path)
        results = ssh.wait_ready(inventory, self.pins(name), timeout=self.ssh_timeout, on_tick=self.on_ssh)
        secrets = tosca.SecretStore(self.home, name).load()
        public = playbook_vars(
            name,
            rec.inputs,
            chosen,
            insecure=self.lc.settings.insecure,
            kubeconfig=KUBECONFIG_K3S if edge else KUBECONFIG_KUBEADM,
        )
        tags = ["preflight"] if preflight_only else []
        # In a preflight-only run on an edge cluster K3s (and so kubectl) is not there yet: skip the tool checks.
        skip = ["kube_tools"] if preflight_only and edge else []
        playbook = "edge.yml" if edge else "site.yml"
        with Store.open(self.home) as store:
            store.append(
                name, Phase.INSTALLING, {"components": chosen, "playbook": playbook, "preflight_only": preflight_only}
            )
            result = runner.run_playbook(
                playbook,
                written,
                home=self.home,
                cluster=name,
                public_vars=public,
                secret_vars=secret_vars(secrets),
                tags=tags,
                skip_tags=skip,
                on_event=self.on_event,
            )
            what = f"{'preflight of' if preflight_only else 'install of'} {', '.join(chosen) or 'k3s'} on {name}"
            try:
                result.raise_for_failure(what)
            except PlaybookFailed as failed:
                store.append(
                    name,
                    Phase.INSTALL_FAILED,
                    {"run_id": result.ident, "task": failed.task, "host": failed.host, "status": result.status},
                )
                raise
            store.append(name, Phase.INSTALLED, {"run_id": result.ident, "preflight_only": preflight_only})
            if not preflight_only:
                store.update_cluster(name, extra={**rec.extra, "components": chosen, "last_install": result.ident})
        return InstallReport(
            cluster=name,
            components=chosen,
            preflight_only=preflight_only,
            inventory=str(written),
            ssh=[asdict(r) for r in results],
            run_id=result.ident,
            artifacts=str(result.artifacts),
            status=result.status,
            stats=result.stats,
        )

    # -- edge --

    def edge_create(
        self,
        name: str,
        inventory_file: Path,
        *,
        components: Sequence[str] | None = None,
        raw_inputs: Mapping[str, Any] | None = None,
        preflight_only: bool = False,
    ) -> InstallReport:
        """Record an edge cluster (K3s on the user's hosts, no IM), then install K3s and the add-ons."""
        check_name(name)
        source = Path(inventory_file).resolve()
        inv.load_user_inventory(source, name)  # refuse a bad inventory before recording anything
        store_secrets = tosca.SecretStore(self.home, name)
        resolved = tosca.prepare_inputs("oscar", dict(raw_inputs or {}), secrets_store=store_secrets)
        public = {k: v for k, v in resolved.values.items() if k not in resolved.secret_names}
        secrets = store_secrets.load()
        if "k3s_token" not in secrets:
            store_secrets.update({"k3s_token": tosca.generate_secret()})
        chosen = list(components) if components is not None else default_components(public, "oscar")
        chosen = with_dependencies(chosen, public)
        check_components(chosen, public)
        with self.lc.lock(name, "edge create"), Store.open(self.home) as store:
            existing = store.get_cluster(name)
            if existing is not None and existing.im_url != EDGE_IM_URL:
                raise InputError(f"cluster {name!r} exists and is an IM cluster", field="NAME")
            if existing is None:
                store.upsert_cluster(
                    name,
                    im_url=EDGE_IM_URL,
                    template=EDGE_TEMPLATE,
                    site=EDGE_SITE,
                    inputs=public,
                    deployment_id=new_deployment_id(),
                    inputs_hash=inputs_hash(public),
                    infra_id=None,
                    state="registered",
                    extra={"kind": "edge", "inventory_source": str(source)},
                )
                store.append(name, Phase.REGISTERED, {"inventory": str(source)})
            else:
                store.update_cluster(name, inputs=public, extra={**existing.extra, "inventory_source": str(source)})
        rec = self.lc.record(name)
        with self.lc.lock(name, "edge install"):
            report = self._run(name, rec, chosen, edge=True, preflight_only=preflight_only, path=None)
        if not preflight_only:
            with Store.open(self.home) as store:
                store.update_cluster(name, state="installed", workers=len(self.build_inventory(name).workers))
        return report

    # -- verify --

    def verify(self, name: str, *, oscar_url: str | None = None, timeout: float = 20.0) -> VerifyReport:
        rec = self.lc.record(name)
        edge = rec.im_url == EDGE_IM_URL
        components = rec.extra.get("components") or default_components(rec.inputs, rec.template)
        checks: list[Check] = []
        inventory, _ = self.write_inventory(name)
        pins = self.pins(name)
        results = ssh.check_all(inventory, pins, timeout=min(timeout, ssh.DEFAULT_CONNECT_TIMEOUT))
        for r in results:
            checks.append(Check(f"ssh {r.host}", "ok" if r.ok else "failed", r.detail))
        front_ok = next((r.ok for r in results if r.host == inventory.front.name), False)
        kubeconfig = KUBECONFIG_K3S if edge else KUBECONFIG_KUBEADM
        if not front_ok:
            checks.append(Check("kubernetes nodes", "skipped", "the front-end does not answer SSH"))
        else:
            checks.append(self._nodes_check(inventory, pins, kubeconfig, timeout))
        checks += self._oscar_checks(name, rec, edge, inventory, components, oscar_url, timeout)
        return VerifyReport(name, checks)

    def _nodes_check(self, inventory: inv.Inventory, pins: ssh.HostKeyPins, kubeconfig: str, timeout: float) -> Check:
        command = f"KUBECONFIG={shlex.quote(kubeconfig)} kubectl get nodes -o json --request-timeout={int(timeout)}s"
        try:
            out = ssh.run_command(inventory, inventory.front, pins, command, timeout=timeout + 5)
        except (OSError, EOFError) as exc:
            return Check("kubernetes nodes", "failed", f"could not run kubectl on the front-end: {exc}")
        if out.exit_status != 0:
            reason = (out.stderr.strip().splitlines() or [f"exit {out.exit_status}"])[-1]
            if out.exit_status == 127:
                reason = "kubectl is not installed on the front-end"
            return Check("kubernetes nodes", "failed", f"kubectl get nodes: {reason[:300]}")
        try:
            ok, detail = nodes_ready(json.loads(out.stdout))
        except (ValueError, AttributeError):
            return Check("kubernetes nodes", "failed", "kubectl get nodes did not print JSON")
        return Check("kubernetes nodes", "ok" if ok else "failed", detail)

    def _oscar_checks(
        self,
        name: str,
        rec: Any,
        edge: bool,
        inventory: inv.Inventory,
        components: Sequence[str],
        oscar_url: str | None,
        timeout: float,
    ) -> list[Check]:
        if "oscar" not in components:
            return [Check("oscar", "skipped", "OSCAR is not among the installed components")]
        url = oscar_url
        if url is None and not edge:
            try:
                url = str(self.lc.outputs(name).get("oscar_endpoint") or "") or None
            except ProvisionError as exc:
                return [Check("oscar health", "failed", f"cannot read the OSCAR endpoint from IM: {exc}")]
        if url is None:
            url = f"https://{inventory.front.address}/"
        return check_oscar(
            url,
            password=tosca.SecretStore(self.home, name).load().get("oscar_password"),
            components=components,
            verify=self.lc.settings.verify,
            timeout=timeout,
        )


def check_oscar(
    url: str, *, password: str | None, components: Sequence[str], verify: bool | str, timeout: float
) -> list[Check]:
    """OSCAR's ``/health`` (no auth) and ``/system/config`` (basic auth ``oscar``), from this machine."""
    import requests

    base = url.rstrip("/")
    checks: list[Check] = []
    session = requests.Session()
    session.verify = verify
    try:
        health = session.get(f"{base}/health", timeout=(min(5.0, timeout), timeout))
    except requests.RequestException as exc:
        detail = _short(exc)
        return [
            Check("oscar health", "failed", f"{base}/health: {detail}"),
            Check("oscar config", "skipped", "OSCAR does not answer"),
        ]
    if health.status_code != 200:
        checks.append(Check("oscar health", "failed", f"{base}/health answered {health.status_code}"))
    else:
        checks.append(Check("oscar health", "ok", f"{base}/health answered 200 {health.text.strip()[:40]}"))
    if not password:
        checks.append(Check("oscar config", "skipped", "no oscar_password kept for this cluster"))
        return checks
    try:
        resp = session.get(f"{base}/system/config", auth=("oscar", password), timeout=(min(5.0, timeout), timeout))
        config = resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError) as exc:
        return [*checks, Check("oscar config", "failed", f"{base}/system/config: {_short(exc)}")]
    if config is None or not isinstance(config, dict):
        return [*checks, Check("oscar config", "failed", f"{base}/system/config answered {resp.status_code}")]
    problems = oscar_config_problems(config, components)
    if problems:
        return [*checks, Check("oscar config", "failed", "; ".join(problems))]
    wired = ", ".join(c for c in ("knative", "yunikorn", "minio") if c in components) or "nothing to check"
    return [*checks, Check("oscar config", "ok", f"wired as asked: {wired}")]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def fail_if_not_ok(report: VerifyReport) -> None:
    if not report.ok:
        failed = [c for c in report.checks if c.status == "failed"]
        raise OperationFailed(
            f"{len(failed)} check(s) failed on {report.cluster}: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        )
