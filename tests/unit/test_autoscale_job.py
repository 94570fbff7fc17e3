"""The autoscale job with a fake lifecycle (our own ``ClusterOps``), fake signal sources and a fake clock.

The state store and the cluster locks are the real ones, in a temporary home.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.autoscale import job as job_mod
from provisioner.autoscale.job import AutoscaleJob, TickOutcome
from provisioner.autoscale.signals import SourceError, kube_cache_path
from provisioner.errors import InputError, LockBusy
from provisioner.im.models import VMInfo
from provisioner.lifecycle import Lifecycle
from provisioner.settings import Settings
from provisioner.state import Phase, Store
from provisioner.state.locks import cluster_lock
from tests.fakesources import FakeKube


def vm(vm_id: str, role: str = "wn") -> VMInfo:
    return VMInfo(vm_id, "configured", role, [f"10.0.0.{vm_id}"], [], {})


class FakeLifecycle:
    """IM's VM lists in memory; the lock is the real cluster lock, taken exactly as ``Lifecycle.lock`` takes it."""

    def __init__(self, home: Path, clusters: dict[str, int], *, lock_timeout: float = 5.0) -> None:
        self.home = home
        self.lock_timeout = lock_timeout
        self.vms = {name: [vm("0", "front"), *(vm(str(i)) for i in range(1, n + 1))] for name, n in clusters.items()}
        self.next_id = {name: n + 1 for name, n in clusters.items()}
        self.live_calls: list[str] = []  # full reads (every VM)
        self.tracked_calls: list[str] = []  # one-request reads (states + the registry's VM map)
        self.scales: list[dict[str, Any]] = []
        self.purposes: list[str] = []
        self.on_live: Callable[[str], None] | None = None
        self.on_scale: Callable[[str], None] | None = None

    def lock(self, name: str, purpose: str) -> Any:
        self.purposes.append(purpose)
        return cluster_lock(self.home, name, self.lock_timeout, purpose=purpose)

    def live_vms(self, name: str) -> list[VMInfo]:
        self.live_calls.append(name)
        if self.on_live is not None:
            self.on_live(name)
        return list(self.vms[name])

    def tracked_vms(self, name: str) -> list[VMInfo]:
        self.tracked_calls.append(name)
        if self.on_live is not None:
            self.on_live(name)
        return list(self.vms[name])

    def scale_locked(
        self, name: str, *, workers: int, remove: list[str] | None = None, wait: bool = True, timeout: float = 1800.0
    ) -> None:
        if self.on_scale is not None:
            self.on_scale(name)
        self.scales.append({"cluster": name, "workers": workers, "remove": list(remove or []), "wait": wait})
        gone = set(remove or [])
        self.vms[name] = [v for v in self.vms[name] if v.id not in gone]
        while sum(v.name == "wn" for v in self.vms[name]) < workers:
            self.vms[name].append(vm(str(self.next_id[name])))
            self.next_id[name] += 1

    def worker_ids(self, name: str) -> list[str]:
        return [v.id for v in self.vms[name] if v.name == "wn"]


