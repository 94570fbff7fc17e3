"""Cluster lifecycle: create, status, scale, destroy, sync... over IM, the templates and the local journal.

IM is the source of truth; the local store is the journal and a cache. Every mutating operation holds the
cluster's cross-process lock. The deployment id is journaled before the POST, so a create whose answer was
lost (timeout, crash) is found again in IM and adopted instead of being created twice. Nothing here prints:
progress goes to an optional callback, results are returned as data, failures are raised as ProvisionError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner import tosca, triage
from provisioner.credentials import AuthData
from provisioner.errors import (
    IMAuthError,
    IMBadRequest,
    IMError,
    IMForbidden,
    IMNotFound,
    IMServerError,
    IMTimeout,
    IMUnreachable,
    InputError,
    NotFound,
    OperationFailed,
    OperationTimeout,
)
from provisioner.im import IMClient, InfraState, VMInfo
from provisioner.polling import wait_until
from provisioner.settings import Settings
from provisioner.state import Phase, Store, cluster_lock, endpoint_lock, inputs_hash, new_deployment_id
from provisioner.triage import analyse_contmsg

FRONT = "front"
WORKER = "wn"
DONE_STATES = frozenset({"configured", "unconfigured", "failed", "stopped", "off"})
FAILED_STATES = frozenset({"unconfigured", "failed"})
GONE_VM_STATES = frozenset({"deleting"})
META_CLUSTER = "provisioner_cluster"
META_DEPLOYMENT = "provisioner_deployment_id"
META_TEMPLATE = "provisioner_template"
META_SITE = "provisioner_site"
META_INPUTS_HASH = "provisioner_inputs_hash"  # create's fingerprint, so an adopted record resumes like the original
EDGE_IM_URL = "edge:"  # the im_url of an edge (K3s, no IM) cluster in the registry
CREDENTIAL_REFRESH_EVERY = 300.0  # seconds between re-runs of command(...) credentials during a wait
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


# --- results ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VMView:
    id: str
    role: str
    state: str | None
    private_ip: str | None
    public_ip: str | None


@dataclass(frozen=True)
class ClusterView:
    name: str
    infra_id: str | None
    im_url: str
    template: str
    site: str
    state: str | None
    workers: int | None
    vms: list[VMView] = field(default_factory=list)
    deployment_id: str | None = None
    note: str | None = None
    cause: dict[str, str] | None = None  # failure triage, when the cluster ended failed or unconfigured

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """A tick of a long operation, for the CLI's live line."""

    cluster: str
    phase: str
    elapsed: float
    state: str | None = None
    vm_states: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DryRunPlan:
    name: str
    template: str
    site: str
    clouds: list[dict[str, Any]]
    tosca: str  # secrets masked
    note: str | None = None  # what create would do with a cluster of that name already recorded


@dataclass(frozen=True)
class LogReport:
    name: str
    infra_id: str
    vm: str | None
    log: str
    failed_task: str | None
    failed_host: str | None
    reason: str | None
    cause: triage.Triage | None = None


@dataclass(frozen=True)
class DestroyResult:
    """What ``destroy`` did: for an IM cluster the infrastructure deleted (checked gone) and the record forgotten;
    for an edge cluster only the local record and files removed (K3s stays on the hosts, nothing is sent to them)."""

    name: str
    kind: str  # "im" or "edge"
    infra_id: str | None = None
    removed: list[str] = field(default_factory=list)  # local things removed: the record, then the files' paths
    hosts_touched: bool = True  # False for an edge cluster

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SyncReport:
    adopted: list[str]
    updated: list[str]
    forgotten: list[str]
    not_visible: list[str] = field(default_factory=list)  # kept: IM would not show them to these credentials
    moved: list[str] = field(default_factory=list)  # re-pointed to this endpoint, which holds their infrastructure


# --- helpers ----------------------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name or ""):
        raise InputError(
            "must start with a lowercase letter and have at most 63 lowercase letters, digits or '-'", field="NAME"
        )
    return name


def role_of(vm: VMInfo) -> str:
    return FRONT if vm.name == FRONT else WORKER


def vm_view(vm: VMInfo) -> VMView:
    return VMView(id=vm.id, role=role_of(vm), state=vm.state, private_ip=vm.private_ip, public_ip=vm.public_ip)


def _scale_args(workers: int, remove: list[str] | None) -> list[str]:
    if workers < 0:
        raise InputError(f"must be 0 or more, got {workers}", field="--workers")
    return [str(v) for v in (remove or [])]


# --- the service ------------------------------------------------------------------------------------------------------


