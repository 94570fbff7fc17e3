"""The autoscale job: each tick evaluates every managed cluster, decides (pure engine) and acts (``cluster scale``).

A cluster is managed when it has a policy file, ``<home>/policies/<cluster>.yaml`` (``autoscale enable``). For each
one, concurrently (bounded), a tick:

1. takes the cluster's lock -- the same lock as ``cluster scale``, so a manual scale and the job never interleave,
   and two ticks at the same moment (two hosts with cron) run one after the other;
2. reads the live worker count from IM (never a cached one: IM's state answer gives every VM's state in one
   request, roles come from the registry's VM map, read in full again when the VM ids change; a policy with
   Kubernetes rules reads every VM in full, for the workers' addresses) and, only if the policy has demand rules,
   the signal sources (a source that cannot be read -- whatever it raises -- makes the tick hold, naming the
   source: the job never scales on missing data);
3. decides with :func:`provisioner.autoscale.engine.decide` and, unless ``dry_run``, scales through
   :meth:`Lifecycle.scale_locked` (scale-down names the idle workers through IM's ``removal_list``);
4. appends the decision -- signals read, rule matched, action taken or none, and any error -- to the decision log
   in the state store, which ``autoscale explain`` reads.

The cooldown runs from the last scaling of the cluster, the job's or a manual ``cluster scale`` (the journal's
``scaled`` entries). An unexpected error while evaluating one cluster is logged, recorded as that cluster's
``error`` decision (with its type and message) and does not stop the other clusters, nor the next tick.

The second of two simultaneous ticks recomputes from IM's count after the first one's action, so it finds nothing
left to do: one action, not two.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from provisioner.autoscale.engine import Signals, Worker, decide, needed_signals
from provisioner.autoscale.policy import Policy, load_policy
from provisioner.autoscale.signals import Reading, SignalSource, SourceContext, SourceError
from provisioner.errors import InputError, LockBusy, ProvisionError
from provisioner.model import ClusterKind, Role, check_name
from provisioner.privfs import ensure_private_dir
from provisioner.state import ClusterFiles, Phase, open_store
from provisioner.text import shorten

if TYPE_CHECKING:
    from provisioner.im.models import VMInfo

DEFAULT_CONCURRENCY = 8

log = logging.getLogger(__name__)


class ClusterOps(Protocol):
    """What the job needs of :class:`provisioner.lifecycle.Lifecycle` (tests give it a fake of this)."""

    home: Path

    def lock(self, name: str, purpose: str) -> contextlib.AbstractContextManager[Path]: ...

    def live_vms(self, name: str) -> list[VMInfo]: ...

    def tracked_vms(self, name: str) -> list[VMInfo]: ...

    def scale_locked(
        self, name: str, *, workers: int, remove: list[str] | None = None, wait: bool = True, timeout: float = 1800.0
    ) -> Any: ...


def policy_path(home: Path, cluster: str) -> Path:
    return ClusterFiles(Path(home), cluster).policy


def enable(home: Path, cluster: str, source: Path) -> Policy:
    """Validate ``source`` and keep a copy as the cluster's policy (exit 2 with the field on a bad file).

    An edge cluster is refused: IM is what scales, and it has none (the CLI checks first that the cluster exists)."""
    with open_store(home) as store:
        record = store.get_cluster(check_name(cluster))
    if record is not None and record.kind is ClusterKind.EDGE:
        raise InputError(
            f"{cluster!r} is an edge cluster (K3s on your own hosts): IM cannot scale it, so it cannot be autoscaled",
            field="NAME",
        )
    policy = load_policy(source)
    target = policy_path(home, cluster)
    ensure_private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return policy


def disable(home: Path, cluster: str) -> bool:
    path = policy_path(home, cluster)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def forget(home: Path, cluster: str) -> None:
    """The cluster is gone (destroyed): drop its policy and its cached kubeconfig, so that a new cluster given the
    same name is neither autoscaled by the old policy nor asked with the old credentials. The decision log stays."""
    ClusterFiles(Path(home), cluster).forget()


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did for one cluster: the decision and whether its scale was applied, or the error, or a
    hold while another command held the cluster's lock; the decision log records it too."""

    cluster: str
    action: str  # none | hold | scale_up | scale_down | error
    current: int | None
    target: int | None
    remove: list[str]
    rule: str
    reason: str
    applied: bool
    dry_run: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AutoscaleJob:
    def __init__(
        self,
        lc: ClusterOps,
        *,
        sources: Mapping[str, SignalSource] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = DEFAULT_CONCURRENCY,
        dry_run: bool = False,
        policy_override: Policy | None = None,
    ) -> None:
        if concurrency < 1:
            raise InputError(f"must be at least 1, got {concurrency}", field="--concurrency")
        self.lc = lc
        self.home = lc.home
        self.sources = dict(sources or {})
        self.now = now
        self.concurrency = concurrency
        self.dry_run = dry_run
        self.policy_override = policy_override

    # -- which clusters --

    def managed(self, names: Sequence[str] = ()) -> list[tuple[str, Policy | ProvisionError]]:
        """The clusters a tick evaluates, each with its policy (or the error reading it)."""
        if self.policy_override is not None and not names:
            raise InputError(
                "--policy applies to the clusters named with --cluster; name at least one", field="--policy"
            )
        with open_store(self.home) as store:
            records = {rec.name: rec for rec in store.list_clusters()}
        chosen: list[str]
        if names:
            for name in names:
                if name not in records:
                    raise InputError(f"no cluster named {name!r} in the registry", field="--cluster")
                if records[name].kind is ClusterKind.EDGE:
                    raise InputError(f"{name!r} is an edge cluster: IM cannot scale it", field="--cluster")
                if self.policy_override is None and not policy_path(self.home, name).exists():
                    raise InputError(
                        f"cluster {name!r} has no policy",
                        field="--cluster",
                        hint=f"give one: provision autoscale enable {name} --policy FILE (or --policy on this run)",
                    )
            chosen = list(dict.fromkeys(names))
        else:
            chosen = sorted(
                n
                for n, rec in records.items()
                if rec.kind is not ClusterKind.EDGE and policy_path(self.home, n).exists()
            )
        result: list[tuple[str, Policy | ProvisionError]] = []
        for name in chosen:
            if self.policy_override is not None:
                result.append((name, self.policy_override))
                continue
            try:
                result.append((name, load_policy(policy_path(self.home, name))))
            except ProvisionError as exc:
                result.append((name, exc))
        return result

    # -- a tick --

    def tick(self, names: Sequence[str] = ()) -> list[TickOutcome]:
        clusters = self.managed(names)
        if not clusters:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(clusters))) as pool:
            return list(pool.map(lambda item: self._tick_or_error(*item), clusters))

    def _tick_or_error(self, name: str, policy: Policy | ProvisionError) -> TickOutcome:
        if isinstance(policy, ProvisionError):
            return self._record_error(name, f"policy file: {policy}")
        try:
            return self.tick_one(name, policy)
        except LockBusy as exc:
            return self._record_busy(name, str(exc))
        except ProvisionError as exc:
            return self._record_error(name, str(exc))
        except Exception as exc:  # the per-cluster boundary: one cluster's bug must not stop the others
            log.warning("autoscale: unexpected error while evaluating cluster %s", name, exc_info=True)
            return self._record_error(name, f"unexpected {_describe(exc)}")

    def _record_error(self, name: str, message: str) -> TickOutcome:
        outcome = TickOutcome(name, "error", None, None, [], "error", message, False, self.dry_run, message)
        with open_store(self.home) as store:
            store.append_decision(name, "error", {"error": message, "dry_run": self.dry_run, "applied": False})
        return outcome

    def _record_busy(self, name: str, message: str) -> TickOutcome:
        """Another command (a manual ``cluster scale``, an install, another tick) holds the cluster's lock past the
        lock timeout: not a failure of the job. This tick holds; the next one decides afresh."""
        reason = f"{message}: nothing decided this tick (the next tick decides afresh)"
        outcome = TickOutcome(name, "hold", None, None, [], "busy", reason, False, self.dry_run)
        with open_store(self.home) as store:
            store.append_decision(
                name, "hold", {"rule": "busy", "reason": reason, "dry_run": self.dry_run, "applied": False}
            )
        return outcome

    def tick_one(self, name: str, policy: Policy) -> TickOutcome:
        with self.lc.lock(name, "autoscale tick"):
            now = self.now()
            # Demand rules read the workers' addresses (Kubernetes): a full read. Otherwise one IM request (every
            # VM's state) with roles from the registry's VM map, fully read again when the VM ids change.
            demand = bool(needed_signals(policy) & {"pending_pods", "worker_idle"})
            vms = self.lc.live_vms(name) if demand else self.lc.tracked_vms(name)
            workers = [vm for vm in vms if Role.of(vm.name) == Role.WORKER]
            last_action_at, previous_idle = self._history(name)
            signals, idle_since = self._signals(name, policy, workers, now, previous_idle)
            decision = decide(
                policy, current_workers=len(workers), signals=signals, last_action_at=last_action_at, now=now
            )
            applied = False
            error = None
            if decision.changes and not self.dry_run:
                try:
                    self.lc.scale_locked(name, workers=decision.target, remove=list(decision.remove), wait=False)
                    applied = True
                except ProvisionError as exc:
                    error = str(exc)
            detail = {
                **decision.to_dict(),
                "applied": applied,
                "dry_run": self.dry_run,
                "error": error,
                "idle_since": idle_since,
                "policy": policy.to_dict(),
            }
            with open_store(self.home) as store:
                store.append_decision(name, "error" if error else decision.action, detail)
        return TickOutcome(
            cluster=name,
            action="error" if error else decision.action,
            current=decision.current,
            target=decision.target,
            remove=list(decision.remove),
            rule=decision.rule,
            reason=decision.reason if error is None else f"{decision.reason}; the scale failed: {error}",
            applied=applied,
            dry_run=self.dry_run,
            error=error,
        )

    def _history(self, name: str) -> tuple[datetime | None, dict[str, str]]:
        """When the cluster was last scaled (by this job, or by hand: the journal's ``scaled`` entries), and the
        idle times carried over from the last decision that recorded them. Nothing from before the cluster's last
        ``destroyed`` entry counts: a new cluster of the same name starts afresh (IM numbers its VMs from 0 again,
        so an old idle timer would fall on a new worker)."""
        with open_store(self.home) as store:
            applied = store.last_decision(name, applied=True)
            scaled = store.last_of_phase(name, Phase.SCALED)
            carried = store.last_decision(name, having="idle_since")
            destroyed = store.last_of_phase(name, Phase.DESTROYED)

        def current(entry: Any) -> bool:
            return entry is not None and (destroyed is None or entry.ts > destroyed.ts)

        moments = [scaled.ts] if scaled is not None and current(scaled) else []
        if applied is not None and current(applied):
            moments.append(_decided_at(applied.detail.get("now"), applied.ts))
        previous = carried.detail.get("idle_since") if carried is not None and current(carried) else None
        idle = {str(k): str(v) for k, v in previous.items()} if isinstance(previous, dict) else {}
        return (max(moments) if moments else None), idle

    def _signals(
        self, name: str, policy: Policy, workers: Sequence[Any], now: datetime, previous_idle: Mapping[str, str]
    ) -> tuple[Signals, dict[str, str]]:
        needed = needed_signals(policy)
        ids = [str(vm.id) for vm in workers]
        if not needed:
            return Signals(workers=tuple(Worker(i) for i in ids)), {}
        ctx = SourceContext(cluster=name, workers=workers, now=now, idle_since=previous_idle)
        errors: list[str] = []
        readings: list[Reading] = []
        wanted = []
        if needed & {"pending_pods", "worker_idle"}:
            wanted.append("kubernetes")
        if "waiting_jobs" in needed:
            wanted.append("oscar")
        for source_name in wanted:
            source = self.sources.get(source_name)
            if source is None:
                errors.append(f"{source_name}: no source configured")
                continue
            try:
                readings.append(source.read(ctx))
            except SourceError as exc:
                errors.append(_prefixed(source_name, str(exc)))
            except Exception as exc:  # a source's boundary: whatever it raises, this tick holds
                log.warning("autoscale: source %s failed for cluster %s", source_name, name, exc_info=True)
                errors.append(f"{source_name}: unexpected {_describe(exc)}")
        pending = next((r.pending_pods for r in readings if r.pending_pods is not None), None)
        oscar_pods = next((r.oscar_job_pods for r in readings if r.oscar_job_pods is not None), None)
        waiting = next((r.waiting_jobs for r in readings if r.waiting_jobs is not None), None)
        without_pod = next((r.jobs_without_pod for r in readings if r.jobs_without_pod is not None), None)
        idle = next((r.idle_since for r in readings if r.idle_since is not None), None)
        # Not read this tick (the source failed): the timers restart at the next good read. A worker that was busy
        # while nobody could look must not count as idle since before the gap.
        idle_since = dict(idle) if idle is not None else {}
        worker_objs = []
        for vm_id in ids:
            since = idle_since.get(vm_id) if idle is not None else None
            seconds = (now - datetime.fromisoformat(since)).total_seconds() if since else None
            worker_objs.append(Worker(vm_id, max(seconds, 0.0) if seconds is not None else None))
        signals = Signals(
            pending_pods=pending if "pending_pods" in needed else None,
            waiting_jobs=waiting if "waiting_jobs" in needed else None,
            workers=tuple(worker_objs),
            errors=tuple(errors),
            oscar_job_pods=oscar_pods if "pending_pods" in needed else None,
            jobs_without_pod=without_pod if "waiting_jobs" in needed else None,
        )
        return signals, idle_since


def _decided_at(recorded: object, fallback: datetime) -> datetime:
    """The tick's own clock reading kept in a decision (``now``), else when it was stored."""
    try:
        moment = datetime.fromisoformat(str(recorded))
    except ValueError:
        return fallback
    return moment if moment.tzinfo is not None else fallback


def _describe(exc: BaseException) -> str:
    """``KeyError: 'items'``: the type and the first line of the message, for the decision log."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {shorten(text, 300)}" if text else type(exc).__name__


def _prefixed(source: str, message: str) -> str:
    return message if message.startswith(f"{source}:") else f"{source}: {message}"


def explain(home: Path, cluster: str, limit: int = 10) -> list[dict[str, Any]]:
    """The last decisions about ``cluster``, newest last, as stored (signals, rule, action, reason)."""
    check_name(cluster)
    with open_store(home) as store:
        entries = store.decisions(cluster, limit=limit)
    return [{"seq": e.seq, "at": e.ts.isoformat(), "action": e.action, **e.detail} for e in entries]