class Clock:
    """A fake clock, starting at the real time (the store stamps the journal with the real clock)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start if start is not None else datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def register(home: Path, name: str, policy: dict[str, Any]) -> None:
    with Store.open(home) as store:
        store.upsert_cluster(
            name,
            im_url="http://127.0.0.1:1/im",
            template="oscar",
            site="local-sim",
            inputs={},
            deployment_id=f"dep-{name}",
            infra_id=f"infra-{name}",
        )
    path = job_mod.policy_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, **policy}))


def demand_policy(**changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "min_workers": 1,
        "max_workers": 10,
        "cooldown": 0,
        "max_step": 3,
        "demand": {"pending_pods": True, "oscar_jobs": False, "idle_after": "15m"},
    }
    policy.update(changes)
    return policy


def decisions(home: Path, name: str) -> list[Any]:
    with Store.open(home) as store:
        return store.decisions(name)


def only(outcomes: list[TickOutcome]) -> TickOutcome:
    (outcome,) = outcomes
    return outcome


# --- the lock ---------------------------------------------------------------------------------------------------------


def test_a_tick_waits_for_the_cluster_lock_and_holds_it_while_scaling(home: Path) -> None:
    register(home, "c1", {"min_workers": 3, "max_workers": 5})
    lc = FakeLifecycle(home, {"c1": 1}, lock_timeout=0)
    job = AutoscaleJob(lc, now=Clock())

    # Someone else (a `cluster scale`) holds the cluster's lock: the tick cannot start; it holds (not an error: cron
    # must not report the job failed), records why, changes nothing.
    with cluster_lock(home, "c1", 0, purpose="cluster scale"):
        busy = only(job.tick())
    assert (busy.action, busy.rule, busy.applied, busy.error) == ("hold", "busy", False, None)
    assert "cluster scale" in busy.reason and "nothing decided this tick" in busy.reason
    assert lc.scales == [] and lc.live_calls == [] and lc.tracked_calls == []
    logged = decisions(home, "c1")[-1]
    assert (logged.action, logged.detail["rule"], logged.detail["applied"]) == ("hold", "busy", False)

    # While the tick scales, it holds that same lock: a manual `cluster scale` (the real Lifecycle) is refused.
    manual = Lifecycle(Settings(home=home, lock_timeout=0))
    refused: list[BaseException] = []

    def manual_scale(name: str) -> None:
        with pytest.raises(LockBusy) as err:
            manual.scale(name, workers=9)
        refused.append(err.value)

    lc.on_scale = manual_scale
    done = only(job.tick())
    assert (done.action, done.applied, done.current, done.target) == ("scale_up", True, 1, 3)
    assert len(refused) == 1 and "autoscale tick" in str(refused[0])
    assert lc.purposes == ["autoscale tick", "autoscale tick"]
    assert [d.action for d in decisions(home, "c1")] == ["hold", "scale_up"]


# --- live counts, removal by id, idle carry-over ------------------------------------------------------------------


def test_the_live_count_is_read_from_the_lifecycle_every_tick(home: Path) -> None:
    register(home, "c1", {"min_workers": 3, "max_workers": 5, "cooldown": "1h"})
    lc = FakeLifecycle(home, {"c1": 1})
    clock = Clock()
    job = AutoscaleJob(lc, now=clock)
    first = only(job.tick())
    assert (first.current, first.target, first.applied) == (1, 3, True)
    # IM loses a worker between ticks: the next tick sees 2 (not a remembered 3) and restores the floor.
    lc.vms["c1"] = [v for v in lc.vms["c1"] if v.id != "2"]
    clock.advance(minutes=1)
    second = only(job.tick())
    assert (second.current, second.target, second.action) == (2, 3, "scale_up")
    clock.advance(minutes=1)
    third = only(job.tick())
    assert (third.current, third.action) == (3, "none")
    # A schedule-only policy: one IM request per tick (the tracked read), never the full one.
    assert lc.tracked_calls == ["c1", "c1", "c1"] and lc.live_calls == []
    assert [s["workers"] for s in lc.scales] == [3, 3]
    assert all(s["wait"] is False for s in lc.scales)


def test_scale_down_names_the_idle_workers_not_the_oldest(home: Path) -> None:
    register(home, "c1", demand_policy())
    lc = FakeLifecycle(home, {"c1": 4})
    kube = FakeKube()
    kube.idle = {"3"}
    clock = Clock()
    job = AutoscaleJob(lc, sources={"kubernetes": kube}, now=clock)
    assert only(job.tick()).action == "none"  # 3 first seen idle now
    clock.advance(minutes=16)
    down = only(job.tick())
    assert (down.action, down.current, down.target, down.remove, down.rule) == ("scale_down", 4, 3, ["3"], "idle")
    assert lc.scales == [{"cluster": "c1", "workers": 3, "remove": ["3"], "wait": False}]
    assert lc.worker_ids("c1") == ["1", "2", "4"]
    # Kubernetes rules need the workers' addresses: the full read, every tick.
    assert lc.live_calls == ["c1", "c1"] and lc.tracked_calls == []


def test_idle_times_carry_over_across_ticks_and_restart_after_a_failed_read(home: Path) -> None:
    register(home, "c1", demand_policy())
    lc = FakeLifecycle(home, {"c1": 3})
    kube = FakeKube()
    kube.idle = {"2"}
    clock = Clock()
    job = AutoscaleJob(lc, sources={"kubernetes": kube}, now=clock)
    first_seen = clock().isoformat()
    assert only(job.tick()).action == "none"
    clock.advance(minutes=10)
    assert only(job.tick()).action == "none"  # idle 10 minutes: not yet 15
    assert kube.contexts[-1].idle_since == {"2": first_seen}

    # Kubernetes cannot be read for a while: the tick holds, and the idle timers are dropped (nobody saw whether
    # the worker stayed idle meanwhile).
    kube.fail = SourceError("kubernetes: the API server 10.0.0.1:6443 does not answer")
    clock.advance(minutes=3)
    held = only(job.tick())
    assert (held.action, held.rule) == ("hold", "missing-data")
    assert decisions(home, "c1")[-1].detail["idle_since"] == {}

    # Read again 16 minutes after "2" was first seen idle: its timer starts afresh, so it is not removed yet.
    kube.fail = None
    clock.advance(minutes=3)
    again = clock().isoformat()
    assert only(job.tick()).action == "none"
    assert kube.contexts[-1].idle_since == {}
    assert decisions(home, "c1")[-1].detail["idle_since"] == {"2": again}
    clock.advance(minutes=15)
    down = only(job.tick())
    assert (down.action, down.remove) == ("scale_down", ["2"])
    assert kube.contexts[-1].idle_since == {"2": again}


# --- missing data -------------------------------------------------------------------------------------------------


def test_an_unreadable_source_holds_even_above_the_ceiling(home: Path) -> None:
    register(home, "c1", demand_policy(max_workers=1))
    lc = FakeLifecycle(home, {"c1": 3})
    kube = FakeKube()
    kube.fail = SourceError("kubernetes: SSH to the front-end root@10.0.0.0 failed: timed out")
    outcome = only(AutoscaleJob(lc, sources={"kubernetes": kube}, now=Clock()).tick())
    assert (outcome.action, outcome.target, outcome.remove, outcome.applied) == ("hold", 3, [], False)
    assert "kubernetes: SSH to the front-end" in outcome.reason
    assert lc.scales == []
    (entry,) = decisions(home, "c1")
    assert entry.detail["signals"]["errors"] == ["kubernetes: SSH to the front-end root@10.0.0.0 failed: timed out"]


def test_a_missing_source_holds(home: Path) -> None:
    register(home, "c1", demand_policy(demand={"pending_pods": False, "oscar_jobs": True, "idle_after": False}))
    outcome = only(AutoscaleJob(FakeLifecycle(home, {"c1": 1}), sources={}, now=Clock()).tick())
    assert outcome.action == "hold" and "oscar: no source configured" in outcome.reason


# --- errors -------------------------------------------------------------------------------------------------------


def test_an_unexpected_error_from_a_source_holds_that_cluster_and_is_logged(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register(home, "c1", demand_policy())
    lc = FakeLifecycle(home, {"c1": 2})
    kube = FakeKube()
    kube.fail = KeyError("items")
    with caplog.at_level(logging.WARNING, logger="provisioner.autoscale.job"):
        outcome = only(AutoscaleJob(lc, sources={"kubernetes": kube}, now=Clock()).tick())
    assert (outcome.action, outcome.rule) == ("hold", "missing-data")
    (entry,) = decisions(home, "c1")
    assert entry.detail["signals"]["errors"] == ["kubernetes: unexpected KeyError: 'items'"]
    assert any(r.exc_info and isinstance(r.exc_info[1], KeyError) for r in caplog.records)


def test_an_unexpected_error_in_one_cluster_is_recorded_and_the_others_go_on(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("c1", "c2", "c3"):
        register(home, name, {"min_workers": 2, "max_workers": 4})
    lc = FakeLifecycle(home, {"c1": 1, "c2": 1, "c3": 1})

    def broken(name: str) -> None:
        if name == "c2":
            raise AttributeError("'NoneType' object has no attribute 'id'\nsecond line")

    lc.on_live = broken
    with caplog.at_level(logging.WARNING, logger="provisioner.autoscale.job"):
        outcomes = {o.cluster: o for o in AutoscaleJob(lc, now=Clock()).tick()}
    assert (outcomes["c2"].action, outcomes["c2"].applied) == ("error", False)
    assert outcomes["c2"].error == "unexpected AttributeError: 'NoneType' object has no attribute 'id'"
    assert [(o.action, o.applied) for name, o in sorted(outcomes.items()) if name != "c2"] == [("scale_up", True)] * 2
    (entry,) = decisions(home, "c2")
    assert entry.action == "error" and entry.detail["error"] == outcomes["c2"].error
    assert any("c2" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_failed_scale_is_an_error_decision(home: Path) -> None:
    register(home, "c1", {"min_workers": 2, "max_workers": 4})
    lc = FakeLifecycle(home, {"c1": 1})

    def refuse(name: str) -> None:
        raise InputError("VM 9 is not a live worker", field="--remove")

    lc.on_scale = refuse
    outcome = only(AutoscaleJob(lc, now=Clock()).tick())
    assert (outcome.action, outcome.applied) == ("error", False)
    assert "the scale failed: --remove: VM 9 is not a live worker" in outcome.reason


# --- concurrency --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", [1, 2, 3])
def test_clusters_are_evaluated_concurrently_up_to_the_bound(home: Path, bound: int) -> None:
    names = [f"c{i}" for i in range(bound * 2)]
    for name in names:
        register(home, name, {"min_workers": 1, "max_workers": 2})
    lc = FakeLifecycle(home, dict.fromkeys(names, 1))
    active = 0
    most = 0
    guard = threading.Lock()
    together = threading.Barrier(bound, timeout=60)  # a safety net, not a timing assertion

    def gather(_: str) -> None:
        # Evaluations go through in groups of `bound` running at once: `bound` can, and never more may.
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        try:
            together.wait()
        finally:
            with guard:
                active -= 1

    lc.on_live = gather
    outcomes = AutoscaleJob(lc, now=Clock(), concurrency=bound).tick()
    assert sorted(o.cluster for o in outcomes) == names
    assert most == bound


def test_concurrency_must_be_positive(home: Path) -> None:
    with pytest.raises(InputError, match="--concurrency"):
        AutoscaleJob(FakeLifecycle(home, {}), concurrency=0)


# --- cooldown -----------------------------------------------------------------------------------------------------


def test_a_manual_scale_starts_the_cooldown(home: Path) -> None:
    register(home, "c1", demand_policy(cooldown="1h"))
    lc = FakeLifecycle(home, {"c1": 2})
    kube = FakeKube()
    kube.pending = 8
    with Store.open(home) as store:  # what `cluster scale` writes when it is done
        store.append("c1", Phase.SCALED, {"workers": 2, "removed": []})
    start = datetime.now(UTC)
    outcome = only(AutoscaleJob(lc, sources={"kubernetes": kube}, now=Clock(start + timedelta(minutes=5))).tick())
    assert (outcome.action, outcome.rule) == ("hold", "cooldown")
    late = only(AutoscaleJob(lc, sources={"kubernetes": kube}, now=Clock(start + timedelta(hours=2))).tick())
    assert (late.action, late.applied) == ("scale_up", True)


def test_the_cooldown_is_found_however_many_decisions_followed(home: Path) -> None:
    register(home, "c1", demand_policy(cooldown="1h"))
    lc = FakeLifecycle(home, {"c1": 2})
    kube = FakeKube()
    kube.pending = 4
    clock = Clock()
    job = AutoscaleJob(lc, sources={"kubernetes": kube}, now=clock)
    assert only(job.tick()).applied  # scale up 2 -> 3
    for _ in range(60):  # more than any fixed look-back window
        clock.advance(seconds=20)
        assert only(job.tick()).rule == "cooldown"
    clock.advance(minutes=40)  # 1 h 0 min after the action
    assert only(job.tick()).action == "scale_up"


# --- destroy ------------------------------------------------------------------------------------------------------


def test_a_new_cluster_of_the_same_name_inherits_no_idle_timers_nor_cooldown(home: Path) -> None:
    register(home, "c1", demand_policy(cooldown="1h"))
    lc = FakeLifecycle(home, {"c1": 2})
    kube = FakeKube()
    kube.idle = {"2"}
    clock = Clock()
    AutoscaleJob(lc, sources={"kubernetes": kube}, now=clock).tick()
    with Store.open(home) as store:
        store.append("c1", Phase.SCALED, {"workers": 2, "removed": []})
        store.append("c1", Phase.DESTROYED, {"infra_id": "infra-c1"})  # what `cluster destroy` writes
    # Re-created at once under the same name; its worker "2" is another VM.
    register(home, "c1", demand_policy(cooldown="1h"))
    clock.advance(hours=1)
    new = AutoscaleJob(FakeLifecycle(home, {"c1": 2}), sources={"kubernetes": kube}, now=clock)
    assert only(new.tick()).action == "none"
    assert kube.contexts[-1].idle_since == {}  # the old cluster's timer for "2" is not carried over
    assert decisions(home, "c1")[-1].detail["idle_since"] == {"2": clock().isoformat()}
    kube.pending = 4
    assert only(new.tick()).action == "scale_up"  # no cooldown from the old cluster's scaling


def test_forget_drops_the_policy_and_the_cached_kubeconfig(home: Path) -> None:
    register(home, "c1", demand_policy())
    cache = kube_cache_path(home, "c1")
    cache.parent.mkdir(parents=True)
    cache.write_text("apiVersion: v1\n")
    job_mod.forget(home, "c1")
    assert not job_mod.policy_path(home, "c1").exists() and not cache.exists()
    job_mod.forget(home, "c1")  # twice is fine
    assert decisions(home, "c1") == []  # nothing else touched


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked
