"""After IM: inventories, SSH readiness, the add-on playbooks (install), the checks (verify), and the edge route.

The data flow: the registry record and IM's VM info (or, for an edge cluster, the user's inventory) become an
:class:`~provisioner.ansible.inventory.Inventory`; paramiko waits until every node answers SSH and pins the host
keys; ansible-runner runs ``playbooks/site.yml`` (or ``edge.yml``) with the public variables from the cluster's
inputs and the secret ones from its 0600 secrets file. Nothing here prints: progress goes to a callback.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provisioner import tosca
from provisioner.ansible import inventory as inv
from provisioner.ansible import runner, ssh
from provisioner.errors import (
    HostKeyChanged,
    InputError,
    OperationFailed,
    OperationTimeout,
    OSCARError,
    OSCARUnreachable,
    PlaybookFailed,
    ProvisionError,
    SSHUnreachable,
)
from provisioner.lifecycle import Lifecycle
from provisioner.model import ClusterKind, check_name
from provisioner.oscar import OscarClient
from provisioner.state import ClusterRecord, Phase, inputs_hash, new_deployment_id, open_store
from provisioner.text import shorten

COMPONENTS = ("knative", "yunikorn", "minio", "onedata", "oscar", "registry")
SECRET_VARS = ("minio_password", "oscar_password", "onedata_token", "registry_password", "admin_token", "k3s_token")
SITE_PLAYBOOK = "site.yml"  # under provisioner/data/playbooks/ (or an absolute path)
EDGE_PLAYBOOK = "edge.yml"
EDGE_TEMPLATE = "k3s-edge"
EDGE_SITE = "edge"
KUBECONFIG_KUBEADM = "/etc/kubernetes/admin.conf"
KUBECONFIG_K3S = "/etc/rancher/k3s/k3s.yaml"
INVENTORY_DIR = "inventories"  # under the state directory (PROVISION_HOME): home/inventories/NAME/hosts.yml
# Where our roles put things that verify checks (playbooks/roles/*/defaults/main.yml; a test keeps them in step).
OSCAR_NODE_PORT = 30301  # oscar_node_port
MINIO_IN_CLUSTER_ENDPOINT = "http://minio.minio:9000"  # oscar_minio_endpoint: Service minio in namespace minio
# An edge inventory names hosts that are already up: a refusal means no sshd where it points.
EDGE_SSH_HINT = (
    "check that sshd runs on each host and listens where the inventory points (ansible_host, ansible_port), "
    "and that this machine can reach it"
)


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


def merge_components(installed: Sequence[str] | None, chosen: Sequence[str]) -> list[str]:
    """What a cluster has after installing ``chosen`` on top of ``installed`` (a partial install adds, never
    removes: the roles of earlier installs stay in place)."""
    have = set(installed or ()) | set(chosen)
    return [c for c in COMPONENTS if c in have]


def k3s_disable_traefik(extra: Mapping[str, Any], chosen: Sequence[str]) -> bool:
    """Whether K3s runs without Traefik: Knative's Kourier takes ports 80/443 once Knative is (or was) installed.

    Decided from the cluster's record (an earlier decision, the installed components) and this run's selection,
    never from the selection alone: ``install --components registry`` must not turn Traefik back on (and rewrite
    K3s's config, restarting it) on a cluster that has Knative.
    """
    if extra.get("k3s_disable_traefik"):
        return True
    return "knative" in merge_components(extra.get("components"), chosen)


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
        "minio_buckets": [str(b) for b in inputs.get("minio_buckets") or []],
    }


def secret_vars(secrets: Mapping[str, str]) -> dict[str, str]:
    return {name: str(secrets[name]) for name in SECRET_VARS if secrets.get(name)}


def nodes_ready(doc: Mapping[str, Any], hosts: int | None = None) -> tuple[bool, str]:
    """From ``kubectl get nodes -o json``: are all nodes Ready, and (given the inventory's number of ``hosts``) has
    every host joined as a node? With a one-line account.

    Node names are the hosts' own host names, not the inventory's names, so hosts are compared by count: fewer
    nodes than hosts means a host never joined (or left), a failure even when every node is Ready.
    """
    items = doc.get("items") or []
    if not items:
        return False, "no nodes registered" + (f" (the inventory has {hosts} hosts)" if hosts else "")
    not_ready = []
    for node in items:
        name = (node.get("metadata") or {}).get("name", "?")
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") != "True":
            reason = (ready or {}).get("reason") or "no Ready condition"
            not_ready.append(f"{name} ({reason})")
    count = len(items)
    missing = hosts is not None and count < hosts
    joined = f"{count} of {hosts} hosts are nodes"
    if not_ready:
        detail = f"{count - len(not_ready)}/{count} Ready; not ready: {', '.join(not_ready)}"
        return False, detail + (f"; only {joined}" if missing else "")
    if missing:
        return False, f"{joined} (all Ready)"
    return True, f"{count}/{count} nodes Ready"


def oscar_wiring(components: Sequence[str]) -> dict[str, Any]:
    """How OSCAR is configured for ``components`` (as playbook_vars passes it): what /system/config must show."""
    return {
        "serverless_backend": "knative" if "knative" in components else "",
        "yunikorn_enable": "yunikorn" in components,
    }


def oscar_settings(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The server settings in OSCAR's ``/system/config`` answer.

    OSCAR answers ``{"config": {...settings...}, "minio_provider": {...}, "allowed_image_repositories": [...]}``
    (``types.ConfigForUser``); releases before that answered the settings at the top level (flat), which is read
    when there is no ``config`` object. ``serverless_backend`` is omitted when empty; ``yunikorn_enable`` is a bool.
    """
    nested = config.get("config")
    return nested if isinstance(nested, Mapping) else config


def oscar_config_problems(
    config: Mapping[str, Any], components: Sequence[str], wiring: Mapping[str, Any] | None = None
) -> list[str]:
    """Does OSCAR's ``/system/config`` show Knative, YuniKorn and MinIO wired as asked?

    ``wiring`` is what OSCAR was installed with (recorded by install); without it, what ``components`` imply.
    The backend and YuniKorn are read from the ``config`` object (:func:`oscar_settings`); ``minio_provider`` is
    top-level, and must be the in-cluster endpoint of the minio role's Service.
    """
    wanted = {**oscar_wiring(components), **(wiring or {})}
    problems = []
    settings = oscar_settings(config)
    backend = str(settings.get("serverless_backend") or "")
    expected_backend = str(wanted["serverless_backend"] or "")
    if backend != expected_backend:
        expected = repr(expected_backend) if expected_backend else "empty (Knative was not asked for)"
        problems.append(f"serverless_backend is {backend or 'empty'!r}, expected {expected}")
    yunikorn = bool(settings.get("yunikorn_enable"))
    expected_yunikorn = bool(wanted["yunikorn_enable"])
    if yunikorn != expected_yunikorn:
        problems.append(f"yunikorn_enable is {str(yunikorn).lower()}, expected {str(expected_yunikorn).lower()}")
    if "minio" in components:
        minio = config.get("minio_provider") or {}
        endpoint = str(minio.get("endpoint") or "") if isinstance(minio, Mapping) else ""
        if not endpoint:
            problems.append("minio_provider has no endpoint")
        elif endpoint.rstrip("/") != MINIO_IN_CLUSTER_ENDPOINT:
            problems.append(
                f"minio_provider.endpoint is {endpoint!r}, expected {MINIO_IN_CLUSTER_ENDPOINT!r} (our MinIO's Service)"
            )
    return problems


def kubectl_script(kubeconfig: str, args: Sequence[str], *, sudo_password: bool = False) -> str:
    """A POSIX shell command running ``kubectl ARGS`` with ``KUBECONFIG`` on a node, as whoever can read it.

    The admin kubeconfig is root-only (kubeadm's admin.conf; K3s's k3s.yaml, written 0600 by our k3s role), and
    IM's users are not root: when the SSH user is not root and cannot read it, kubectl runs through ``sudo -n``
    (or ``sudo -S`` reading the become password from standard input). Without sudo, it says so on stderr.
    """
    kubectl = 'env "KUBECONFIG=$kc" ' + shlex.join(["kubectl", *args])
    sudo = "sudo -S -p ''" if sudo_password else "sudo -n"
    return (
        f"kc={shlex.quote(kubeconfig)}; "
        'if [ "$(id -u)" != 0 ] && ! [ -r "$kc" ]; then '
        "if ! command -v sudo >/dev/null 2>&1; then "
        'echo "$kc is not readable by $(id -un) and sudo is not installed" >&2; exit 126; fi; '
        f"exec {sudo} {kubectl}; fi; "
        f"exec {kubectl}"
    )


def kubectl_failure(exit_status: int, stderr: str, *, kubeconfig: str, user: str) -> str:
    """One line: why ``kubectl`` run by :func:`kubectl_script` failed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and line.strip() != "Sorry, try again."]
    sudo = next((line for line in lines if line.startswith("sudo:")), None)
    if sudo is not None:
        return (
            f"{kubeconfig} is not readable by {user} and sudo refused: {sudo} "
            "(give the SSH user passwordless sudo, or ansible_become_password in the edge inventory)"
        )
    if exit_status == 126 and lines and "sudo is not installed" in lines[-1]:
        return lines[-1]
    if exit_status == 127:
        return "kubectl is not installed on the front-end"
    return (lines or [f"exit {exit_status}"])[-1]


def edge_inputs(recorded: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of an ``edge create`` run: the ones given (``--set``, ``--inputs``) over the ones the cluster
    has recorded, so that a re-run without the first run's ``--set`` values keeps them instead of falling back to
    the template's defaults. Recorded names the oscar template no longer has are dropped. (Secrets are not in
    the record: prepare_inputs takes the kept ones from the cluster's secrets file.)"""
    known = tosca.load_schema("oscar").inputs
    kept = {k: v for k, v in recorded.items() if k in known and v is not None}
    return {**kept, **given}


def installed_extra(extra: Mapping[str, Any], chosen: Sequence[str], run_id: str) -> dict[str, Any]:
    """The cluster record's ``extra`` after a successful install of ``chosen``: the union of the installed
    components (a partial install converges, it does not shrink what verify checks), and, when OSCAR was
    (re)installed, the wiring it was given."""
    out = {**extra, "components": merge_components(extra.get("components"), chosen), "last_install": run_id}
    if "oscar" in chosen:
        out["oscar_wiring"] = oscar_wiring(chosen)
    return out


# --- results ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallReport:
    """What one ``cluster install`` or ``edge create`` did: the add-ons installed (or only preflighted), the nodes'
    SSH checks, and the Ansible run's id, status, artifacts and per-host task counts."""

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
    """One check of ``cluster verify`` (SSH to a node, the Kubernetes nodes, OSCAR's health or config): ok, failed
    or skipped, and why."""

    name: str
    status: str  # ok | failed | skipped
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """What ``cluster verify`` found: the cluster's checks in order; ok unless one failed (:func:`fail_if_not_ok`)."""

    cluster: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "failed" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


# --- the service ------------------------------------------------------------------------------------------------------


class _UnsavedSecrets(tosca.SecretStore):
    """A cluster's kept secrets, read from its file; what a run adds is held in memory only (for a preflight)."""

    def __init__(self, home: Path, cluster: str) -> None:
        super().__init__(home, cluster)
        self._added: dict[str, str | None] = {}

    def load(self) -> dict[str, str]:
        merged: dict[str, str | None] = {**super().load(), **self._added}
        return {k: v for k, v in merged.items() if v is not None}

    def update(self, values: Mapping[str, str | None]) -> None:
        self._added.update(values)


@dataclass(frozen=True)
class _Draft:
    """What an edge preflight runs with instead of the registry's row: nothing of it is recorded."""

    inventory: inv.Inventory
    secrets: dict[str, str]
    inputs: dict[str, Any]
    extra: dict[str, Any]


class _NoStore:
    """Stands in for the registry where a run records nothing (an edge preflight)."""

    def __enter__(self) -> _NoStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def append(self, *args: object) -> None:
        return None

    def update_cluster(self, *args: object, **kwargs: object) -> None:
        return None


class Stack:
    """Install and check the add-on stack of a cluster (IM or edge)."""

    def __init__(
        self,
        lc: Lifecycle,
        *,
        on_event: Callable[[runner.RunEvent], None] | None = None,
        on_ssh: Callable[[list[ssh.SSHResult]], None] | None = None,
        ssh_timeout: float = 600.0,
        playbook_timeout: float | None = runner.DEFAULT_PLAYBOOK_TIMEOUT,
    ) -> None:
        self.lc = lc
        self.home = lc.home
        self.on_event = on_event
        self.on_ssh = on_ssh
        self.ssh_timeout = ssh_timeout
        self.playbook_timeout = playbook_timeout

    # -- inventory --

    def pins(self, name: str) -> ssh.HostKeyPins:
        return ssh.HostKeyPins(self.home, name)

    def build_inventory(self, name: str) -> inv.Inventory:
        rec = self.lc.record(name)
        if rec.kind is ClusterKind.EDGE:
            return inv.load_user_inventory(Path(rec.extra["inventory_source"]), name)
        return inv.from_vms(name, self.lc.live_vms(name), self.home)

    def write_inventory(
        self, name: str, path: Path | None = None, inventory: inv.Inventory | None = None
    ) -> tuple[inv.Inventory, Path]:
        """Write ``inventory`` (default: the one of the recorded cluster ``name``) as the cluster's hosts.yml."""
        inventory = inventory if inventory is not None else self.build_inventory(name)
        target = Path(path) if path is not None else self.home / INVENTORY_DIR / name / "hosts.yml"
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
        edge = rec.kind is ClusterKind.EDGE
        chosen = list(components) if components is not None else default_components(rec.inputs, rec.template)
        chosen = with_dependencies(chosen, rec.inputs)
        if not chosen and not edge:
            raise InputError(
                f"nothing to install for template {rec.template!r}; name the components", field="--components"
            )
        check_components(chosen, rec.inputs)
        if not edge:
            self._check_configured(name)
        with self.lc.lock(name, "cluster install"):
            rec = self.lc.record(name)  # afresh, under the lock
            return self._run(name, rec, chosen, edge=edge, preflight_only=preflight_only, path=inventory_path)

    def _check_configured(self, name: str) -> None:
        """The add-ons go on a cluster IM has configured: refuse any other state now, instead of waiting for SSH
        on VMs that are stopped, off, failed or still being configured until the SSH timeout."""
        view = self.lc.status(name)
        if view.state == "configured":
            return
        state = view.state or "unknown"
        if state in ("stopped", "off"):
            hint = f"start it first (in IM or its cloud), then check with: provision cluster status {name}"
        elif state in ("unconfigured", "failed"):
            hint = (
                f"see why with: provision cluster logs {name}; then: provision cluster reconfigure {name} "
                "(or destroy and create it again)"
            )
        else:
            hint = f"wait until it is configured: provision cluster status {name} --wait"
        raise OperationFailed(f"cluster {name!r} is {state} in IM, not configured: nothing was installed", hint=hint)

    def _run(
        self,
        name: str,
        rec: ClusterRecord | _Draft,
        chosen: list[str],
        *,
        edge: bool,
        preflight_only: bool,
        path: Path | None,
        draft: _Draft | None = None,
    ) -> InstallReport:
        """Wait for SSH, then run the playbook; journal it and record the result on the cluster.

        With a ``draft`` (an edge preflight of a cluster that may not be recorded), its inventory and secrets
        are used and nothing is journaled or recorded."""
        inventory, written = self.write_inventory(name, path, draft.inventory if draft is not None else None)
        results = ssh.wait_ready(
            inventory,
            self.pins(name),
            timeout=self.ssh_timeout,
            on_tick=self.on_ssh,
            refused_is_final=edge,
            hint=EDGE_SSH_HINT if edge else ssh.CLOUD_SSH_HINT,
        )
        secrets = draft.secrets if draft is not None else tosca.SecretStore(self.home, name).load()
        public = playbook_vars(
            name,
            rec.inputs,
            chosen,
            insecure=self.lc.settings.insecure,
            kubeconfig=KUBECONFIG_K3S if edge else KUBECONFIG_KUBEADM,
        )
        extra = dict(rec.extra)
        if edge:
            # From the record too, not only this run's selection (see k3s_disable_traefik).
            public["k3s_disable_traefik"] = k3s_disable_traefik(rec.extra, chosen)
            extra["k3s_disable_traefik"] = public["k3s_disable_traefik"]
        tags = ["preflight"] if preflight_only else []
        # In a preflight-only run on an edge cluster K3s (and so kubectl) is not there yet: skip the tool checks.
        skip = ["kube_tools"] if preflight_only and edge else []
        playbook = EDGE_PLAYBOOK if edge else SITE_PLAYBOOK
        with open_store(self.home) if draft is None else _NoStore() as store:
            detail = {"components": chosen, "playbook": playbook, "preflight_only": preflight_only}
            if edge:
                detail["k3s_disable_traefik"] = public["k3s_disable_traefik"]
            store.append(name, Phase.INSTALLING, detail)
            if edge and not preflight_only:
                # Recorded before the run: K3s may be configured with it even if a later role fails.
                store.update_cluster(name, extra=extra)
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
                scan_secrets=inventory.secrets(),
                timeout=self.playbook_timeout,
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
            except OperationTimeout:  # the run was stopped at --playbook-timeout (the lock is released as it unwinds)
                store.append(
                    name,
                    Phase.INSTALL_FAILED,
                    {"run_id": result.ident, "task": result.running_task, "host": None, "status": result.status},
                )
                raise
            store.append(name, Phase.INSTALLED, {"run_id": result.ident, "preflight_only": preflight_only})
            if not preflight_only:
                store.update_cluster(name, extra=installed_extra(extra, chosen, result.ident))
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
        """Record an edge cluster (K3s on the user's hosts, no IM), then install K3s and the add-ons.

        Run again on a recorded edge cluster, ``raw_inputs`` change its recorded inputs (:func:`edge_inputs`):
        what is not given keeps its recorded value, not the template's default.
        """
        check_name(name)
        source = Path(inventory_file).resolve()
        hosts = inv.load_user_inventory(source, name)  # refuse a bad inventory before recording anything
        with self.lc.lock(name, "edge create"), open_store(self.home) as store:
            existing = store.get_cluster(name)
            if existing is not None and existing.kind is not ClusterKind.EDGE:
                # Before the inputs are resolved: that would write this run's secrets into the IM cluster's file.
                raise InputError(f"cluster {name!r} exists and is an IM cluster", field="NAME")
            # A preflight changes nothing: its generated secrets stay in memory (no secrets file, no record).
            store_secrets = _UnsavedSecrets(self.home, name) if preflight_only else tosca.SecretStore(self.home, name)
            raw = edge_inputs(existing.inputs if existing is not None else {}, raw_inputs or {})
            resolved = tosca.prepare_inputs("oscar", raw, secrets_store=store_secrets)
            public = {k: v for k, v in resolved.values.items() if k not in resolved.secret_names}
            if "k3s_token" not in store_secrets.load():
                store_secrets.update({"k3s_token": tosca.generate_secret()})
            chosen = list(components) if components is not None else default_components(public, "oscar")
            chosen = with_dependencies(chosen, public)
            check_components(chosen, public)
            if preflight_only:
                existing_extra = dict(existing.extra) if existing is not None else {}
            elif existing is None:
                store.upsert_cluster(
                    name,
                    im_url="",
                    kind=ClusterKind.EDGE,
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
        if preflight_only:
            # Nothing recorded: no registry row, no journal, no secrets file.
            draft = _Draft(hosts, store_secrets.load(), public, existing_extra)
            with self.lc.lock(name, "edge preflight"):
                return self._run(name, draft, chosen, edge=True, preflight_only=True, path=None, draft=draft)
        rec = self.lc.record(name)
        with self.lc.lock(name, "edge install"):
            report = self._run(name, rec, chosen, edge=True, preflight_only=preflight_only, path=None)
        if not preflight_only:
            with open_store(self.home) as store:
                store.update_cluster(name, state="installed", workers=len(self.build_inventory(name).workers))
        return report

    # -- verify --

    def verify(self, name: str, *, oscar_url: str | None = None, timeout: float = 20.0) -> VerifyReport:
        rec = self.lc.record(name)
        edge = rec.kind is ClusterKind.EDGE
        components = rec.extra.get("components") or default_components(rec.inputs, rec.template)
        checks: list[Check] = []
        inventory, _ = self.write_inventory(name)
        pins = self.pins(name)
        # A changed host key fails that host's check (with the ssh-keygen -R line); the report goes on.
        results = ssh.check_all(
            inventory, pins, timeout=min(timeout, ssh.DEFAULT_CONNECT_TIMEOUT), report_key_changes=True
        )
        for r in results:
            checks.append(Check(f"ssh {r.host}", "ok" if r.ok else "failed", r.detail))
        front = next((r for r in results if r.host == inventory.front.name), None)
        kubeconfig = KUBECONFIG_K3S if edge else KUBECONFIG_KUBEADM
        if front is not None and front.key_changed:
            checks.append(
                Check(
                    "kubernetes nodes",
                    "skipped",
                    f"the front-end's host key changed: kubectl not run (see ssh {inventory.front.name})",
                )
            )
        elif front is None or not front.ok:
            checks.append(Check("kubernetes nodes", "skipped", "the front-end does not answer SSH"))
        else:
            checks.append(self._nodes_check(inventory, pins, kubeconfig, timeout))
        checks += self._oscar_checks(name, rec, edge, inventory, components, oscar_url, timeout)
        return VerifyReport(name, checks)

    def _nodes_check(self, inventory: inv.Inventory, pins: ssh.HostKeyPins, kubeconfig: str, timeout: float) -> Check:
        front = inventory.front
        args = ["get", "nodes", "-o", "json", f"--request-timeout={int(timeout)}s"]
        command = kubectl_script(kubeconfig, args, sudo_password=bool(front.become_password))
        stdin = f"{front.become_password}\n" if front.become_password else None
        try:
            out = ssh.run_command(inventory, front, pins, command, timeout=timeout + 5, stdin=stdin)
        except HostKeyChanged as exc:  # changed since the SSH check: refused, never accepted
            return Check("kubernetes nodes", "failed", exc.message + (f"; {exc.hint}" if exc.hint else ""))
        except (OSError, EOFError) as exc:
            return Check("kubernetes nodes", "failed", f"could not run kubectl on the front-end: {exc}")
        if out.exit_status != 0:
            reason = kubectl_failure(out.exit_status, out.stderr, kubeconfig=kubeconfig, user=front.user)
            return Check("kubernetes nodes", "failed", f"kubectl get nodes: {reason[:300]}")
        try:
            ok, detail = nodes_ready(json.loads(out.stdout), hosts=len(inventory.hosts))
        except (ValueError, AttributeError):
            return Check("kubernetes nodes", "failed", "kubectl get nodes did not print JSON")
        return Check("kubernetes nodes", "ok" if ok else "failed", detail)

    def _oscar_checks(
        self,
        name: str,
        rec: ClusterRecord,
        edge: bool,
        inventory: inv.Inventory,
        components: Sequence[str],
        oscar_url: str | None,
        timeout: float,
    ) -> list[Check]:
        if "oscar" not in components:
            return [Check("oscar", "skipped", "OSCAR is not among the installed components")]
        front = inventory.front.address
        node_port = f"http://{f'[{front}]' if ':' in front else front}:{OSCAR_NODE_PORT}/"
        url, fallback = oscar_url or (str(rec.extra.get("oscar_url") or "") or None), None
        if url is None and edge:
            # K3s runs without Traefik when Knative is there (and the Ingress has no controller then): OSCAR's
            # NodePort is the one URL that always answers on an edge cluster.
            url = node_port
        elif url is None:
            try:
                url = str(self.lc.outputs(name).get("oscar_endpoint") or "") or None
            except ProvisionError as exc:
                return [Check("oscar health", "failed", f"{_OSCAR_ENDPOINT_UNREAD}: {exc}")]
            url = url or f"https://{front}/"
            fallback = node_port
        return check_oscar(
            url,
            password=tosca.SecretStore(self.home, name).load().get("oscar_password"),
            components=components,
            verify=self.lc.settings.verify,
            timeout=timeout,
            fallback=fallback,
            wiring=rec.extra.get("oscar_wiring"),
        )


def check_oscar(
    url: str,
    *,
    password: str | None,
    components: Sequence[str],
    verify: bool | str,
    timeout: float,
    fallback: str | None = None,
    wiring: Mapping[str, Any] | None = None,
) -> list[Check]:
    """OSCAR's ``/health`` (no auth) and ``/system/config`` (basic auth ``oscar``), from this machine.

    ``fallback`` (OSCAR's NodePort) is tried when ``url`` (the Ingress) cannot be connected to at all; the
    report says so.
    """
    with contextlib.ExitStack() as clients:

        def client_for(base_url: str) -> OscarClient:
            return clients.enter_context(OscarClient(base_url, password=password, verify=verify, timeout=timeout))

        client = client_for(url)
        base = client.base_url
        checks: list[Check] = []
        note = ""
        health: str | OSCARError
        try:
            health = client.health()
        except OSCARUnreachable as exc:
            detail = f"{base}/health: {exc.reason}"
            if fallback is None or not exc.connect_failed:
                return [
                    Check("oscar health", "failed", detail),
                    Check("oscar config", "skipped", "OSCAR does not answer"),
                ]
            client = client_for(fallback)
            base = client.base_url
            try:
                health = client.health()
            except OSCARUnreachable as again:
                return [
                    Check("oscar health", "failed", f"{detail}; NodePort {base}/health: {again.reason}"),
                    Check("oscar config", "skipped", "OSCAR does not answer"),
                ]
            except OSCARError as again:
                health = again
            note = f" (the Ingress did not connect: {detail})"
        except OSCARError as exc:
            health = exc
        if isinstance(health, OSCARError):
            checks.append(Check("oscar health", "failed", f"{_answered(health, f'{base}/health')}{note}"))
        else:
            checks.append(Check("oscar health", "ok", f"{base}/health answered 200 {health.strip()[:40]}{note}"))
        if not password:
            checks.append(Check("oscar config", "skipped", "no oscar_password kept for this cluster"))
            return checks
        try:
            config = client.config()
        except OSCARUnreachable as exc:
            return [*checks, Check("oscar config", "failed", f"{base}/system/config: {exc.reason}")]
        except OSCARError as exc:
            return [*checks, Check("oscar config", "failed", _answered(exc, f"{base}/system/config"))]
    problems = oscar_config_problems(config, components, wiring)
    if problems:
        return [*checks, Check("oscar config", "failed", "; ".join(problems))]
    wanted = {**oscar_wiring(components), **(wiring or {})}
    wired = [f"serverless backend {wanted['serverless_backend'] or 'none'}"]
    wired.append(f"yunikorn {'on' if wanted['yunikorn_enable'] else 'off'}")
    if "minio" in components:
        wired.append(f"minio {MINIO_IN_CLUSTER_ENDPOINT}")
    return [*checks, Check("oscar config", "ok", f"wired as asked: {', '.join(wired)}")]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return shorten(text.splitlines()[0], 200)


def _answered(exc: OSCARError, url: str) -> str:
    """``URL answered 500`` for an OSCAR status error; the error itself otherwise (an answer that is not JSON)."""
    return f"{url} answered {exc.status}" if exc.status is not None else exc.message


# A failed SSH check whose node did answer: refused login, a failing command, a changed host key (a security stop).
_SSH_ANSWERED = ("authentication refused", "logged in, but", "refusing to connect")
_OSCAR_ENDPOINT_UNREAD = "cannot read the OSCAR endpoint from IM"


def fail_if_not_ok(report: VerifyReport) -> None:
    """Raise for a failed report; the first failed check decides the error's class (and so its triage): a node
    not answering SSH, OSCAR not answering its health check, or some other failure."""
    if not report.ok:
        failed = [c for c in report.checks if c.status == "failed"]
        listed = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        text = f"{len(failed)} check(s) failed on {report.cluster}: {listed}"
        first = failed[0]
        if first.name.startswith("ssh ") and not any(mark in first.detail for mark in _SSH_ANSWERED):
            raise SSHUnreachable(text)
        if first.name == "oscar health" and not first.detail.startswith(_OSCAR_ENDPOINT_UNREAD):
            raise OSCARUnreachable(text)
        raise OperationFailed(text)