class Lifecycle:
    """Cluster operations for one user (settings + credentials)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[str], IMClient] | None = None,
        default_im_url: str | None = None,
        progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.home = settings.home
        self._client_factory = client_factory
        self._default_im_url = default_im_url or settings.im_url
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._clients: dict[str, IMClient] = {}
        self._clients_lock = threading.Lock()  # the autoscale job evaluates clusters in threads

    # -- plumbing --

    def client(self, im_url: str | None = None) -> IMClient:
        url = im_url or self._default_im_url
        if url == EDGE_IM_URL:
            raise OperationFailed(
                "this is an edge cluster (K3s on your own hosts): it has no IM infrastructure",
                hint="edge clusters support: cluster install, verify, inventory, list, destroy (forgets it)",
            )
        if not url:
            raise InputError("no IM endpoint configured", field="--im-url")
        with self._clients_lock:
            if url not in self._clients:
                if self._client_factory is None:
                    raise InputError("no IM credentials configured", field="--auth")
                self._clients[url] = self._client_factory(url)
            return self._clients[url]

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    @contextlib.contextmanager
    def _store(self) -> Iterator[Store]:
        with Store.open(self.home) as store:
            yield store

    def _lock(self, name: str, purpose: str) -> contextlib.AbstractContextManager[Path]:
        return cluster_lock(self.home, check_name(name), self.settings.lock_timeout, purpose=purpose)

    def _emit(self, name: str, phase: str, started: float, st: InfraState | None = None) -> None:
        if self._progress is not None:
            self._progress(
                Progress(
                    cluster=name,
                    phase=phase,
                    elapsed=self._clock() - started,
                    state=st.state if st else None,
                    vm_states=dict(st.vm_states) if st else {},
                )
            )

    def _record(self, store: Store, name: str) -> Any:
        rec = store.get_cluster(check_name(name))
        if rec is None:
            raise NotFound(
                f"no cluster named {name!r} in {self.home}",
                hint="see: provision cluster list (or provision cluster sync to rebuild the registry from IM)",
            )
        return rec

    # -- inputs and rendering --

    def _prepare(
        self, name: str, template: str, site_name: str, raw: Mapping[str, Any], *, keep_secrets: bool
    ) -> tuple[Any, Any]:
        if template not in tosca.list_templates():
            raise InputError(
                f"unknown template {template!r} (known: {', '.join(tosca.list_templates())})", field="--template"
            )
        site = tosca.resolve_site(site_name, self.settings.sites)
        store = tosca.SecretStore(self.home, name) if keep_secrets else None
        inputs = tosca.prepare_inputs(template, raw, secrets_store=store)
        return site, inputs

    @staticmethod
    def _fingerprint(template: str, site: str, public_inputs: Mapping[str, Any]) -> str:
        return inputs_hash({"template": template, "site": site, "inputs": dict(public_inputs)})

    def _refuse_other_inputs(self, rec: Any, name: str, fingerprint: str, *, dry_run: bool = False) -> None:
        if rec is not None and rec.inputs_hash != fingerprint:
            raise InputError(
                f"{'dry run: ' if dry_run else ''}cluster {name!r} already exists with other template, site or inputs",
                field="NAME",
                hint=f"change it with: provision cluster scale {name} --workers N, "
                f"or remove it first: provision cluster destroy {name}",
            )

    def _refuse_changed_secrets(
        self, name: str, template: str, raw: Mapping[str, Any], *, dry_run: bool = False
    ) -> None:
        """A secret given again with another value than the one this cluster was made with (which IM holds)."""
        if template not in tosca.list_templates():
            return  # refused by _prepare, with the known templates
        store = tosca.SecretStore(self.home, name)
        kept = store.load()
        schema = tosca.load_schema(template)
        for key in schema.secret_names:
            if key not in raw or key not in kept:
                continue
            spec = schema.inputs[key]
            try:
                same = spec.parse(raw[key]) == spec.parse(kept[key])
            except InputError:
                continue  # a bad value given is refused by _prepare; a bad kept one is named there too
            if same:
                continue
            raise InputError(
                f"{key}: {'dry run: ' if dry_run else ''}cluster {name!r} was created with another value "
                f"(kept in {store.path}, and held by IM); it is never overwritten",
                field=key,
                hint=f"to keep it, leave --set {key} out; to rotate it, the cluster must be made again: "
                f"provision cluster destroy {name}, then create it with the new value",
            )

    def _render_for(self, rec: Any, *, wn_count: int | None = None, removal: list[str] | None = None) -> str:
        site = tosca.resolve_site(rec.site, self.settings.sites)
        inputs = tosca.prepare_inputs(rec.template, rec.inputs, secrets_store=tosca.SecretStore(self.home, rec.name))
        doc = tosca.render(
            rec.template,
            site,
            inputs,
            cluster_name=rec.name,
            deployment_id=rec.deployment_id,
            inputs_hash=rec.inputs_hash,
            wn_count=wn_count,
            removal_list=removal,
        )
        return tosca.dump(doc)

    # -- create --

    def create(
        self,
        name: str,
        *,
        template: str,
        site: str,
        inputs: Mapping[str, Any],
        wait: bool = True,
        timeout: float = 1800.0,
    ) -> ClusterView:
        check_name(name)
        # Credentials first: a refused auth file must not leave generated secrets behind for a cluster never made.
        client = self.client()
        self._refuse_changed_secrets(name, template, inputs)
        # Secrets kept for this name with no record: the registry lost it (state.db gone): IM may hold it.
        orphaned = tosca.SecretStore(self.home, name).path.exists()
        site_obj, resolved = self._prepare(name, template, site, inputs, keep_secrets=True)
        public = dict(resolved.public)
        fingerprint = self._fingerprint(template, site, public)
        with self._lock(name, "cluster create"), self._store() as store:
            rec = store.get_cluster(name)
            if rec is None and orphaned:
                rec = self._adopt_by_name(store, client, name)
            self._refuse_other_inputs(rec, name, fingerprint)
            if rec is None:
                deployment_id = new_deployment_id()
                doc = tosca.render(
                    template,
                    site_obj,
                    resolved,
                    cluster_name=name,
                    deployment_id=deployment_id,
                    inputs_hash=fingerprint,
                )
                text = tosca.dump(doc)
                rec = store.upsert_cluster(
                    name,
                    im_url=client.url,
                    template=template,
                    site=site,
                    inputs=public,
                    deployment_id=deployment_id,
                    inputs_hash=fingerprint,
                    state="new",
                    workers=int(public.get("wn_num", 0)),
                    secret_keys=resolved.secret_names,
                )
                store.append(name, Phase.RENDERED, {"template": template, "site": site})
            else:
                text = self._render_for(rec)
            if rec.infra_id is None:
                rec = self._submit(store, rec, text)
            else:
                self._check_exists(store, rec)
            if wait:
                return self._wait(store, rec, timeout)
            return self._view(store, rec)

    def _submit(self, store: Store, rec: Any, text: str) -> Any:
        """POST the template, or adopt what an earlier, interrupted POST created (found by deployment id)."""
        client = self.client(rec.im_url)
        found = self._find_deployment(store, client, rec.deployment_id) if self._submitted_before(store, rec) else None
        if found is None:
            store.append(rec.name, Phase.SUBMITTING, {"deployment_id": rec.deployment_id})
            try:
                infra_id = client.create(text, async_=True).infra_id
            except (IMUnreachable, IMTimeout, IMServerError) as exc:
                # The POST may have reached IM: look for it before saying anything.
                try:
                    found = self._find_deployment(store, client, rec.deployment_id)
                except IMError:
                    found = None
                if found is None:
                    exc.hint = (
                        f"run the same command again (or: provision cluster status {rec.name}); "
                        "the cluster is found by its deployment id and never created twice"
                    )
                    raise
                infra_id = found
                store.append(rec.name, Phase.ADOPTED, {"infra_id": infra_id, "deployment_id": rec.deployment_id})
            except (IMBadRequest, IMAuthError, IMForbidden) as exc:
                # IM refused the POST itself: nothing was created. Forget the cluster and the secrets made for it.
                store.append(rec.name, Phase.FAILED, {"reason": str(exc)[:500]})
                store.delete_cluster(rec.name)
                tosca.SecretStore(self.home, rec.name).delete()
                raise
        else:
            infra_id = found
            store.append(rec.name, Phase.ADOPTED, {"infra_id": infra_id, "deployment_id": rec.deployment_id})
        store.append(rec.name, Phase.INFRA_ID_KNOWN, {"infra_id": infra_id})
        return store.update_cluster(rec.name, infra_id=infra_id, state="pending")

    @staticmethod
    def _submitted_before(store: Store, rec: Any) -> bool:
        return any(entry.phase == Phase.SUBMITTING for entry in store.journal(rec.name))

    def _find_deployment(self, store: Store, client: IMClient, deployment_id: str) -> str | None:
        known = {r.infra_id for r in store.list_clusters() if r.infra_id}
        for infra_id in client.list_infrastructures():
            if infra_id in known:
                continue
            meta = self._metadata(client, infra_id)
            if meta.get(META_DEPLOYMENT) == deployment_id:
                return infra_id
        return None

    @staticmethod
    def _metadata(client: IMClient, infra_id: str) -> dict[str, Any]:
        try:
            doc = yaml.safe_load(client.tosca(infra_id))
        except (IMNotFound, IMBadRequest, yaml.YAMLError):
            return {}
        except IMError as exc:
            if getattr(exc, "status", None) == 403:
                return {}
            raise
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        return dict(meta) if isinstance(meta, dict) else {}

    def _check_exists(self, store: Store, rec: Any) -> None:
        try:
            self.client(rec.im_url).state(rec.infra_id)
        except IMNotFound:
            store.update_cluster(rec.name, state="gone")
            raise OperationFailed(
                f"cluster {rec.name!r}: its infrastructure {rec.infra_id} no longer exists in IM",
                hint=f"forget it with: provision cluster destroy {rec.name}",
            ) from None

    # -- waiting --

    def _wait(self, store: Store, rec: Any, timeout: float) -> ClusterView:
        client = self.client(rec.im_url)
        started = self._clock()
        store.append(rec.name, Phase.WAITING, {"timeout": timeout})
        last_refresh = self._clock()
        last_failure: list[str] = []  # what IM sent (or did not) to the last poll, when it was not a state

        def check() -> InfraState | None:
            try:
                st = client.state(rec.infra_id)
            except (IMUnreachable, IMTimeout, IMServerError) as exc:
                last_failure[:] = [exc.message]
                self._emit(rec.name, "im-unreachable", started)
                return None
            last_failure.clear()
            self._emit(rec.name, "waiting", started, st)
            return st if st.state in DONE_STATES else None

        def before_sleep(_: float) -> None:
            nonlocal last_refresh
            if self._clock() - last_refresh >= CREDENTIAL_REFRESH_EVERY:
                client.auth.refresh()
                last_refresh = self._clock()

        try:
            final = wait_until(
                check,
                timeout=timeout,
                clock=self._clock,
                sleep=self._sleep,
                rand=self._rand,
                before_sleep=before_sleep,
                what=f"cluster {rec.name!r} to be configured",
            )
        except OperationTimeout as exc:
            store.append(rec.name, Phase.TIMED_OUT, {"after": round(self._clock() - started, 3)})
            said = f"; the last poll failed: {last_failure[0]}" if last_failure else ""
            raise OperationTimeout(
                f"cluster {rec.name!r} was not configured within {timeout:g} s{said}",
                hint=f"IM is still working on it; resume with: provision cluster status {rec.name} --wait",
            ) from exc
        if final.state in FAILED_STATES:
            self._fail(store, rec, final)
        store.append(rec.name, Phase.CONFIGURED, {"state": final.state})
        return self._view(store, rec)

    def _fail(self, store: Store, rec: Any, final: InfraState) -> None:
        client = self.client(rec.im_url)
        try:
            log = client.contmsg(rec.infra_id)
        except IMError:
            log = ""
        task, _, reason = analyse_contmsg(log)
        found = triage.classify_text(log)
        if task is None and found is not None:
            reason = found.evidence  # the line that tells why beats the last line that says "error"
        failed_vms = sorted(vm for vm, st in final.vm_states.items() if st in FAILED_STATES)
        phase = Phase.UNCONFIGURED if final.state == "unconfigured" else Phase.FAILED
        store.append(
            rec.name,
            phase,
            {
                "state": final.state,
                "vms": failed_vms,
                "reason": (reason or "")[:500],
                "cause": found.cause.value if found else None,
            },
        )
        store.update_cluster(rec.name, state=final.state)
        vms = f" (VMs {', '.join(failed_vms)})" if failed_vms else ""
        error = OperationFailed(
            f"cluster {rec.name!r} ended {final.state}{vms}: {reason or 'IM gave no reason'}",
            hint=f"details: provision cluster logs {rec.name}; healthy VMs are kept, "
            f"replace a failed worker with: provision cluster scale {rec.name} --workers N --remove VMID",
        )
        error.evidence = log
        raise error

    # -- reading --

    def _live(self, rec: Any) -> tuple[InfraState, list[VMInfo]]:
        st = self.client(rec.im_url).state(rec.infra_id)
        return st, self._vms(rec)

    def _vms(self, rec: Any) -> list[VMInfo]:
        client = self.client(rec.im_url)
        vms = []
        for vm_id in client.vm_ids(rec.infra_id):
            # While IM is still launching (async create), a listed VM can vanish or not be readable yet.
            with contextlib.suppress(IMNotFound):
                vms.append(client.vm_info(rec.infra_id, vm_id))
        return vms

    def _view(self, store: Store, rec: Any, live: tuple[InfraState, list[VMInfo]] | None = None) -> ClusterView:
        st, vms = live or self._live(rec)
        views = [vm_view(vm) for vm in vms if vm.state not in GONE_VM_STATES]
        workers = sum(1 for vm in views if vm.role == WORKER)
        rec = store.update_cluster(
            rec.name, state=st.state, workers=workers, extra={**rec.extra, "vms": [asdict(v) for v in views]}
        )
        return self._from_record(rec, views)

    @staticmethod
    def _from_record(rec: Any, vms: list[VMView] | None = None, note: str | None = None) -> ClusterView:
        cached = vms if vms is not None else [VMView(**v) for v in rec.extra.get("vms", [])]
        return ClusterView(
            name=rec.name,
            infra_id=rec.infra_id,
            im_url=rec.im_url,
            template=rec.template,
            site=rec.site,
            state=rec.state,
            workers=rec.workers,
            vms=cached,
            deployment_id=rec.deployment_id,
            note=note,
        )

    def list_clusters(self) -> list[ClusterView]:
        """The registry (cached state: fast, no IM call). ``status`` reads IM."""
        with self._store() as store:
            return [self._from_record(rec) for rec in store.list_clusters()]

    def status(self, name: str, *, wait: bool = False, timeout: float = 1800.0) -> ClusterView:
        with self._store() as store:
            rec = self._record(store, name)
            if rec.im_url == EDGE_IM_URL:
                return self._from_record(
                    rec, note=f"edge cluster (K3s on your hosts): check it with: provision cluster verify {name}"
                )
            if rec.infra_id is None:
                # An interrupted create: find it in IM by its deployment id (under the lock), or say so.
                with self._lock(name, "cluster status"):
                    rec = self._record(store, name)
                    if rec.infra_id is None:
                        client = self.client(rec.im_url)
                        found = self._find_deployment(store, client, rec.deployment_id)
                        if found is None:
                            return self._from_record(
                                rec, [], note="not created in IM yet; run the same create command again"
                            )
                        store.append(name, Phase.ADOPTED, {"infra_id": found, "deployment_id": rec.deployment_id})
                        store.append(name, Phase.INFRA_ID_KNOWN, {"infra_id": found})
                        rec = store.update_cluster(name, infra_id=found, state="pending")
            if wait:
                return self._wait(store, rec, timeout)
            try:
                view = self._view(store, rec)
            except IMNotFound:
                rec = store.update_cluster(name, state="gone")
                return self._from_record(rec, [], note="the infrastructure no longer exists in IM")
        if view.state in FAILED_STATES and rec.infra_id is not None:
            with contextlib.suppress(IMError):
                cause = triage.classify_text(self.client(rec.im_url).contmsg(rec.infra_id))
                if cause is not None:
                    view = dataclasses.replace(view, cause=cause.as_dict())
        return view

    def outputs(self, name: str) -> dict[str, Any]:
        with self._store() as store:
            rec = self._record(store, name)
        if rec.infra_id is None:
            raise OperationFailed(f"cluster {name!r} has no infrastructure yet")
        return self.client(rec.im_url).outputs(rec.infra_id)

    def secret_values(self, name: str) -> list[str]:
        store = tosca.SecretStore(self.home, name)
        return [value for value in store.load().values() if value]

    def logs(self, name: str, vm: str | None = None) -> LogReport:
        with self._store() as store:
            rec = self._record(store, name)
        if rec.infra_id is None:
            raise OperationFailed(f"cluster {name!r} has no infrastructure yet")
        client = self.client(rec.im_url)
        log = client.vm_contmsg(rec.infra_id, vm) if vm is not None else client.contmsg(rec.infra_id)
        task, host, reason = analyse_contmsg(log)
        return LogReport(name, rec.infra_id, vm, log, task, host, reason, triage.classify_text(log))

    # -- scale --

    def scale(
        self, name: str, *, workers: int, remove: list[str] | None = None, wait: bool = True, timeout: float = 1800.0
    ) -> ClusterView:
        remove = _scale_args(workers, remove)  # bad input is refused before waiting for the lock
        with self._lock(name, "cluster scale"):
            return self.scale_locked(name, workers=workers, remove=remove, wait=wait, timeout=timeout)

    def scale_locked(
        self, name: str, *, workers: int, remove: list[str] | None = None, wait: bool = True, timeout: float = 1800.0
    ) -> ClusterView:
        """:meth:`scale` for a caller that already holds the cluster's lock (the autoscaler)."""
        remove = _scale_args(workers, remove)
        with self._store() as store:
            rec = self._record(store, name)
            if rec.infra_id is None:
                raise OperationFailed(f"cluster {name!r} has no infrastructure yet", hint="run create again first")
            st, vms = self._live(rec)
            live = [vm for vm in vms if role_of(vm) == WORKER and vm.state not in GONE_VM_STATES]
            live_ids = [vm.id for vm in live]
            pending = _unfinished_scale(store, name)
            if pending is not None:
                # A scale whose answer was lost (or whose CLI was killed): IM may have removed these already.
                already_gone = set(pending.get("remove") or []) - set(live_ids)
                remove = [v for v in remove if v not in already_gone]
            unknown = [v for v in remove if v not in live_ids]
            if unknown:
                raise InputError(
                    f"VM {', '.join(unknown)} is not a live worker of {name!r} "
                    f"(workers: {', '.join(live_ids) or 'none'})",
                    field="--remove",
                )
            current = len(live)
            if workers == current and not remove:
                if pending is not None or rec.inputs.get("wn_num") != workers:
                    # IM already has the asked count: finish the bookkeeping an interrupted scale left undone.
                    store.update_cluster(name, inputs={**rec.inputs, "wn_num": workers}, inputs_hash=rec.inputs_hash)
                    if pending is not None:
                        store.append(name, Phase.SCALED, {"workers": workers, "removed": [], "completed": True})
                    rec = self._record(store, name)
                    if pending is not None and wait:
                        return self._wait(store, rec, timeout)
                return self._view(store, rec, (st, vms))
            store.append(name, Phase.SCALING, {"from": current, "to": workers, "remove": remove})
            client = self.client(rec.im_url)
            # Which workers go: the named ones, then failed ones, then the newest. Always live ids only.
            going = list(remove)
            if current - len(going) > workers:
                failed = [vm.id for vm in live if vm.state in FAILED_STATES and vm.id not in going]
                rest = sorted((v for v in live_ids if v not in going and v not in failed), key=int, reverse=True)
                going += (failed + rest)[: current - len(going) - workers]
            try:
                if going:
                    # Shrink to the survivors first (this is also how a named worker is replaced at the same count).
                    client.add_resources(
                        rec.infra_id, self._render_for(rec, wn_count=current - len(going), removal=going)
                    )
                if workers > current - len(going):
                    client.add_resources(rec.infra_id, self._render_for(rec, wn_count=workers, removal=[]))
            except (IMUnreachable, IMTimeout, IMServerError) as exc:
                # The answer to a non-idempotent POST is lost: IM may or may not have applied it.
                exc.hint = (
                    "IM may have applied the scale before the answer was lost: run the same command again "
                    f"(it recounts the workers in IM and finishes the job), or see: provision cluster status {name}"
                )
                raise
            # The create fingerprint is kept: re-running the original create still resumes this cluster.
            store.update_cluster(name, inputs={**rec.inputs, "wn_num": workers}, inputs_hash=rec.inputs_hash)
            store.append(name, Phase.SCALED, {"workers": workers, "removed": going})
            rec = self._record(store, name)
            if wait:
                return self._wait(store, rec, timeout)
            return self._view(store, rec)

    def reconfigure(self, name: str, *, wait: bool = True, timeout: float = 1800.0) -> ClusterView:
        with self._lock(name, "cluster reconfigure"), self._store() as store:
            rec = self._record(store, name)
            if rec.infra_id is None:
                raise OperationFailed(f"cluster {name!r} has no infrastructure yet")
            self.client(rec.im_url).reconfigure(rec.infra_id)
            store.append(name, Phase.WAITING, {"reconfigure": True})
            if wait:
                return self._wait(store, rec, timeout)
            return self._view(store, rec)

    # -- credentials --

    def push_auth(self, name: str, new_client: IMClient, *, keep_old: bool = False) -> list[str]:
        """Make ``new_client``'s IM credential own the cluster's infrastructure (IM's authorization call).

        The request is made with the current credentials (which must still be accepted); then the new client must
        read the infrastructure. Returns IM's owners afterwards. For a refreshed token of the same identity
        (EGI Check-in), both clients usually carry the same fresh token.
        """
        with self._lock(name, "cluster auth"), self._store() as store:
            rec = self._record(store, name)
            if rec.infra_id is None:
                raise OperationFailed(f"cluster {name!r} has no infrastructure yet")
            new_auth = new_client.auth
            if not isinstance(new_auth, AuthData):
                raise InputError("the new credentials must come from an auth file", field="--new-auth")
            credential = {k: v for k, v in new_auth.im_credential.fields.items() if k not in ("id", "type")}
            self.client(rec.im_url).replace_authorization(rec.infra_id, credential, overwrite=not keep_old)
            try:
                new_client.state(rec.infra_id)
                owners = new_client.authorization(rec.infra_id)
            except IMError as exc:
                exc.hint = "IM took the call but the new credentials cannot read the infrastructure; check them"
                raise
            store.append(name, Phase.AUTH_PUSHED, {"keep_old": keep_old, "owners": len(owners)})
            return owners

    # -- destroy --

    def destroy(self, name: str, *, force: bool = False, attempts: int = 5) -> DestroyResult:
        """DELETE the infrastructure, then check it is gone (IM 2.0.0 can bring it back), then forget it.

        Destroys against one IM endpoint are serialized across processes. An edge cluster has no IM
        infrastructure: its record, secrets file and autoscale files are removed and its hosts are left as they are.
        """
        with self._lock(name, "cluster destroy"), self._store() as store:
            rec = self._record(store, name)
            if rec.im_url == EDGE_IM_URL:
                store.append(name, Phase.DESTROYED, {"edge": True, "note": "forgotten; K3s stays on the hosts"})
                store.delete_cluster(name)
                removed = ["registry record"]
                secrets = tosca.SecretStore(self.home, name)
                if secrets.delete():
                    removed.append(str(secrets.path))
                removed += _forget_autoscale(self.home, name)
                return DestroyResult(name, "edge", removed=removed, hosts_touched=False)
            client = self.client(rec.im_url)
            store.append(name, Phase.DESTROYING, {"infra_id": rec.infra_id, "force": force})
            infra_id = rec.infra_id
            if infra_id is None:
                with contextlib.suppress(IMError):
                    infra_id = self._find_deployment(store, client, rec.deployment_id)
            if infra_id is not None:
                with endpoint_lock(self.home, client.url, max(self.settings.lock_timeout, 600.0), purpose="destroy"):
                    for _ in range(attempts):
                        with contextlib.suppress(IMNotFound):
                            client.destroy(infra_id, force=force)
                        if infra_id not in client.list_infrastructures():
                            break
                        self._sleep(0.5)
                    else:
                        raise OperationFailed(
                            f"IM still lists infrastructure {infra_id} of {name!r} after {attempts} deletes",
                            hint=f"try again: provision cluster destroy {name} --force",
                        )
            store.append(name, Phase.DESTROYED, {"infra_id": infra_id})
            store.delete_cluster(name)
            removed = ["registry record", *_forget_autoscale(self.home, name)]
        secrets_path = tosca.SecretStore(self.home, name).path
        with contextlib.suppress(OSError):
            secrets_path.unlink()
            removed.append(str(secrets_path))
        return DestroyResult(name, "im", infra_id=infra_id, removed=removed)

    # -- ssh --

    def ssh_target(self, name: str, vm: str | None = None) -> tuple[VMInfo, VMInfo | None]:
        """The VM to reach (the front-end by default) and, for a worker without public IP, the jump host."""
        with self._store() as store:
            rec = self._record(store, name)
        if rec.infra_id is None:
            raise OperationFailed(f"cluster {name!r} has no infrastructure yet")
        _, vms = self._live(rec)
        front = next((v for v in vms if role_of(v) == FRONT), None)
        target = front if vm is None else next((v for v in vms if v.id == vm), None)
        if target is None:
            raise InputError(f"no VM {vm} in cluster {name!r} ({', '.join(v.id for v in vms)})", field="--vm")
        jump = front if target is not front and target.public_ip is None else None
        return target, jump

    def lock(self, name: str, purpose: str) -> contextlib.AbstractContextManager[Path]:
        """The cluster's cross-process lock (the one scale, destroy and install take)."""
        return self._lock(check_name(name), purpose)

    def record(self, name: str) -> Any:
        """The registry row of ``name`` (raises :class:`NotFound`)."""
        with self._store() as store:
            return self._record(store, name)

    def live_vms(self, name: str) -> list[VMInfo]:
        """The cluster's VMs as IM describes them now (not the deleting ones)."""
        rec = self.record(name)
        if rec.infra_id is None:
            raise OperationFailed(f"cluster {name!r} has no infrastructure yet", hint="run create again first")
        return [vm for vm in self._vms(rec) if vm.state not in GONE_VM_STATES]

    # -- sync --

    def sync(self) -> SyncReport:
        """Rebuild the registry from IM: adopt what this tool created, refresh known clusters, forget gone ones."""
        client = self.client()
        adopted: list[str] = []
        updated: list[str] = []
        forgotten: list[str] = []
        not_visible: list[str] = []
        moved: list[str] = []
        with self._store() as store:
            live = client.list_infrastructures()
            for rec in store.list_clusters():
                # An IM that moved: the records of another endpoint whose infrastructure this one holds (lists).
                if rec.im_url in (client.url, EDGE_IM_URL) or not rec.infra_id or rec.infra_id not in live:
                    continue
                store.update_cluster(rec.name, im_url=client.url)
                store.append(
                    rec.name, Phase.ADOPTED, {"infra_id": rec.infra_id, "by": "sync", "moved_from": rec.im_url}
                )
                moved.append(rec.name)
            by_infra = {rec.infra_id: rec for rec in store.list_clusters() if rec.infra_id}
            for infra_id in live:
                if infra_id in by_infra:
                    continue
                meta = self._metadata(client, infra_id)
                name = _cluster_of(meta)
                if name is None:
                    continue
                existing = store.get_cluster(name)
                if existing is not None and existing.infra_id not in (None, infra_id):
                    continue
                self._adopt(store, client, infra_id, meta, by="sync")
                adopted.append(name)
            for rec in store.list_clusters():
                if rec.im_url != client.url:
                    continue
                if rec.infra_id and rec.infra_id not in live:
                    # Not listed: forget it only when IM says it is gone (404), never for what these
                    # credentials may not see (403: another IM user, or one whose token changed).
                    try:
                        client.state(rec.infra_id)
                    except IMNotFound:
                        store.append(rec.name, Phase.FORGOTTEN, {"infra_id": rec.infra_id, "by": "sync"})
                        store.delete_cluster(rec.name)
                        forgotten.append(rec.name)
                        continue
                    except (IMForbidden, IMAuthError):
                        not_visible.append(rec.name)
                        continue
                if rec.infra_id:
                    with contextlib.suppress(IMNotFound):
                        self._view(store, rec)
                        if rec.name not in adopted:
                            updated.append(rec.name)
        return SyncReport(adopted=adopted, updated=updated, forgotten=forgotten, not_visible=not_visible, moved=moved)

    def _adopt(self, store: Store, client: IMClient, infra_id: str, meta: Mapping[str, Any], *, by: str) -> Any:
        """Record an infrastructure this tool created (found in IM by its metadata) as the cluster it names.

        The record carries what create compares (template, site and the create's fingerprint, from the metadata),
        so the same create command resumes it instead of refusing it.
        """
        name = str(meta[META_CLUSTER])
        template = str(meta.get(META_TEMPLATE, "unknown"))
        site = str(meta.get(META_SITE, "unknown"))
        public, secret = self._inputs_in_im(client, infra_id, template)
        if secret:
            # The values IM holds are the cluster's: later renders (scale) must send the same ones.
            tosca.SecretStore(self.home, name).update(secret)
        recorded = meta.get(META_INPUTS_HASH)
        fingerprint = recorded if isinstance(recorded, str) and recorded else self._fingerprint(template, site, public)
        workers = public.get("wn_num")
        rec = store.upsert_cluster(
            name,
            im_url=client.url,
            template=template,
            site=site,
            inputs=public,
            deployment_id=str(meta[META_DEPLOYMENT]),
            inputs_hash=fingerprint,
            infra_id=infra_id,
            state="unknown",
            workers=workers if isinstance(workers, int) else None,
        )
        store.append(name, Phase.ADOPTED, {"infra_id": infra_id, "by": by})
        return rec

    def _adopt_by_name(self, store: Store, client: IMClient, name: str) -> Any:
        """Before any POST for a cluster the registry does not know: this tool's infrastructure of that name in
        IM (a lost or rebuilt registry), adopted; None when IM has none."""
        known = {r.infra_id for r in store.list_clusters() if r.infra_id}
        for infra_id in client.list_infrastructures():
            if infra_id in known:
                continue
            meta = self._metadata(client, infra_id)
            if _cluster_of(meta) == name:
                return self._adopt(store, client, infra_id, meta, by="create")
        return None

    @staticmethod
    def _inputs_in_im(client: IMClient, infra_id: str, template: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The infrastructure's inputs as IM holds them: (public ones, non-empty secret ones)."""
        try:
            doc = yaml.safe_load(client.tosca(infra_id))
            schema = tosca.load_schema(template)
        except (IMError, yaml.YAMLError, InputError):
            return {}, {}
        inputs = (doc or {}).get("topology_template", {}).get("inputs", {}) or {}
        found = {
            key: spec.get("default") for key, spec in inputs.items() if key in schema.inputs and isinstance(spec, dict)
        }
        public = {key: value for key, value in found.items() if not schema.inputs[key].secret}
        secret = {
            key: value for key, value in found.items() if schema.inputs[key].secret and isinstance(value, str) and value
        }
        return public, secret

    def dry_run(self, name: str, *, template: str, site: str, inputs: Mapping[str, Any]) -> DryRunPlan:
        """What ``create`` would do, sending IM only a dry run: its refusals (with "dry run:"), or its plan."""
        check_name(name)
        self._refuse_changed_secrets(name, template, inputs, dry_run=True)
        site_obj, resolved = self._prepare(name, template, site, inputs, keep_secrets=False)
        with self._store() as store:
            rec = store.get_cluster(name)
        self._refuse_other_inputs(rec, name, self._fingerprint(template, site, dict(resolved.public)), dry_run=True)
        doc = tosca.render(template, site_obj, resolved, cluster_name=name, deployment_id="dry-run")
        tosca.validate_offline(doc)
        shown = tosca.dump(tosca.masked(doc, resolved.secret_values))
        if rec is not None and rec.infra_id is not None:
            # Same inputs as the recorded cluster: create resumes it and launches nothing.
            note = (
                f"cluster {name!r} exists with these inputs ({rec.infra_id}): create would resume it, launching nothing"
            )
            return DryRunPlan(name, template, site, [], shown, note=note)
        clouds = self.client(rec.im_url if rec is not None else None).dry_run(tosca.dump(doc))
        return DryRunPlan(name, template, site, [asdict(c) for c in clouds], shown)


def _cluster_of(meta: Mapping[str, Any]) -> str | None:
    """The cluster name in an infrastructure's metadata, when this tool created it."""
    name = meta.get(META_CLUSTER)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or META_DEPLOYMENT not in meta:
        return None
    return name


def _forget_autoscale(home: Path, name: str) -> list[str]:
    """A destroyed cluster's autoscale policy and cached kubeconfig go with it (a new cluster of the same name must
    not inherit them); its decision log stays, like its journal. Returns the paths of the files removed."""
    # The autoscaler builds on this module: imported when needed.
    from provisioner.autoscale.job import forget, policy_path
    from provisioner.autoscale.signals import kube_cache_path

    there = [str(path) for path in (policy_path(home, name), kube_cache_path(home, name)) if path.exists()]
    try:
        forget(home, name)
    except OSError:
        return []
    return there


def _unfinished_scale(store: Store, name: str) -> dict[str, Any] | None:
    """The detail of the cluster's latest ``scaling`` entry when no ``scaled`` followed it, else None."""
    for entry in reversed(store.journal(name, limit=50)):
        if entry.phase == Phase.SCALED:
            return None
        if entry.phase == Phase.SCALING:
            return dict(entry.detail or {})
    return None
