"""``provision workflow`` plan / apply / delete / list: an FDL's services across the OSCAR clusters it names.

One operation reads each cluster once (its services, and its ``/system/config`` for the MinIO credentials other
stages need), plans (:mod:`.plan`), journals the plan and each call before it is sent (journal name
``workflow:<name>``), then applies downstream stages first: a stage is sent once every stage it writes to is in
place, clusters in parallel, each cluster under its lock. A cluster that cannot be read or refuses a call fails
its own stages (and the stages that write into them); the others are applied, and the command fails naming it.
Killed at any point, the same command reads the clusters again and sends only what is still missing or
different: a POST that landed before the kill is seen as an existing service, never sent twice.

Credentials filled in (another cluster's MinIO keys) go to OSCAR only: never to the journal, the state database
or the output (the plan masks them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from provisioner.errors import InputError, NotFound, OperationFailed, ProvisionError
from provisioner.oscar.client import OscarClient
from provisioner.oscar.config import OscarAccess
from provisioner.redact import register_secret
from provisioner.secretcmd import run_secret_command
from provisioner.state.interface import StateStore, open_store
from provisioner.state.locks import cluster_lock
from provisioner.state.store import Phase, WorkflowRecord
from provisioner.workflow.fdl import AWS
from provisioner.workflow.files import Workflow, load_workflow
from provisioner.workflow.lambdas import lambda_definition
from provisioner.workflow.plan import Action, ServicePlan, WorkflowPlan, plan_services
from provisioner.workflow.targets import MINIO_NODE_PORT, Target, known_cluster_ids, resolve_targets

if TYPE_CHECKING:
    from provisioner.aws.s3 import S3Store

__all__ = ["ApplyResult", "WorkflowEngine"]

WORKFLOW_NAME_MAX = 63


def journal_name(name: str) -> str:
    return f"workflow:{name}"


def check_workflow_name(name: str) -> str:
    if not name or len(name) > WORKFLOW_NAME_MAX or not all(c.isalnum() or c in "-_." for c in name):
        raise InputError(
            f"must be 1-{WORKFLOW_NAME_MAX} letters, digits, '-', '_' or '.', got {name!r}", field="--name"
        )
    return name


@dataclass
class ApplyResult:
    """What a workflow ``apply`` or ``delete`` did against its plan: the calls sent, and why each service failed or
    was skipped and each cluster could not be read; ok only when nothing was left undone."""

    plan: WorkflowPlan
    done: list[ServicePlan] = field(default_factory=list)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # service -> why
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # cluster -> why
    missing_buckets: list[str] = field(default_factory=list)
    removed_buckets: list[str] = field(default_factory=list)  # "cluster: bucket" (delete --buckets)
    kept_buckets: list[str] = field(default_factory=list)  # "cluster: bucket (why)"

    @property
    def ok(self) -> bool:
        return not (self.failed or self.skipped or self.unreadable or self.missing_buckets)


@dataclass
class ClusterRead:
    """What one cluster answered, read once for the whole operation."""

    services: dict[str, dict[str, Any]] | None = None
    config: dict[str, Any] | None = None
    error: str | None = None


def _internal(endpoint: str) -> bool:
    """A MinIO endpoint only the cluster's pods can reach (a Kubernetes service name)."""
    host = urlsplit(endpoint).hostname or ""
    return "." not in host or host.endswith((".svc", ".svc.cluster.local", ".minio"))


