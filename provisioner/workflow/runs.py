"""``provision workflow`` status / run / invoke: what a workflow applied from here is doing, and using it.

Each operation opens the workflow's record and its FDL (the file it was applied from), resolves its clusters as
``apply`` does, and reads each cluster once (services and ``/system/config``). ``run`` uploads a file to the entry
stage's input on that cluster's MinIO (S3 API) and follows it (:mod:`.trace`): jobs from OSCAR's
``/system/logs/<service>`` (every page), objects from the MinIO each stage writes to. ``invoke`` calls a stage
through OSCAR's ``/run/<service>`` (or ``/job/<service>``) with the service's own token, read from OSCAR and
never shown.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from contextlib import closing as _closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.aws.s3 import S3Store
from provisioner.errors import InputError, NotFound, OperationFailed, OperationTimeout, ProvisionError
from provisioner.polling import PollSchedule, wait_until
from provisioner.redact import register_secret
from provisioner.state.interface import open_store
from provisioner.state.store import WorkflowRecord
from provisioner.workflow.engine import ClusterRead, WorkflowEngine
from provisioner.workflow.fdl import AWS, Stage
from provisioner.workflow.files import Workflow
from provisioner.workflow.plan import Action
from provisioner.workflow.targets import Target
from provisioner.workflow.trace import Step, Trace, lambda_invocations, new_jobs

__all__ = ["InvokeResult", "RunResult", "StageStatus", "WorkflowRuns"]

TRACE_SCHEDULE = PollSchedule(initial=0.2, growth=0.1, cap=2.0, jitter=0.1)
LOG_TAIL_LINES = 20


@dataclass
class StageStatus:
    """One stage (or a service the workflow owns that its FDL no longer has) as ``workflow status`` shows it: on
    OSCAR or not, as the FDL says or not, its input buckets and its jobs by state."""

    cluster: str
    service: str
    in_fdl: bool
    exists: bool | None  # None: the cluster could not be read
    matches: bool | None
    changed: list[str] = field(default_factory=list)  # fields that differ from the FDL
    buckets: dict[str, bool | None] = field(default_factory=dict)  # input bucket -> exists (None: not checked)
    jobs: dict[str, int] = field(default_factory=dict)  # OSCAR's job status -> count
    error: str | None = None

    def doc(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "service": self.service,
            "in_fdl": self.in_fdl,
            "exists": self.exists,
            "matches": self.matches,
            "changed": self.changed,
            "input_buckets": self.buckets,
            "jobs": self.jobs,
            "error": self.error,
        }


@dataclass
class RunResult:
    """What one ``workflow run`` saw: the file uploaded where the entry stage reads, its trace through the stages,
    the final outputs downloaded, and a failed job's log tail."""

    name: str
    entry: str  # cluster/service
    uploaded: str  # the object's label
    trace: Trace
    downloaded: list[str] = field(default_factory=list)
    failed_log: str | None = None  # the failed job's log tail
    unfollowed: list[str] = field(default_factory=list)  # outputs on stores this tool cannot read

    @property
    def ok(self) -> bool:
        return not self.trace.failed()

    def doc(self) -> dict[str, Any]:
        return {
            "workflow": self.name,
            "entry": self.entry,
            "uploaded": self.uploaded,
            "ok": self.ok,
            **self.trace.doc(),
            "downloaded": self.downloaded,
            "not_followed": self.unfollowed,
            "failed_log_tail": self.failed_log,
        }


@dataclass(frozen=True)
class InvokeResult:
    """What ``workflow invoke`` got from one call of a stage: its output, decoded (None for an asynchronous job),
    and how long the call took."""

    stage: str
    output: bytes | None  # None: asynchronous
    seconds: float


@dataclass
class _Opened:
    """A workflow opened for status, run or invoke: its record, its FDL (None when it cannot be read and is not
    needed), its clusters resolved, and what each answered when read once."""

    record: WorkflowRecord
    workflow: Workflow | None
    targets: dict[str, Target]
    reads: dict[str, ClusterRead]


