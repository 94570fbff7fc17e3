"""The autoscale job: each tick evaluates every managed cluster, decides (pure engine) and acts (``cluster scale``).

A cluster is managed when it has a policy file, ``<home>/policies/<cluster>.yaml`` (``autoscale enable``). For each
one, concurrently (bounded), a tick:

1. takes the cluster's lock -- the same lock as ``cluster scale``, so a manual scale and the job never interleave,
   and two ticks at the same moment (two hosts with cron) run one after the other;
2. reads the live worker count from IM (never a cached one) and, only if the policy has demand rules, the signal
   sources (a source that cannot be read makes the tick hold: the job never scales down on missing data);
3. decides with :func:`provisioner.autoscale.engine.decide` and, unless ``dry_run``, scales through
   :meth:`Lifecycle.scale_locked` (scale-down names the idle workers through IM's ``removal_list``);
4. appends the decision -- signals read, rule matched, action taken or none, and any error -- to the decision log
   in the state store, which ``autoscale explain`` reads.

The second of two simultaneous ticks recomputes from IM's count after the first one's action, so it finds nothing
left to do: one action, not two.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.autoscale.engine import Signals, Worker, decide, needed_signals
from provisioner.autoscale.policy import Policy, load_policy
from provisioner.autoscale.signals import Reading, SignalSource, SourceContext, SourceError
from provisioner.errors import InputError, ProvisionError
from provisioner.lifecycle import EDGE_IM_URL, WORKER, Lifecycle, check_name, role_of
from provisioner.state import Store
from provisioner.state.locks import ensure_private_dir

POLICY_DIR = "policies"
DEFAULT_CONCURRENCY = 8


def policy_path(home: Path, cluster: str) -> Path:
    return Path(home) / POLICY_DIR / f"{check_name(cluster)}.yaml"


def enable(home: Path, cluster: str, source: Path) -> Policy:
    """Validate ``source`` and keep a copy as the cluster's policy (exit 2 with the field on a bad file)."""
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


@dataclass(frozen=True)
class TickOutcome:
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
        lc: Lifecycle,
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
        with Store.open(self.home) as store:
            records = {rec.name: rec for rec in store.list_clusters()}
        chosen: list[str]
        if names:
            for name in names:
                if name not in records:
                    raise InputError(f"no cluster named {name!r} in the registry", field="--cluster")
                if records[name].im_url == EDGE_IM_URL:
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
                n for n, rec in records.items() if rec.im_url != EDGE_IM_URL and policy_path(self.home, n).exists()
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
        except ProvisionError as exc:
            return self._record_error(name, str(exc))

    def _record_error(self, name: str, message: str) -> TickOutcome:
        outcome = TickOutcome(name, "error", None, None, [], "error", message, False, self.dry_run, message)
        with Store.open(self.home) as store:
            store.append_decision(name, "error", {"error": message, "dry_run": self.dry_run, "applied": False})
        return outcome

    def tick_one(self, name: str, policy: Policy) -> TickOutcome:
        with self.lc.lock(name, "autoscale tick"):
            now = self.now()
            workers = [vm for vm in self.lc.live_vms(name) if role_of(vm) == WORKER]
            with Store.open(self.home) as store:
                history = store.decisions(name, limit=50)
            last_action_at = next((d.ts for d in reversed(history) if d.detail.get("applied")), None)
            previous_idle = (
                next((d.detail.get("idle_since") for d in reversed(history) if "idle_since" in d.detail), None) or {}
            )
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
            with Store.open(self.home) as store:
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
                errors.append(str(exc))
        pending = next((r.pending_pods for r in readings if r.pending_pods is not None), None)
        waiting = next((r.waiting_jobs for r in readings if r.waiting_jobs is not None), None)
        idle = next((r.idle_since for r in readings if r.idle_since is not None), None)
        idle_since = dict(idle or {})
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
        )
        return signals, idle_since


def explain(home: Path, cluster: str, limit: int = 10) -> list[dict[str, Any]]:
    """The last decisions about ``cluster``, newest last, as stored (signals, rule, action, reason)."""
    check_name(cluster)
    with Store.open(home) as store:
        entries = store.decisions(cluster, limit=limit)
    return [{"seq": e.seq, "at": e.ts.isoformat(), "action": e.action, **e.detail} for e in entries]