class WorkflowEngine:
    def __init__(
        self,
        home: Path,
        *,
        verify: bool | str,
        timeout: float,
        lock_timeout: float,
        oscar_cli_config: Path,
        outputs_of: Callable[[str], Mapping[str, Any]],
        progress: Callable[[str], None] = lambda _line: None,
        client_for: Callable[[OscarAccess], OscarClient] | None = None,
    ) -> None:
        self.home = home
        self.verify = verify
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        self.oscar_cli_config = oscar_cli_config
        self.outputs_of = outputs_of
        self.progress = progress
        self._client_for = client_for
        self._record_lock = threading.Lock()

    def client(self, access: OscarAccess) -> OscarClient:
        if self._client_for is not None:
            return self._client_for(access)
        token_source = None
        if access.token_command is not None:
            command, where = access.token_command, f"cluster {access.cluster}: OIDC token ({access.source})"

            def token_source() -> str:
                return run_secret_command(command, where)

        return OscarClient(
            access.endpoint, user=access.user, password=access.password, token=access.token,
            verify=access.verify, timeout=self.timeout, token_source=token_source,
        )  # fmt: skip

    def record(self, store: StateStore, name: str) -> WorkflowRecord:
        """The record of workflow ``name``; :class:`~provisioner.errors.NotFound` when none was applied from here."""
        record = store.get_workflow(name)
        if record is None:
            raise NotFound(f"no workflow named {name!r} (see: provision workflow list)")
        return record

    # --- reading ------------------------------------------------------------------------------------------------

    def load(self, store: StateStore, path: Path) -> Workflow:
        workflow = load_workflow(path, known_clusters=known_cluster_ids(store, self.oscar_cli_config))
        for secret in workflow.fdl.secrets():
            register_secret(secret)
        return workflow

    def backend(self, target: Target) -> Any:
        """The client of one target: OSCAR's REST client, or (the pseudo-cluster ``aws``) the Lambda backend; both
        answer services(), config(), create_service(), update_service(), delete_service(), service_logs()."""
        if target.functions is not None:
            from provisioner.workflow.lambdas import LambdaBackend

            return LambdaBackend(
                target.functions, target.function_definitions or {}, verify=self.verify, timeout=self.timeout
            )
        return self.client(target.access)

    @staticmethod
    def aws_target(workflow: Workflow | None, owned: Iterable[tuple[str, str]]) -> Target | None:
        """The pseudo-cluster of the workflow's Lambda functions (those of its FDL and those it owns), if any."""
        from provisioner.workflow.lambdas import lambda_definition

        stages = [stage for stage in workflow.fdl.stages if stage.is_lambda] if workflow else []
        names = [stage.name for stage in stages] + sorted(s for c, s in owned if c == AWS)
        if not names:
            return None
        s3 = {"s3": dict(workflow.fdl.storage_providers.get("s3", {}))} if workflow else {}
        return Target(
            AWS,
            OscarAccess(AWS, "aws:lambda", source="AWS"),
            functions=tuple(dict.fromkeys(names)),
            function_definitions={stage.name: lambda_definition(stage, s3) for stage in stages},
        )

    def targets_for(self, store: StateStore, workflow: Workflow, record: WorkflowRecord | None) -> dict[str, Target]:
        """Every cluster the FDL's stages run on or write to, and those the workflow's record owns services on."""
        owned = record.owns() if record else set()
        extra = {cluster for cluster, _ in owned}
        ids = list(workflow.fdl.cluster_ids)
        for stage in workflow.fdl.stages:
            for spec in (*stage.inputs, *stage.outputs):
                if (
                    spec.kind == "minio"
                    and not spec.own
                    and spec.ref not in workflow.fdl.storage_providers.get("minio", {})
                ):
                    ids.append(spec.ref)
        ids += sorted(extra)
        found = resolve_targets(
            [i for i in ids if i != AWS],
            fdl=workflow.fdl,
            records={rec.name: rec for rec in store.list_clusters()},
            home=self.home,
            oscar_cli_config=self.oscar_cli_config,
            outputs_of=self.outputs_of,
            verify=self.verify,
        )
        aws = self.aws_target(workflow, owned)
        if aws is not None:
            found[AWS] = aws
        return found

    def owned_targets(self, store: StateStore, record: WorkflowRecord, workflow: Workflow | None) -> dict[str, Target]:
        """The clusters of a workflow's record (and of its FDL when it can still be read)."""
        if workflow is not None:
            return self.targets_for(store, workflow, record)
        found = resolve_targets(
            sorted({cluster for cluster, _ in record.owns() if cluster != AWS}),
            fdl=load_workflow_stub(record.source),
            records={rec.name: rec for rec in store.list_clusters()},
            home=self.home,
            oscar_cli_config=self.oscar_cli_config,
            outputs_of=self.outputs_of,
            verify=self.verify,
        )
        aws = self.aws_target(None, record.owns())
        if aws is not None:
            found[AWS] = aws
        return found

    def read_all(self, targets: Mapping[str, Target]) -> dict[str, ClusterRead]:
        def read(target: Target) -> ClusterRead:
            try:
                with self.backend(target) as client:
                    services = {str(s.get("name")): s for s in client.services()}
                    config = client.config()
                    minio = config.get("minio_provider") or {}
                    for key in ("access_key", "secret_key"):
                        if minio.get(key):
                            register_secret(str(minio[key]))
                    return ClusterRead(services, config)
            except ProvisionError as exc:
                return ClusterRead(error=str(exc))

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
            return dict(zip(targets, pool.map(read, targets.values()), strict=True))

    def minio_of(self, target: Target, read: ClusterRead) -> dict[str, Any]:
        """Cluster ``target``'s MinIO as another cluster's stage must be told it (reachable from outside)."""
        provider = dict((read.config or {}).get("minio_provider") or {})
        endpoint = str(provider.get("endpoint") or "")
        if not endpoint or _internal(endpoint):
            if target.front is None:
                raise OperationFailed(f"cluster {target.cluster}: its MinIO endpoint {endpoint!r} is not reachable")
            host = f"[{target.front}]" if ":" in target.front else target.front
            endpoint = f"http://{host}:{MINIO_NODE_PORT}"
        return {
            "endpoint": endpoint,
            "verify": bool(provider.get("verify", True)),
            "access_key": str(provider.get("access_key") or ""),
            "secret_key": str(provider.get("secret_key") or ""),
            "region": str(provider.get("region") or "us-east-1"),
        }

    def s3_of(self, minio: Mapping[str, Any]) -> S3Store:
        """An S3 client of a MinIO given as ``storage_providers.minio.<id>`` gives it (endpoint, keys, verify)."""
        from provisioner.aws.s3 import S3Access, S3Store

        verify = self.verify if minio.get("verify", True) else False
        access = S3Access(
            str(minio.get("endpoint") or ""),
            str(minio.get("access_key") or ""),
            str(minio.get("secret_key") or ""),
            str(minio.get("region") or "us-east-1"),
            verify,
        )
        return S3Store(access, timeout=self.timeout)

    def desired(
        self, workflow: Workflow, targets: Mapping[str, Target], reads: Mapping[str, ClusterRead]
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], str]]:
        """Each stage's definition with the storage providers it references filled in; stages that cannot be
        built (a referenced cluster unreadable) -> why."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        blocked: dict[tuple[str, str], str] = {}
        fdl_providers = workflow.fdl.storage_providers
        for stage in workflow.fdl.stages:
            body = {} if stage.is_lambda else workflow.definition(stage)
            providers: dict[str, dict[str, Any]] = {}
            try:
                for spec in (*stage.inputs, *stage.outputs):
                    if spec.own:
                        continue
                    given = fdl_providers.get(spec.kind, {}).get(spec.ref)
                    if given is not None:
                        providers.setdefault(spec.kind, {})[spec.ref] = dict(given)
                        continue
                    read = reads.get(spec.ref)
                    if read is None or read.config is None:
                        raise OperationFailed(
                            f"cluster {spec.ref} could not be read ({read.error if read else 'unknown'})"
                        )
                    providers.setdefault("minio", {})[spec.ref] = self.minio_of(targets[spec.ref], read)
            except OperationFailed as exc:
                blocked[stage.key] = str(exc)
                continue
            if stage.is_lambda:
                out[stage.key] = lambda_definition(stage, providers)
                continue
            if providers:
                body["storage_providers"] = providers
            out[stage.key] = body
        return out, blocked

    def plan(self, path: Path, name: str | None = None, *, prune: bool = False) -> tuple[WorkflowPlan, ApplyResult]:
        with open_store(self.home) as store:
            workflow, name, record, others, targets = self._prepare(store, path, name)
        return self._plan(workflow, name, record, others, targets, prune)[:2]

    def _prepare(
        self, store: StateStore, path: Path, name: str | None
    ) -> tuple[Workflow, str, WorkflowRecord | None, dict[tuple[str, str], str], dict[str, Target]]:
        """The FDL checked, the workflow's name and record, other workflows' services, and the clusters to read."""
        workflow = self.load(store, path)
        name = check_workflow_name(name or workflow.stem)
        record = store.get_workflow(name)
        targets = self.targets_for(store, workflow, record)
        return workflow, name, record, self._others(store, name), targets

    def _plan(
        self,
        workflow: Workflow,
        name: str,
        record: WorkflowRecord | None,
        others: dict[tuple[str, str], str],
        targets: dict[str, Target],
        prune: bool,
    ) -> tuple[WorkflowPlan, ApplyResult, dict[tuple[str, str], dict[str, Any]], dict[str, ClusterRead]]:
        reads = self.read_all(targets)
        desired, blocked = self.desired(workflow, targets, reads)
        current = {cluster: read.services for cluster, read in reads.items() if read.services is not None}
        owned = {(str(s["cluster"]), str(s["service"])): s for s in (record.services if record else [])}
        plan = plan_services(name, desired, current, owned=owned, others=others, prune=prune)
        result = ApplyResult(plan)
        for cluster, read in reads.items():
            if read.error is not None:
                result.unreadable[cluster] = read.error
        for key, why in blocked.items():
            result.skipped[key] = why
        return plan, result, desired, reads

    @staticmethod
    def _others(store: StateStore, name: str) -> dict[tuple[str, str], str]:
        return {key: rec.name for rec in store.list_workflows() if rec.name != name for key in rec.owns()}

    # --- applying -----------------------------------------------------------------------------------------------

    def apply(
        self, path: Path, name: str | None = None, *, prune: bool = False, wait: float | None = None
    ) -> ApplyResult:
        """Apply the FDL at ``path``; ``wait``: seconds to wait for every input bucket to exist (else checked once)."""
        with open_store(self.home) as store:
            workflow, name, record, others, targets = self._prepare(store, path, name)
            plan, result, desired, reads = self._plan(workflow, name, record, others, targets, prune)
            conflicts = plan.of(Action.CONFLICT)
            if conflicts:
                raise OperationFailed(
                    "; ".join(f"{c.cluster}/{c.service}: {c.note}" for c in conflicts),
                    hint="rename the service in this FDL, or delete the other workflow first",
                )
            store.append(
                journal_name(name),
                Phase.WORKFLOW_APPLYING,
                {
                    "source": str(path.resolve()),
                    "services": [
                        {"cluster": s.cluster, "service": s.service, "action": s.action.value, "digest": s.digest}
                        for s in plan.services
                    ],
                },
            )
            # What the record keeps: every service it owned (until removed) and every one of this FDL in place.
            kept: dict[tuple[str, str], dict[str, Any]] = {
                (str(s["cluster"]), str(s["service"])): dict(s) for s in (record.services if record else [])
            }
            for item in plan.of(Action.UNCHANGED):
                kept[item.key] = {"cluster": item.cluster, "service": item.service, "digest": item.digest,
                                  "keys": list(item.keys)}  # fmt: skip
            store.upsert_workflow(name, source=str(path.resolve()), services=list(kept.values()))
        with ThreadPoolExecutor(max_workers=1) as early:  # the S3 clients of the bucket check, made meanwhile
            made = early.submit(self._bucket_stores, workflow, targets, reads)
            self._send(workflow, name, plan, result, desired, targets, kept, str(path.resolve()))
            if prune:
                self._prune(name, plan, result, targets, kept, str(path.resolve()))
            stores = made.result()
        try:
            self._check_buckets(workflow, stores, result)
            if (
                wait is not None
                and result.missing_buckets
                and not (result.failed or result.skipped or result.unreadable)
            ):
                self._wait_buckets(workflow, stores, result, wait)
        finally:
            for s3 in stores.values():
                s3.close()
        with open_store(self.home) as store:
            store.append(
                journal_name(name),
                Phase.WORKFLOW_APPLIED if result.ok else Phase.SERVICE_FAILED,
                {"done": len(result.done), "failed": sorted(f"{c}/{s}" for c, s in result.failed)},
            )
        return result

    def _save(
        self, name: str, source: str, kept: dict[tuple[str, str], dict[str, Any]], store: StateStore | None = None
    ) -> None:
        """Record what the workflow owns now (on ``store`` when given, else on a store of its own)."""
        with self._record_lock:
            if store is not None:
                store.upsert_workflow(name, source=source, services=list(kept.values()))
                return
            with open_store(self.home) as own:
                own.upsert_workflow(name, source=source, services=list(kept.values()))

    def _send(
        self,
        workflow: Workflow,
        name: str,
        plan: WorkflowPlan,
        result: ApplyResult,
        desired: Mapping[tuple[str, str], Mapping[str, Any]],
        targets: Mapping[str, Target],
        kept: dict[tuple[str, str], dict[str, Any]],
        source: str,
    ) -> None:
        """Send the plan's writes, downstream first, in waves: a stage once every stage it writes to is in place;
        within a wave, clusters in parallel. Each cluster's lock, client and store are taken once, for all waves
        (locks in name order, so two applies never wait on each other crosswise)."""
        by_key = {item.key: item for item in plan.services}
        stages = {stage.key: stage for stage in workflow.fdl.stages}
        writes_to = {key: {e.target for e in workflow.flow.feeds(key) if e.target != key} for key in stages}
        placed = {key for key, item in by_key.items() if item.action is Action.UNCHANGED}
        pending = [key for key in workflow.flow.order if key in by_key and by_key[key].writes]
        for key in list(pending):
            if key in result.skipped or key[0] in result.unreadable:
                result.skipped.setdefault(key, f"cluster {key[0]} could not be read: {result.unreadable.get(key[0])}")
                pending.remove(key)
        with ExitStack() as stack:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, len({key[0] for key in pending}))))
            sessions: dict[str, tuple[Any, StateStore] | ProvisionError] = {}
            for cluster in sorted({key[0] for key in pending}):
                try:
                    stack.enter_context(
                        cluster_lock(self.home, cluster, self.lock_timeout, purpose=f"workflow apply {name}")
                    )
                    sessions[cluster] = (stack.enter_context(self.backend(targets[cluster])),
                                         stack.enter_context(open_store(self.home)))  # fmt: skip
                except ProvisionError as exc:
                    sessions[cluster] = exc
            while pending:
                ready = [key for key in pending if writes_to[key] <= placed]
                blocked = [key for key in pending if writes_to[key] & (set(result.failed) | set(result.skipped))]
                for key in blocked:
                    result.skipped[key] = "a stage it writes to is not in place"
                    pending.remove(key)
                ready = [key for key in ready if key in pending]
                if not ready:
                    for key in pending:
                        result.skipped[key] = "a stage it writes to is not in place"
                    break
                by_cluster: dict[str, list[tuple[str, str]]] = {}
                for key in ready:
                    by_cluster.setdefault(key[0], []).append(key)

                def run_cluster(cluster: str, keys: list[tuple[str, str]]) -> None:
                    session = sessions[cluster]
                    if isinstance(session, ProvisionError):
                        for key in keys:
                            result.failed.setdefault(key, str(session))
                        return
                    client, store = session
                    sent = False
                    try:
                        for key in keys:
                            item = by_key[key]
                            self._send_one(client, store, name, item, desired[key], result)
                            if key not in result.failed:
                                placed.add(key)
                                with self._record_lock:
                                    kept[key] = {
                                        "cluster": key[0], "service": key[1], "digest": item.digest,
                                        "keys": list(item.keys),
                                    }  # fmt: skip
                                sent = True
                    except ProvisionError as exc:
                        for key in keys:
                            if key not in placed:
                                result.failed.setdefault(key, str(exc))
                    finally:
                        # The record says what the workflow owns once per cluster and wave: a service sent and
                        # journaled but not yet recorded (killed in between) is found on its cluster by the next
                        # run, and adopted, never sent twice.
                        if sent:
                            self._save(name, source, kept, store)

                list(pool.map(lambda pair: run_cluster(*pair), by_cluster.items()))
                pending = [key for key in pending if key not in placed and key not in result.failed]

    def _send_one(
        self,
        client: OscarClient,
        store: StateStore,
        name: str,
        item: ServicePlan,
        definition: Mapping[str, Any],
        result: ApplyResult,
    ) -> None:
        detail = {"cluster": item.cluster, "service": item.service, "action": item.action.value,
                  "digest": item.digest}  # fmt: skip
        store.append(journal_name(name), Phase.SERVICE_SENDING, detail)
        self.progress(f"{item.action.value} {item.cluster}/{item.service}")
        try:
            if item.action is Action.CREATE:
                client.create_service(definition)
            else:
                client.update_service(definition)
        except ProvisionError as exc:
            store.append(journal_name(name), Phase.SERVICE_FAILED, {**detail, "error": str(exc)[:300]})
            result.failed[item.key] = str(exc)
            return
        store.append(journal_name(name), Phase.SERVICE_DONE, detail)
        result.done.append(item)

    def _prune(
        self,
        name: str,
        plan: WorkflowPlan,
        result: ApplyResult,
        targets: Mapping[str, Target],
        kept: dict[tuple[str, str], dict[str, Any]],
        source: str,
    ) -> None:
        for item in plan.of(Action.REMOVE):
            target = targets.get(item.cluster)
            if target is None or item.cluster in result.unreadable:
                result.failed[item.key] = f"cluster {item.cluster} could not be read"
                continue
            self._delete_one(name, target, item.service, result)
            if item.key not in result.failed:
                kept.pop(item.key, None)
                self._save(name, source, kept)

    def _delete_one(self, name: str, target: Target, service: str, result: ApplyResult) -> None:
        detail = {"cluster": target.cluster, "service": service, "action": "remove"}
        try:
            with (
                cluster_lock(self.home, target.cluster, self.lock_timeout, purpose=f"workflow {name}"),
                open_store(self.home) as store,
                self.backend(target) as client,
            ):
                store.append(journal_name(name), Phase.SERVICE_SENDING, detail)
                self.progress(f"remove {target.cluster}/{service}")
                client.delete_service(service)  # 404: already gone, which is what was asked
                store.append(journal_name(name), Phase.SERVICE_DONE, detail)
        except ProvisionError as exc:
            result.failed[(target.cluster, service)] = str(exc)
            return
        result.done.append(ServicePlan(target.cluster, service, Action.REMOVE))

    def _wait_buckets(
        self, workflow: Workflow, stores: Mapping[str, S3Store], result: ApplyResult, timeout: float
    ) -> None:
        """Check the input buckets again until all exist or ``timeout`` s have passed (then they stay missing)."""
        import contextlib
        import random
        import time

        from provisioner.errors import OperationTimeout
        from provisioner.polling import PollSchedule, wait_until

        def check() -> bool | None:
            result.missing_buckets.clear()
            self._check_buckets(workflow, stores, result)
            return True if not result.missing_buckets else None

        self.progress(f"waiting for {len(result.missing_buckets)} input bucket(s)")
        with contextlib.suppress(OperationTimeout):  # what is still missing stays in result.missing_buckets
            wait_until(
                check, timeout=timeout, clock=time.monotonic, sleep=time.sleep, rand=random.random,
                schedule=PollSchedule(initial=0.5, growth=0.1, cap=5.0), what="the input buckets",
            )  # fmt: skip

    def _bucket_stores(
        self, workflow: Workflow, targets: Mapping[str, Target], reads: Mapping[str, ClusterRead]
    ) -> dict[str, S3Store]:
        """An S3 client of each cluster's MinIO that some stage reads from (clusters that could not be read, or
        whose MinIO cannot be reached from here, have none)."""
        stores: dict[str, S3Store] = {}
        for cluster in dict.fromkeys(s.cluster for s in workflow.fdl.stages if any(i.own for i in s.inputs)):
            read = reads.get(cluster)
            if read is None or read.config is None or cluster not in targets:
                continue
            try:
                stores[cluster] = self.s3_of(self.minio_of(targets[cluster], read))
            except OperationFailed:
                continue
        return stores

    def _check_buckets(self, workflow: Workflow, stores: Mapping[str, S3Store], result: ApplyResult) -> None:
        """Every input bucket of a stage in place exists on its cluster's MinIO (OSCAR makes them on create): one
        ListBuckets per cluster, clusters in parallel."""
        wanted: dict[str, dict[str, str]] = {}  # cluster -> bucket -> the first stage reading it
        for stage in workflow.fdl.stages:
            if stage.is_lambda or stage.key in result.failed or stage.key in result.skipped:
                continue
            for spec in stage.inputs:
                if spec.own and stage.cluster in stores:
                    wanted.setdefault(stage.cluster, {}).setdefault(spec.bucket, stage.name)

        def check(cluster: str) -> list[str]:
            store, missing = stores[cluster], []
            try:
                listed = store.buckets()  # one request; a HEAD per bucket where listing is not allowed
                for bucket, reader in wanted[cluster].items():
                    if not (bucket in listed if listed is not None else store.bucket_exists(bucket)):
                        missing.append(f"{cluster}: bucket {bucket} (input of {reader})")
            except ProvisionError as exc:
                missing.append(f"{cluster}: buckets not checked: {exc}")
            return missing

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(wanted)))) as pool:
            for missing in pool.map(check, sorted(wanted)):
                result.missing_buckets.extend(missing)

    # --- deleting and listing ---------------------------------------------------------------------------------------

    def delete(self, name: str, *, buckets: bool = False) -> ApplyResult:
        """Delete the services workflow ``name`` owns, upstream first, then its record; ``buckets``: then the
        buckets its removed stages read and wrote on the clusters' MinIO, except those another service uses."""
        with open_store(self.home) as store:
            record = self.record(store, name)
            workflow: Workflow | None = None
            try:
                workflow = self.load(store, Path(record.source))
            except ProvisionError:
                workflow = None  # the FDL moved or changed: the record alone says what to remove
            targets = self.owned_targets(store, record, workflow)
        result = ApplyResult(WorkflowPlan(name, ()))
        kept = {(str(s["cluster"]), str(s["service"])): dict(s) for s in record.services}
        # Upstream first: a stage is removed before the stages it writes to.
        order = list(reversed(workflow.flow.order)) if workflow else []
        keys = [k for k in order if k in kept] + sorted(k for k in kept if k not in order)
        for key in keys:
            self._delete_one(name, targets[key[0]], key[1], result)
            if key not in result.failed:
                kept.pop(key)
                self._save(name, record.source, kept)
        if buckets and workflow is None:
            result.failed[("-", "buckets")] = f"its FDL {record.source} cannot be read: which buckets is not known"
        elif buckets and workflow is not None:
            removed = {key for key in keys if key not in kept}
            self._delete_buckets(name, workflow, targets, removed, result)
        with open_store(self.home) as store:
            if not kept:
                store.delete_workflow(name)
                store.append(journal_name(name), Phase.WORKFLOW_DELETED, {"services": len(keys)})
        return result

    def _delete_buckets(
        self,
        name: str,
        workflow: Workflow,
        targets: Mapping[str, Target],
        removed: set[tuple[str, str]],
        result: ApplyResult,
    ) -> None:
        wanted: dict[str, set[str]] = {}
        for stage in workflow.fdl.stages:
            if stage.key not in removed:
                continue
            for spec in (*stage.inputs, *stage.outputs):
                kind, ident = spec.target(stage.cluster)
                if kind == "minio" and ident in targets:
                    wanted.setdefault(ident, set()).add(spec.bucket)
        reads = self.read_all({cluster: targets[cluster] for cluster in wanted})
        for cluster, names in sorted(wanted.items()):
            read = reads[cluster]
            if read.services is None or read.config is None:
                result.failed[(cluster, "buckets")] = f"cluster {cluster} could not be read: {read.error}"
                continue
            used: dict[str, str] = {}
            for service in read.services.values():
                for entry in (*(service.get("input") or []), *(service.get("output") or [])):
                    if str(entry.get("storage_provider") or "minio") in ("minio", "minio.default"):
                        used.setdefault(str(entry.get("path") or "").strip("/").split("/", 1)[0], str(service["name"]))
            try:
                minio = self.minio_of(targets[cluster], read)
            except OperationFailed as exc:
                result.failed[(cluster, "buckets")] = str(exc)
                continue
            s3 = self.s3_of(minio)
            try:
                with open_store(self.home) as store:
                    for bucket in sorted(names):
                        if bucket in used:
                            result.kept_buckets.append(f"{cluster}: {bucket} (used by service {used[bucket]})")
                            continue
                        detail = {"cluster": cluster, "bucket": bucket, "action": "remove-bucket"}
                        store.append(journal_name(name), Phase.SERVICE_SENDING, detail)
                        self.progress(f"remove bucket {cluster}/{bucket}")
                        try:
                            s3.delete_bucket(bucket)
                        except ProvisionError as exc:
                            result.failed[(cluster, f"bucket {bucket}")] = str(exc)
                            continue
                        store.append(journal_name(name), Phase.SERVICE_DONE, detail)
                        result.removed_buckets.append(f"{cluster}: {bucket}")
            finally:
                s3.close()

    def list(self) -> list[WorkflowRecord]:
        with open_store(self.home) as store:
            return store.list_workflows()


def load_workflow_stub(source: str) -> Any:
    """An empty FDL for resolving the clusters of a workflow whose file is gone (registry and oscar-cli only)."""
    from provisioner.workflow.fdl import parse_fdl

    return parse_fdl("functions:\n  oscar: []\n", source)