def _stage_label(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


class WorkflowRuns:
    """Status, runs and invocations of the workflows an engine manages (clock and sleep injectable for tests)."""

    def __init__(
        self,
        engine: WorkflowEngine,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        waiting: Callable[[str, str], None] = lambda _key, _line: None,
    ) -> None:
        self.engine = engine
        self.waiting = waiting  # (what is awaited, a line saying so with the time): a live line, or throttled lines
        self.clock = clock
        self.sleep = sleep
        self.rand = rand

    # --- opening --------------------------------------------------------------------------------------------------

    def _open(self, name: str, *, read: bool = True, need_fdl: bool = True) -> _Opened:
        engine = self.engine
        with open_store(engine.home) as store:
            record = engine.record(store, name)
            workflow: Workflow | None = None
            try:
                workflow = engine.load(store, Path(record.source))
            except ProvisionError as exc:
                if need_fdl:
                    raise InputError(
                        f"workflow {name}: its FDL {record.source} cannot be read: {exc}",
                        field="NAME",
                        hint="apply the workflow again from its FDL where it is now",
                    ) from exc
            targets = engine.owned_targets(store, record, workflow)
        reads = engine.read_all(targets) if read else {}
        return _Opened(record, workflow, targets, reads)

    def _store_for(self, opened: _Opened, kind: str, ident: str) -> S3Store | None:
        """An S3 client of the store (kind, id), or None when this tool cannot read it."""
        if kind == "s3" and opened.workflow is not None:
            provider = opened.workflow.fdl.storage_providers.get("s3", {}).get(ident)
            if provider is None:
                return None
            from provisioner.aws.s3 import S3Access

            keys = (str(provider.get("access_key") or "") or None, str(provider.get("secret_key") or "") or None)
            access = S3Access(None, *keys, str(provider.get("region") or "us-east-1"), self.engine.verify)
            return S3Store(access, timeout=self.engine.timeout)
        if kind != "minio":
            return None
        target, read = opened.targets.get(ident), opened.reads.get(ident)
        if target is not None and read is not None and read.config is not None:
            return self.engine.s3_of(self.engine.minio_of(target, read))
        if opened.workflow is not None and ident in opened.workflow.fdl.storage_providers.get("minio", {}):
            return self.engine.s3_of(opened.workflow.fdl.storage_providers["minio"][ident])
        return None

    # --- status ---------------------------------------------------------------------------------------------------

    def status(self, name: str) -> list[StageStatus]:
        """Per stage (and per owned service no longer in the FDL): exists, matches, input buckets, jobs by state."""
        opened = self._open(name)
        engine = self.engine
        changes: dict[tuple[str, str], tuple[bool, list[str]]] = {}
        if opened.workflow is not None:
            from provisioner.workflow.plan import plan_services

            desired, _blocked = engine.desired(opened.workflow, opened.targets, opened.reads)
            current = {c: r.services for c, r in opened.reads.items() if r.services is not None}
            owned = {(str(s["cluster"]), str(s["service"])): s for s in opened.record.services}
            plan = plan_services(name, desired, current, owned=owned)
            for item in plan.services:
                if item.action in (Action.UNCHANGED, Action.UPDATE):
                    changes[item.key] = (item.action is Action.UNCHANGED, [c.field for c in item.changes])
        stages: list[tuple[tuple[str, str], Stage | None]] = []
        if opened.workflow is not None:
            stages = [(stage.key, stage) for stage in opened.workflow.fdl.stages]
        listed = {key for key, _ in stages}
        stages += [(key, None) for key in sorted(opened.record.owns()) if key not in listed]
        out: list[StageStatus] = []
        with ExitStack() as stack:
            stores: dict[str, S3Store | None] = {}
            for key, stage in stages:
                cluster, service = key
                read = opened.reads.get(cluster)
                status = StageStatus(cluster, service, in_fdl=stage is not None, exists=None, matches=None)
                out.append(status)
                if read is None or read.services is None:
                    status.error = f"cluster {cluster} could not be read: {read.error if read else 'unknown'}"
                    continue
                status.exists = service in read.services
                if not status.exists:
                    status.matches = False
                    continue
                if key in changes:
                    status.matches, status.changed = changes[key]
                try:
                    with engine.backend(opened.targets[cluster]) as client:
                        for job in client.service_logs(service).values():
                            state = str((job or {}).get("status") or "Unknown")
                            status.jobs[state] = status.jobs.get(state, 0) + 1
                    if stage is not None and cluster != AWS:  # a Lambda function has no MinIO to look in
                        if cluster not in stores:
                            store = self._store_for(opened, "minio", cluster)
                            stores[cluster] = stack.enter_context(_closing(store)) if store else None
                        s3 = stores[cluster]
                        for spec in stage.inputs:
                            if spec.own:
                                status.buckets[spec.bucket] = s3.bucket_exists(spec.bucket) if s3 else None
                except ProvisionError as exc:
                    status.error = str(exc)
        return out

    # --- run ------------------------------------------------------------------------------------------------------

    def _entry(self, workflow: Workflow, stage: str | None) -> Stage:
        entries = [s for s in workflow.fdl.stages if s.key in workflow.flow.entries and s.inputs]
        if stage is not None:
            found = [s for s in workflow.fdl.stages if stage in (s.name, s.label)]
            if not found:
                raise InputError(
                    f"no stage {stage!r} in the workflow (stages: {', '.join(s.label for s in workflow.fdl.stages)})",
                    field="--stage",
                )
            if len(found) > 1:
                raise InputError(f"{stage!r} names stages on several clusters: use CLUSTER/SERVICE", field="--stage")
            if not found[0].inputs:
                raise InputError(f"stage {found[0].label} has no input to upload to", field="--stage")
            return found[0]
        if not entries:
            raise InputError("the workflow has no entry stage with an input (every stage is fed by another)")
        if len(entries) > 1:
            raise InputError(
                f"the workflow has several entry stages ({', '.join(s.label for s in entries)}): choose one",
                field="--stage",
            )
        return entries[0]

    def run(
        self,
        name: str,
        source: Path,
        *,
        stage: str | None = None,
        download: Path | None = None,
        timeout: float = 600.0,
    ) -> RunResult:
        """Upload ``source`` where the entry stage reads and follow it to the final outputs."""
        if not source.is_file():
            raise InputError(f"no such file: {source}", field="--input")
        opened = self._open(name)
        workflow = opened.workflow
        assert workflow is not None  # _open(need_fdl=True) raised otherwise
        entry = self._entry(workflow, stage)
        spec = entry.inputs[0]
        for cluster in {s.cluster for s in workflow.fdl.stages}:
            read = opened.reads.get(cluster)
            if read is None or read.services is None:
                raise OperationFailed(f"cluster {cluster} could not be read: {read.error if read else 'unknown'}")
            missing = [s.name for s in workflow.fdl.stages if s.cluster == cluster and s.name not in read.services]
            if missing:
                raise OperationFailed(
                    f"workflow {name}: stage(s) {', '.join(missing)} not on cluster {cluster}",
                    hint=f"apply it first: provision workflow apply {workflow.path} --name {name}",
                )
        progress = self.engine.progress
        with ExitStack() as stack:
            stores: dict[tuple[str, str], S3Store | None] = {}

            def store_of(where: tuple[str, str]) -> S3Store | None:
                if where not in stores:
                    made = self._store_for(opened, *where)
                    stores[where] = stack.enter_context(_closing(made)) if made else None
                return stores[where]

            clients = {
                cluster: stack.enter_context(self.engine.backend(opened.targets[cluster]))
                for cluster in workflow.fdl.cluster_ids
            }
            # What is there before the upload: every stage's jobs, every output location's objects.
            jobs_before = {s.key: set(clients[s.cluster].service_logs(s.name)) for s in workflow.fdl.stages}
            outputs = _output_places(workflow)
            seen: dict[tuple[tuple[str, str], str, str], dict[str, tuple[int, float, str]]] = {}
            unfollowed: list[str] = []
            for place in outputs:
                s3 = store_of(place[0])
                if s3 is None:
                    unfollowed.append(f"{place[0][0]}.{place[0][1]}:{place[1]}/{place[2]}")
                    continue
                seen[place] = {o.key: (o.size, o.modified, o.etag) for o in s3.objects(place[1], place[2])}
            entry_store = spec.target(entry.cluster)
            s3 = store_of(entry_store)
            if s3 is None:
                raise InputError(f"stage {entry.label} reads {spec.provider}, which this tool cannot write to")
            key = f"{spec.key_prefix}/{source.name}" if spec.key_prefix else source.name
            trace = Trace(workflow.fdl)
            started = self.clock()
            uploaded_ms = int(time.time() * 1000) - 1000  # CloudWatch's clock: a second of slack
            s3.upload(source, spec.bucket, key)
            result = RunResult(name, entry.label, f"{entry_store[0]}.{entry_store[1]}:{spec.bucket}/{key}", trace)
            result.unfollowed = unfollowed
            progress(f"uploaded {source.name} to {result.uploaded}")
            trace.arrive(entry_store, spec.bucket, key)

            def check() -> bool | None:
                at = self.clock() - started
                for stage_key in sorted({step.stage for step in trace.waiting()}):
                    cluster, service = stage_key
                    if cluster == AWS:  # a Lambda function: its invocations from CloudWatch, since the upload
                        lines = clients[cluster].logs(service, since_ms=uploaded_ms)
                        fresh = new_jobs((), lambda_invocations(lines))
                    else:
                        fresh = new_jobs(jobs_before[stage_key], clients[cluster].service_logs(service))
                    before = {step.job: step.state for step in trace.steps if step.stage == stage_key}
                    finished = trace.see_jobs(stage_key, fresh, at)
                    for step in trace.steps:
                        if step.stage == stage_key and step.job and before.get(step.job) != step.state:
                            progress(f"{_stage_label(stage_key)}: job {step.job} {step.state}")
                    for step in finished:
                        if step.failed:
                            return True
                        self._collect(step, workflow, trace, seen, store_of)
                return True if not trace.waiting() else None

            try:
                wait_until(
                    check,
                    timeout=timeout,
                    clock=self.clock,
                    sleep=self.sleep,
                    rand=self.rand,
                    schedule=TRACE_SCHEDULE,
                    on_tick=lambda elapsed: self._tick(trace, elapsed),
                    what="the file to go through the workflow",
                )
            except OperationTimeout:
                waiting = ", ".join(
                    f"{_stage_label(s.stage)} ({'no job yet' if s.job is None else f'job {s.job} {s.state}'})"
                    for s in trace.waiting()
                )
                raise OperationTimeout(
                    f"timed out after {timeout:g} s following {result.uploaded}: still waiting for {waiting}",
                    hint=f"see provision workflow status {name}; a longer --timeout waits longer",
                ) from None
            failed = trace.failed()
            if failed:
                step = failed[0]
                try:
                    log = clients[step.stage[0]].job_log(step.stage[1], str(step.job))
                except ProvisionError as exc:
                    log = f"(its log could not be read: {exc})"
                result.failed_log = "\n".join(log.rstrip("\n").splitlines()[-LOG_TAIL_LINES:])
                return result
            if download is not None:
                result.downloaded = self._download(trace, download, store_of)
        return result

    def _tick(self, trace: Trace, elapsed: float) -> None:
        awaited = ", ".join(
            f"{_stage_label(s.stage)} ({'no job yet' if s.job is None else s.state})" for s in trace.waiting()
        )
        self.waiting(awaited, f"waiting for {awaited} ({elapsed:.0f} s since the upload)")

    def _collect(
        self,
        step: Step,
        workflow: Workflow,
        trace: Trace,
        seen: dict[tuple[tuple[str, str], str, str], dict[str, tuple[int, float, str]]],
        store_of: Callable[[tuple[str, str]], S3Store | None],
    ) -> None:
        """The objects ``step``'s job wrote: what is new at its stage's outputs; each starts the stages reading it."""
        stage = next(s for s in workflow.fdl.stages if s.key == step.stage)
        for spec in stage.outputs:
            place = (spec.target(stage.cluster), spec.bucket, spec.key_prefix)
            s3 = store_of(place[0])
            if s3 is None or place not in seen:
                continue
            known = seen[place]
            for obj in s3.objects(place[1], place[2]):
                if known.get(obj.key) == (obj.size, obj.modified, obj.etag):
                    continue
                known[obj.key] = (obj.size, obj.modified, obj.etag)
                step.outputs.append(f"{place[0][0]}.{place[0][1]}:{place[1]}/{obj.key}")
                started = trace.arrive(place[0], place[1], obj.key)
                self.engine.progress(
                    f"{stage.label} wrote {place[1]}/{obj.key}"
                    + (f" -> {', '.join(_stage_label(s.stage) for s in started)}" if started else " (final output)")
                )

    @staticmethod
    def _download(trace: Trace, folder: Path, store_of: Callable[[tuple[str, str]], S3Store | None]) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        names = [key.rsplit("/", 1)[-1] for _store, _bucket, key in trace.finals]
        got: list[str] = []
        for (where, bucket, key), name in zip(trace.finals, names, strict=True):
            s3 = store_of(where)
            if s3 is None:
                continue
            target = folder / (name if names.count(name) == 1 else f"{bucket}/{key}")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download(bucket, key, target)
            got.append(str(target))
        return got

    # --- invoke ---------------------------------------------------------------------------------------------------

    def invoke(self, name: str, stage: str, data: bytes | None, *, asynchronous: bool = False) -> InvokeResult:
        """Call ``stage`` (SERVICE or CLUSTER/SERVICE) with ``data``: ``/run`` (or ``/job``) with its token."""
        opened = self._open(name, read=False, need_fdl=False)
        owned = sorted(opened.record.owns())
        found = [key for key in owned if stage in (key[1], _stage_label(key))]
        if not found:
            raise NotFound(
                f"workflow {name} has no stage {stage!r} (stages: {', '.join(_stage_label(k) for k in owned) or '-'})"
            )
        if len(found) > 1:
            raise InputError(f"{stage!r} names stages on several clusters: use CLUSTER/SERVICE", field="STAGE")
        cluster, service = found[0]
        body = base64.b64encode(data or b"")
        with self.engine.backend(opened.targets[cluster]) as client:
            definition = client.get_service(service)
            if definition is None:
                raise NotFound(f"service {service} is not on cluster {cluster} (apply the workflow again)")
            token = str(definition.get("token") or "")
            if not token:
                raise OperationFailed(f"OSCAR did not give service {service}'s token")
            register_secret(token)
            begin = self.clock()
            if asynchronous:
                client.job_service(service, body, token=token)
                return InvokeResult(_stage_label(found[0]), None, self.clock() - begin)
            answer = client.run_service(service, body, token=token)
            seconds = self.clock() - begin
        return InvokeResult(_stage_label(found[0]), _decoded(answer), seconds)


def _decoded(answer: bytes) -> bytes:
    """OSCAR's synchronous answer: the output file base64-encoded by the supervisor, or plain text."""
    text = answer.strip()
    if not text:
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return answer


def _output_places(workflow: Workflow) -> list[tuple[tuple[str, str], str, str]]:
    """Every (store, bucket, key prefix) some stage writes to."""
    places: dict[tuple[tuple[str, str], str, str], None] = {}
    for stage in workflow.fdl.stages:
        for spec in stage.outputs:
            places[(spec.target(stage.cluster), spec.bucket, spec.key_prefix)] = None
    return list(places)
