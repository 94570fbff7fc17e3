"""``provision continuum`` up / plan / status / down: the clusters of a continuum file, their add-ons, its workflow.

``up`` plans every cluster from the registry, the kept secrets and the continuum's journal (:mod:`.plan`, the
same as ``plan`` shows), refuses before anything is sent when a cluster exists with other inputs, then works on
every cluster in parallel (a thread each): create or resume it (:meth:`Lifecycle.create`, which finds an
interrupted create in IM by its deployment id and never makes a second infrastructure), record its OSCAR URL,
install its add-ons (an edge cluster: ``edge create``, or only its preflight); then, when every cluster it needs
is up, applies the workflow (:meth:`WorkflowEngine.apply`, which sends only what OSCAR does not have yet). Each
step is journaled under ``continuum:<name>`` before it starts and when it ends; a step done before with the same
inputs is not redone, so killed anywhere, ``up`` again converges. One cluster failing leaves the others as they
are: its step is journaled failed with the error's triage cause and runbook, and the workflow is skipped if it
needs that cluster. ``down`` deletes the workflow, then destroys every cluster (each checked gone from IM; an
edge cluster is only forgotten). Nothing here prints: lines go to ``progress``, results are returned as data.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.continuum.plan import (
    Action,
    LegPlan,
    Membership,
    Step,
    last_outcomes,
    left_behind,
    membership,
    membership_of,
    plan_leg,
    since_last_down,
)
from provisioner.continuum.spec import ContinuumInvalid, ContinuumSpec, Leg, journal_name
from provisioner.errors import InputError, NotFound, ProvisionError
from provisioner.model import ClusterKind
from provisioner.privfs import ensure_private_dir, write_secret_file
from provisioner.redact import mask
from provisioner.state import ClusterRecord, JournalEntry, Phase, cluster_lock, has_state, open_store
from provisioner.tosca import SecretStore
from provisioner.triage import Cause, Triage, classify_error

if TYPE_CHECKING:
    from provisioner.addons import Stack
    from provisioner.lifecycle import Lifecycle
    from provisioner.workflow.engine import ApplyResult, WorkflowEngine

__all__ = ["ContinuumEngine", "DownResult", "LegResult", "PlanReport", "Services", "StatusReport", "UpResult"]

FALLBACK_RUNBOOK = "continuum"  # a failure triage cannot class: the continuum's own page (what to type next)
CONTINUUM_DIR = "continuum"  # under PROVISION_HOME: continuum/<name>/ holds the inline FDL a workflow was applied from


@dataclass(frozen=True)
class Services:
    """How the engine gets the services it drives (the CLI builds them from its settings and progress displays)."""

    lifecycle: Callable[[str], Lifecycle]  # a Lifecycle for the work on one cluster (closed by the engine)
    stack: Callable[[Lifecycle, str], Stack]  # the add-on service over that Lifecycle, for that cluster
    workflow: Callable[[], WorkflowEngine]


@dataclass(frozen=True)
class Options:
    """up's waits: IM's (per cluster), SSH's and the Ansible run's (per install)."""

    timeout: float = 1800.0
    ssh_timeout: float = 600.0
    playbook_timeout: float = 3600.0


@dataclass
class LegResult:
    """What ``up`` did to one cluster of the continuum: each step done, skipped or failed, and for a failure the
    error, its exit code and its triage with the runbook to open."""

    id: str
    kind: str
    action: str
    ok: bool = True
    state: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # {step, outcome: done|skipped|failed, note}
    failed_step: str | None = None
    error: str | None = None
    exit_code: int | None = None
    cause: dict[str, str] | None = None  # the triage of the failure (cause, summary, evidence, runbook, file)
    runbook: str | None = None

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "action": self.action,
            "ok": self.ok,
            "state": self.state,
            "steps": self.steps,
            "failed_step": self.failed_step,
            "error": self.error,
            "cause": self.cause,
            "runbook": self.runbook,
        }


@dataclass
class WorkflowOutcome:
    """What ``up`` did with the continuum's workflow: applied (the changes sent to OSCAR), failed with its triage,
    or skipped because a cluster it needs failed."""

    name: str
    status: str  # applied | failed | skipped
    reason: str | None = None
    sent: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)  # the clusters it failed on (or that it needed and failed)
    cause: dict[str, str] | None = None
    runbook: str | None = None

    def doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "sent": self.sent,
            "clusters": self.clusters,
            "cause": self.cause,
            "runbook": self.runbook,
        }


@dataclass
class UpResult:
    """What one ``continuum up`` did: each cluster's result in the file's order, the workflow's outcome, and what an
    earlier up declared that the file no longer names (left as it is)."""

    name: str
    legs: list[LegResult]
    workflow: WorkflowOutcome | None
    left_clusters: list[str] = field(default_factory=list)
    left_workflow: str | None = None

    @property
    def ok(self) -> bool:
        return all(leg.ok for leg in self.legs) and (self.workflow is None or self.workflow.status == "applied")

    @property
    def failed(self) -> list[LegResult]:
        return [leg for leg in self.legs if not leg.ok]

    def doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "clusters": [leg.doc() for leg in self.legs],
            "workflow": self.workflow.doc() if self.workflow else None,
            "left": {"clusters": self.left_clusters, "workflow": self.left_workflow},
        }


@dataclass
class PlanReport:
    """What ``continuum plan`` shows, and ``up`` would do: each cluster's plan, the workflow's, what is left
    behind, and the refusals ``up`` would stop at before sending anything."""

    name: str
    source: str
    legs: list[LegPlan]
    workflow: dict[str, Any] | None
    left_clusters: list[str] = field(default_factory=list)
    left_workflow: str | None = None

    @property
    def refusals(self) -> list[str]:
        return [p.refusal for p in self.legs if p.refusal]

    def doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "clusters": [p.doc() for p in self.legs],
            "workflow": self.workflow,
            "left": {"clusters": self.left_clusters, "workflow": self.left_workflow},
            "up_refuses": self.refusals,
        }


@dataclass
class StatusReport:
    """What ``continuum status`` shows of the clusters and workflow the latest ``up`` declared: each one's state
    now (from IM or the registry), its last step, and how that ``up`` ended."""

    name: str
    source: str
    clusters: list[dict[str, Any]]
    workflow: dict[str, Any] | None
    last_up: dict[str, Any] | None

    def doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "clusters": self.clusters,
            "workflow": self.workflow,
            "last_up": self.last_up,
        }


@dataclass
class DownResult:
    """What ``continuum down`` did: the workflow deleted first, then each cluster destroyed (an edge one forgotten),
    or all kept when the workflow could not be deleted (without ``--force``)."""

    name: str
    workflow: dict[str, Any] | None  # {name, status: deleted|absent|failed, deleted: [...], reason}
    clusters: list[dict[str, Any]]  # {id, kind, status: destroyed|forgotten|absent|failed|kept, ...}
    ok: bool = True

    def doc(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "workflow": self.workflow, "clusters": self.clusters}


class _StepFailed(Exception):
    """A leg's step failed (already journaled and noted on the leg): the leg stops there."""


class ContinuumEngine:
    def __init__(
        self,
        home: Path,
        services: Services,
        *,
        lock_timeout: float,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.home = home
        self.services = services
        self.lock_timeout = lock_timeout
        self.progress = progress

    # --- reading ------------------------------------------------------------------------------------------------

    def _read(self, name: str) -> tuple[dict[str, ClusterRecord], list[JournalEntry]]:
        """The registry and the continuum's journal; nothing (and no state database made) when there is none."""
        if not has_state(self.home):
            return {}, []
        with open_store(self.home) as store:
            return {r.name: r for r in store.list_clusters()}, store.journal(journal_name(name))

    def plan_legs(
        self, spec: ContinuumSpec, records: dict[str, ClusterRecord], entries: Sequence[JournalEntry]
    ) -> list[LegPlan]:
        since = since_last_down(entries)
        return [
            plan_leg(
                leg,
                records.get(leg.id),
                kept_secrets=SecretStore(self.home, leg.id).load() if leg.kind is ClusterKind.IM else {},
                entries=since,
            )
            for leg in spec.legs
        ]

    @staticmethod
    def refuse(spec: ContinuumSpec, plans: Sequence[LegPlan]) -> None:
        """Raise :class:`ContinuumInvalid` (exit 2) naming each cluster up refuses to touch, at its line."""
        problems = [
            f"{spec.path}:{spec.leg(p.id).line}: clusters.{p.id}: {p.refusal}" for p in plans if p.refusal is not None
        ]
        if problems:
            raise ContinuumInvalid(problems)

    def _journal(self, name: str, phase: Phase, detail: dict[str, Any]) -> None:
        with open_store(self.home) as store:
            store.append(journal_name(name), phase, detail)

    def _lock(self, name: str, purpose: str) -> contextlib.AbstractContextManager[Path]:
        return cluster_lock(self.home, journal_name(name), self.lock_timeout, purpose=purpose)

    def inline_path(self, name: str, workflow: str) -> Path:
        return self.home / CONTINUUM_DIR / name / f"{workflow}.yaml"

    # --- plan ---------------------------------------------------------------------------------------------------

    def plan(self, spec: ContinuumSpec) -> PlanReport:
        """What up would do: per cluster create/resume/exists/changed with the inputs that differ, the add-ons it
        would install, the OSCAR URL it would record; then the workflow's plan when its clusters exist."""
        records, entries = self._read(spec.name)
        plans = self.plan_legs(spec, records, entries)
        left, left_workflow = left_behind(membership(spec.name, entries), spec)
        report = PlanReport(spec.name, str(spec.path), plans, None, [c for c in left if c in records], left_workflow)
        if spec.workflow is not None:
            report.workflow = self._plan_workflow(spec, records, plans)
        return report

    def _plan_workflow(
        self, spec: ContinuumSpec, records: dict[str, ClusterRecord], plans: Sequence[LegPlan]
    ) -> dict[str, Any]:
        workflow = spec.workflow
        assert workflow is not None
        by_id = {p.id: p for p in plans}
        doc: dict[str, Any] = {
            "name": workflow.name,
            "planned": False,
            "services": [],
            "unreadable_clusters": {},
            "note": "",
        }
        ready = (Action.EXISTS, Action.INSTALLED)  # up has nothing to do to them (an OSCAR URL to record aside)
        waiting = sorted(
            ident
            for ident in workflow.needs
            if ident not in records or by_id[ident].action not in ready or by_id[ident].endpoint
        )
        if waiting:
            doc["note"] = f"planned against OSCAR once its clusters are up: {', '.join(waiting)}"
            doc["services"] = [
                {
                    "cluster": label.split("/", 1)[0],
                    "service": label.split("/", 1)[1],
                    "action": "create",
                    "changes": [],
                    "note": "after the clusters",
                }
                for label in workflow.stages
            ]
            return doc
        with self._fdl_file(spec, keep=False) as path:
            try:
                planned, result = self.services.workflow().plan(path, workflow.name)
            except InputError:
                raise
            except ProvisionError as exc:
                doc["note"] = f"could not be planned: {mask(str(exc))}"
                return doc
        doc["planned"] = True
        doc["services"] = [
            {
                "cluster": item.cluster,
                "service": item.service,
                "action": item.action.value,
                "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in item.changes],
                "note": item.note,
            }
            for item in planned.services
        ]
        doc["unreadable_clusters"] = {c: mask(why) for c, why in result.unreadable.items()}
        return doc

    @contextlib.contextmanager
    def _fdl_file(self, spec: ContinuumSpec, *, keep: bool) -> Iterator[Path]:
        """The workflow's FDL as a file the workflow engine loads: the file given, or the inline FDL written out
        (``keep``: under PROVISION_HOME/continuum/<name>/, where apply's record points; else a scratch copy)."""
        workflow = spec.workflow
        assert workflow is not None
        if workflow.fdl is not None:
            yield workflow.fdl
            return
        assert workflow.inline_text is not None
        if keep:
            path = self.inline_path(spec.name, workflow.name)
            ensure_private_dir(path.parent)
            write_secret_file(path, workflow.inline_text)  # it may hold storage credentials
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="continuum-plan-") as scratch:
            path = Path(scratch) / f"{workflow.name}.yaml"
            write_secret_file(path, workflow.inline_text)
            yield path

    # --- up -----------------------------------------------------------------------------------------------------

    def up(self, spec: ContinuumSpec, options: Options | None = None) -> UpResult:
        options = options or Options()
        with self._lock(spec.name, "continuum up"):
            records, entries = self._read(spec.name)
            plans = self.plan_legs(spec, records, entries)
            self.refuse(spec, plans)  # before anything is sent or journaled
            left, left_workflow = left_behind(membership(spec.name, entries), spec)
            with contextlib.ExitStack() as stack:
                fdl = stack.enter_context(self._fdl_file(spec, keep=True)) if spec.workflow is not None else None
                self._journal(
                    spec.name,
                    Phase.CONTINUUM_UP,
                    {
                        "source": str(spec.path),
                        "clusters": membership_of(spec),
                        "workflow": spec.workflow.name if spec.workflow else None,
                        "fdl": str(fdl) if fdl is not None else None,
                    },
                )
                legs = self._run_legs(spec, plans, options)
                outcome = self._apply_workflow(spec, fdl, legs) if spec.workflow is not None and fdl else None
            result = UpResult(
                spec.name,
                [legs[leg.id] for leg in spec.legs],
                outcome,
                [c for c in left if c in records],
                left_workflow,
            )
            self._journal(
                spec.name,
                Phase.CONTINUUM_UP_ENDED,
                {
                    "ok": result.ok,
                    "failed": [leg.id for leg in result.failed],
                    "workflow": outcome.status if outcome else None,
                    "workflow_reason": outcome.reason if outcome else None,
                },
            )
        return result

    def _run_legs(self, spec: ContinuumSpec, plans: Sequence[LegPlan], options: Options) -> dict[str, LegResult]:
        """Every leg in a thread of its own (daemon threads: Ctrl-C ends the command at once, as a kill would)."""
        results: dict[str, LegResult] = {}
        crashed: list[BaseException] = []
        by_id = {p.id: p for p in plans}

        def work(leg: Leg) -> None:
            try:
                results[leg.id] = self._leg(spec.name, leg, by_id[leg.id], options)
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread below
                crashed.append(exc)

        threads = [
            threading.Thread(target=work, args=(leg,), name=f"continuum-{leg.id}", daemon=True) for leg in spec.legs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if crashed:
            raise crashed[0]
        return results

    def _step(
        self,
        name: str,
        result: LegResult,
        step: Step,
        work: Callable[[], dict[str, Any]],
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Journal ``step``, run ``work`` (which returns what to journal with its end), journal how it ended; a
        failure is triaged, noted on ``result`` and raised as :class:`_StepFailed`."""
        start = {"cluster": result.id, "step": step.value, **(detail or {})}
        self._journal(name, Phase.CONTINUUM_STEP, start)
        action = f" ({detail['action']})" if detail and "action" in detail else ""
        self.progress(f"{result.id}: {step.value}{action}")
        try:
            done = work()
        except ProvisionError as exc:
            found = classify_error(exc)
            error = mask(str(exc))
            result.ok = False
            result.failed_step = step.value
            result.error = error
            result.exit_code = exc.exit_code
            result.cause = found.as_dict() if found else None
            result.runbook = found.runbook if found else (None if isinstance(exc, InputError) else FALLBACK_RUNBOOK)
            result.steps.append({"step": step.value, "outcome": "failed", "note": error})
            self._journal(
                name,
                Phase.CONTINUUM_STEP_FAILED,
                {
                    **start,
                    "error": error[:500],
                    "cause": found.cause.value if found else None,
                    "runbook": result.runbook,
                },
            )
            self.progress(f"{result.id}: {step.value} failed: {error.splitlines()[0] if error else ''}")
            raise _StepFailed from exc
        self._journal(name, Phase.CONTINUUM_STEP_DONE, {**start, **done})
        result.steps.append({"step": step.value, "outcome": "done", "note": str(done.get("note") or "")})

    @staticmethod
    def _skipped(result: LegResult, step: Step, note: str) -> None:
        result.steps.append({"step": step.value, "outcome": "skipped", "note": note})

    def _leg(self, name: str, leg: Leg, plan: LegPlan, options: Options) -> LegResult:
        result = LegResult(leg.id, leg.kind.value, plan.action.value, state=plan.state)
        lc = self.services.lifecycle(leg.id)
        try:
            if leg.kind is ClusterKind.IM:
                self._im_leg(name, leg, plan, lc, result, options)
            else:
                self._edge_leg(name, leg, plan, lc, result)
        except _StepFailed:
            pass
        finally:
            lc.close()
        return result

    def _im_leg(self, name: str, leg: Leg, plan: LegPlan, lc: Lifecycle, result: LegResult, options: Options) -> None:
        def create() -> dict[str, Any]:
            view = lc.create(
                leg.id, template=leg.template, site=leg.site, inputs=leg.inputs, wait=True, timeout=options.timeout
            )
            result.state = view.state
            return {"infra_id": view.infra_id, "state": view.state, "note": f"{view.state}"}

        self._step(name, result, Step.CLUSTER, create, {"action": plan.action.value})
        self._endpoint(name, leg, plan, lc, result)
        if not leg.components:
            return
        if not plan.install:
            self._skipped(result, Step.INSTALL, f"installed: {', '.join(plan.installed)}")
            return

        def install() -> dict[str, Any]:
            report = self.services.stack(lc, leg.id).install(leg.id, list(leg.components))
            return {"components": report.components, "run_id": report.run_id, "note": ", ".join(report.components)}

        self._step(name, result, Step.INSTALL, install, {"components": list(leg.components)})

    def _endpoint(self, name: str, leg: Leg, plan: LegPlan, lc: Lifecycle, result: LegResult) -> None:
        url = leg.oscar_url
        if url is None:
            return
        if lc.record(leg.id).extra.get("oscar_url") == url:
            self._skipped(result, Step.ENDPOINT, f"OSCAR at {url}")
            return

        def record() -> dict[str, Any]:
            lc.set_oscar_endpoint(leg.id, url)
            return {"url": url, "note": f"OSCAR at {url}"}

        self._step(name, result, Step.ENDPOINT, record)

    def _edge_leg(self, name: str, leg: Leg, plan: LegPlan, lc: Lifecycle, result: LegResult) -> None:
        assert leg.inventory is not None
        inventory = leg.inventory
        step = Step.PREFLIGHT if leg.preflight else Step.EDGE
        if plan.action in (Action.PASSED, Action.INSTALLED):
            self._skipped(result, step, plan.note or plan.action.value)
            result.state = "preflight passed" if plan.action is Action.PASSED else plan.state
        else:

            def edge() -> dict[str, Any]:
                report = self.services.stack(lc, leg.id).edge_create(
                    leg.id,
                    inventory,
                    components=list(leg.components),
                    raw_inputs=leg.inputs,
                    preflight_only=leg.preflight,
                )
                what = ", ".join(report.components) or "k3s only"
                return {
                    "digest": leg.digest,
                    "components": report.components,
                    "run_id": report.run_id,
                    "note": f"{'preflight passed' if leg.preflight else 'installed'}: {what}",
                }

            try:
                self._step(name, result, step, edge)
            except _StepFailed:
                result.state = "preflight failed" if leg.preflight else None
                if not leg.preflight:
                    with contextlib.suppress(ProvisionError):  # recorded before its install began, or not at all
                        result.state = lc.record(leg.id).state
                raise
            result.state = "preflight passed" if leg.preflight else "installed"
        if leg.recorded:
            self._endpoint(name, leg, plan, lc, result)

    def _apply_workflow(self, spec: ContinuumSpec, fdl: Path, legs: dict[str, LegResult]) -> WorkflowOutcome:
        workflow = spec.workflow
        assert workflow is not None
        outcome = WorkflowOutcome(workflow.name, "applied")
        failed = sorted(ident for ident in workflow.needs if not legs[ident].ok)
        if failed:
            outcome.status = "skipped"
            outcome.clusters = failed
            outcome.reason = f"it needs cluster(s) {', '.join(failed)}, which failed"
            self.progress(f"workflow {workflow.name}: skipped: {outcome.reason}")
            return outcome
        start = {"step": Step.WORKFLOW.value, "workflow": workflow.name}
        self._journal(spec.name, Phase.CONTINUUM_STEP, start)
        self.progress(f"workflow {workflow.name}: apply")
        found: Triage | None = None
        try:
            applied = self.services.workflow().apply(fdl, workflow.name)
        except ProvisionError as exc:
            found = classify_error(exc)
            outcome.status = "failed"
            outcome.reason = mask(str(exc))
            outcome.clusters = sorted(workflow.needs)
        else:
            outcome.sent = [f"{i.action.value} {i.cluster}/{i.service}" for i in applied.done]
            if not applied.ok:
                outcome.status = "failed"
                outcome.reason, outcome.clusters, found = _why_not_applied(applied)
        if outcome.status == "applied":
            self._journal(spec.name, Phase.CONTINUUM_STEP_DONE, {**start, "sent": len(outcome.sent)})
            self.progress(f"workflow {workflow.name}: applied ({len(outcome.sent)} change(s) sent)")
            return outcome
        outcome.cause = found.as_dict() if found else None
        outcome.runbook = found.runbook if found else FALLBACK_RUNBOOK
        self._journal(
            spec.name,
            Phase.CONTINUUM_STEP_FAILED,
            {
                **start,
                "error": (outcome.reason or "")[:500],
                "cause": found.cause.value if found else None,
                "runbook": outcome.runbook,
                "clusters": outcome.clusters,
            },
        )
        self.progress(f"workflow {workflow.name}: failed: {outcome.reason}")
        return outcome

    # --- status -------------------------------------------------------------------------------------------------

    def _membership(self, name: str, entries: Sequence[JournalEntry]) -> Membership:
        members = membership(name, entries)
        if members is not None:
            return members
        down = next((e for e in reversed(entries) if e.phase == Phase.CONTINUUM_DELETED), None)
        if down is not None:
            raise NotFound(
                f"continuum {name!r} was taken down at {down.ts.strftime('%Y-%m-%d %H:%M:%S')} UTC",
                hint="bring it up again with: provision continuum up FILE",
            )
        raise NotFound(f"no continuum named {name!r} in {self.home}", hint="bring one up: provision continuum up FILE")

    def status(self, name: str) -> StatusReport:
        records, entries = self._read(name)
        members = self._membership(name, entries)
        outcomes = last_outcomes(since_last_down(entries), 0)  # a step skipped by the last up ran before
        ended = next(
            (e for e in reversed(entries) if e.phase == Phase.CONTINUUM_UP_ENDED and e.seq > members.seq), None
        )
        clusters: list[dict[str, Any]] = []
        for member in members.members:
            item: dict[str, Any] = {
                "id": member.id,
                "kind": member.kind,
                "preflight": member.preflight,
                "recorded": member.id in records,
                "state": None,
                "workers": None,
                "infra_id": None,
                "cause": None,
                "error": None,
                "last": outcomes.get(member.id),
            }
            rec = records.get(member.id)
            if rec is None:
                last = outcomes.get(member.id)
                if member.preflight and last is not None:
                    item["state"] = "preflight passed" if last["outcome"] == "done" else "preflight failed"
                else:
                    item["state"] = "not created" if member.kind == ClusterKind.IM.value else "not recorded"
            elif rec.kind is ClusterKind.EDGE:
                item["state"], item["workers"] = rec.state, rec.workers
            else:
                lc = self.services.lifecycle(member.id)
                try:
                    view = lc.status(member.id)
                    item.update(state=view.state, workers=view.workers, infra_id=view.infra_id, cause=view.cause)
                except ProvisionError as exc:
                    item.update(state="unknown", infra_id=rec.infra_id, error=mask(str(exc)))
                finally:
                    lc.close()
            clusters.append(item)
        workflow = self._workflow_status(members, outcomes) if members.workflow else None
        last_up = None
        if ended is not None:
            last_up = {**ended.detail, "at": ended.ts.isoformat(timespec="seconds")}
        return StatusReport(name, members.source, clusters, workflow, last_up)

    def _workflow_status(self, members: Membership, outcomes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from provisioner.workflow.runs import WorkflowRuns

        assert members.workflow is not None
        doc: dict[str, Any] = {
            "name": members.workflow,
            "applied": False,
            "stages": [],
            "error": None,
            "last": outcomes.get(Step.WORKFLOW.value),
        }
        try:
            stages = WorkflowRuns(self.services.workflow()).status(members.workflow)
        except NotFound:
            return doc
        except ProvisionError as exc:
            doc["error"] = mask(str(exc))
            return doc
        doc["applied"] = True
        doc["stages"] = [stage.doc() for stage in stages]
        return doc

    # --- down ---------------------------------------------------------------------------------------------------

    def down(self, name: str, *, force: bool = False) -> DownResult:
        """Delete the workflow, then destroy every cluster (checked gone from IM; an edge cluster forgotten)."""
        with self._lock(name, "continuum down"):
            records, entries = self._read(name)
            members = self._membership(name, entries)
            self._journal(name, Phase.CONTINUUM_DOWN, {"clusters": members.ids(), "workflow": members.workflow})
            result = DownResult(name, None, [])
            if members.workflow:
                result.workflow = self._delete_workflow(name, members.workflow)
                if result.workflow["status"] == "failed" and not force:
                    result.ok = False
                    result.clusters = [
                        {"id": m.id, "kind": m.kind, "status": "kept", "note": "the workflow is not deleted"}
                        for m in members.members
                    ]
                    return result
            result.clusters = self._destroy_all(name, members, records)
            result.ok = all(c["status"] != "failed" for c in result.clusters) and (
                result.workflow is None or result.workflow["status"] != "failed"
            )
            if result.ok:
                shutil.rmtree(self.home / CONTINUUM_DIR / name, ignore_errors=True)
                destroyed = [c["id"] for c in result.clusters if c["status"] in ("destroyed", "forgotten")]
                self._journal(name, Phase.CONTINUUM_DELETED, {"clusters": destroyed})
        return result

    def _delete_workflow(self, name: str, workflow: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": workflow, "status": "deleted", "deleted": [], "reason": None}
        start = {"step": Step.WORKFLOW_DELETE.value, "workflow": workflow}
        engine = self.services.workflow()
        with open_store(self.home) as store:
            if store.get_workflow(workflow) is None:
                doc["status"] = "absent"
                return doc
        self._journal(name, Phase.CONTINUUM_STEP, start)
        self.progress(f"workflow {workflow}: delete")
        try:
            deleted = engine.delete(workflow)
        except ProvisionError as exc:
            doc.update(status="failed", reason=mask(str(exc)))
        else:
            doc["deleted"] = [f"{i.cluster}/{i.service}" for i in deleted.done]
            if not deleted.ok:
                doc.update(status="failed", reason=_why_not_applied(deleted)[0])
        if doc["status"] == "failed":
            self._journal(name, Phase.CONTINUUM_STEP_FAILED, {**start, "error": str(doc["reason"])[:500]})
        else:
            self._journal(name, Phase.CONTINUUM_STEP_DONE, {**start, "deleted": len(doc["deleted"])})
        return doc

    def _destroy_all(self, name: str, members: Membership, records: dict[str, ClusterRecord]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        crashed: list[BaseException] = []

        def work(ident: str, kind: str) -> None:
            try:
                out[ident] = self._destroy(name, ident, kind)
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread below
                crashed.append(exc)

        threads = []
        for member in members.members:
            if member.id not in records:
                note = "preflight only: nothing was recorded" if not member.recorded else "nothing recorded"
                out[member.id] = {"id": member.id, "kind": member.kind, "status": "absent", "note": note}
                continue
            threads.append(threading.Thread(target=work, args=(member.id, member.kind), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if crashed:
            raise crashed[0]
        return [out[m.id] for m in members.members]

    def _destroy(self, name: str, ident: str, kind: str) -> dict[str, Any]:
        start = {"cluster": ident, "step": Step.DESTROY.value}
        self._journal(name, Phase.CONTINUUM_STEP, start)
        self.progress(f"{ident}: destroy")
        lc = self.services.lifecycle(ident)
        try:
            gone = lc.destroy(ident)
        except ProvisionError as exc:
            found = classify_error(exc)
            error = mask(str(exc))
            self._journal(
                name,
                Phase.CONTINUUM_STEP_FAILED,
                {**start, "error": error[:500], "cause": found.cause.value if found else None},
            )
            return {
                "id": ident,
                "kind": kind,
                "status": "failed",
                "error": error,
                "cause": found.as_dict() if found else None,
                "runbook": found.runbook if found else "destroy",
            }
        finally:
            lc.close()
        status = "forgotten" if gone.kind == ClusterKind.EDGE.value else "destroyed"
        self._journal(name, Phase.CONTINUUM_STEP_DONE, {**start, "infra_id": gone.infra_id, "status": status})
        self.progress(f"{ident}: {status}")
        return {
            "id": ident,
            "kind": kind,
            "status": status,
            "infra_id": gone.infra_id,
            "verified": gone.kind == ClusterKind.IM.value,
            "hosts_touched": gone.hosts_touched,
        }


def _why_not_applied(result: ApplyResult) -> tuple[str, list[str], Triage | None]:
    """Why a workflow operation is not fully done: the reasons, the clusters, and a triage (OSCAR not answering)."""
    clusters = sorted({c for c, _ in result.failed} | {c for c, _ in result.skipped} | set(result.unreadable))
    reasons = [f"{c}: {why}" for c, why in result.unreadable.items()]
    reasons += [f"{c}/{s}: {why}" for (c, s), why in result.failed.items()]
    reasons += [f"{c}/{s}: {why}" for (c, s), why in result.skipped.items()]
    reasons += list(result.missing_buckets)
    found: Triage | None = None
    if result.unreadable:  # OSCAR did not answer there (a refused login is said in the evidence)
        found = Triage(Cause.OSCAR_UNREACHABLE, mask(next(iter(result.unreadable.values())))[:220])
    return mask("; ".join(reasons[:5])), clusters, found
