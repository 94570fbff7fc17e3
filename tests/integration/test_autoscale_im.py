"""The autoscale job through the real CLI against the real IM (local-sim), checked against IM's own VM list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from provisioner.autoscale.job import AutoscaleJob, policy_path
from provisioner.autoscale.signals import kube_cache_path
from provisioner.im import IMClient
from provisioner.lifecycle import Lifecycle
from provisioner.settings import ENV_LOCK_TIMEOUT, Settings
from provisioner.state import Store
from provisioner.state.locks import cluster_lock, cluster_lock_path
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.fakesources import FakeKube

pytestmark = pytest.mark.im


BOUNDS = {"version": 1, "min_workers": 1, "max_workers": 5, "cooldown": "10m", "max_step": 3}


def policy(path: Path, **entry: object) -> Path:
    """A schedule-only policy whose one entry fires every minute (so it is in effect now, on the real clock)."""
    doc = {
        **BOUNDS,
        "schedules": [{"name": entry.pop("name"), "cron": "* * * * *", "timezone": "Europe/Madrid", **entry}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def workers_in_im(client: IMClient, infra_id: str) -> list[str]:
    return [vm for vm in client.vm_ids(infra_id) if client.vm_info(infra_id, vm).name != "front"]


@pytest.fixture
def cluster(local_im: RunningIM, tmp_path: Path) -> tuple[CLI, str]:
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    made = cli.json("cluster", "create", "elastic", "-t", "oscar", "-s", "local-sim", "--set", "wn_num=1")
    return cli, str(made["infra_id"])  # type: ignore[index]


def test_scheduled_ticks_raise_then_lower_and_explain_says_why(
    cluster: tuple[CLI, str], local_im: RunningIM, tmp_path: Path
) -> None:
    cli, infra_id = cluster
    client = local_im.client()
    office = policy(tmp_path / "office.yaml", name="office-hours", min=3)
    night = policy(tmp_path / "night.yaml", name="night", max=1)
    assert cli("autoscale", "enable", "elastic", "--policy", str(office)).returncode == 0

    # A dry run decides and logs, and changes nothing in IM.
    dry = cli.json("autoscale", "run", "--once", "--dry-run")
    assert (dry[0]["action"], dry[0]["dry_run"], dry[0]["applied"]) == ("scale_up", True, False)  # type: ignore[index]
    assert len(workers_in_im(client, infra_id)) == 1

    # Tick 1: the schedule's floor is 3, IM has 1 worker: scale up by 2.
    first = cli.json("autoscale", "run", "--once")
    assert [(o["cluster"], o["action"], o["current"], o["target"], o["applied"]) for o in first] == [  # type: ignore[union-attr]
        ("elastic", "scale_up", 1, 3, True)
    ]
    assert len(workers_in_im(client, infra_id)) == 3

    # A tick with nothing to do: IM's live count is already at the floor.
    steady = cli.json("autoscale", "run", "--once")
    assert steady[0]["action"] == "none"  # type: ignore[index]

    # Tick 2, later, under the night policy (ceiling 1): scale down by 2, naming the workers it removes.
    assert cli("autoscale", "enable", "elastic", "--policy", str(night)).returncode == 0
    second = cli.json("autoscale", "run", "--once")
    (down,) = second  # type: ignore[misc]
    assert (down["action"], down["current"], down["target"], down["applied"]) == ("scale_down", 3, 1, True)
    remaining = workers_in_im(client, infra_id)
    assert len(remaining) == 1 and not set(down["remove"]) & set(remaining)

    explained = cli.json("autoscale", "explain", "elastic", "--last", "10")
    actions = [(e["action"], e["rule"], e["applied"]) for e in explained]  # type: ignore[union-attr]
    assert actions == [
        ("scale_up", "schedule:office-hours floor", False),  # the dry run
        ("scale_up", "schedule:office-hours floor", True),
        ("none", "steady", False),
        ("scale_down", "schedule:night ceiling", True),
    ]
    text = cli("autoscale", "explain", "elastic")
    assert "office-hours" in text.stdout and "night" in text.stdout and "action taken: yes" in text.stdout

    # Destroying the cluster drops its policy and cached kubeconfig: a new "elastic" would not inherit them.
    cache = kube_cache_path(cli.home, "elastic")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("apiVersion: v1\n")
    assert cli("cluster", "destroy", "elastic", "--yes").returncode == 0
    assert not policy_path(cli.home, "elastic").exists() and not cache.exists()
    assert cli.json("autoscale", "explain", "elastic", "--last", "10")  # the decision log stays


def test_one_policy_over_a_day_raises_at_the_schedule_then_removes_the_idle_worker_it_names(
    cluster: tuple[CLI, str], local_im: RunningIM, tmp_path: Path
) -> None:
    """The job itself (in-process) with a fake clock, against the real IM: office hours raise the floor to 3; in
    the evening the floor is 1 again and the *oldest* worker (not the newest, which a plain scale-down would
    remove) is idle: after idle_after, exactly that worker goes, through IM's removal_list."""
    cli, infra_id = cluster
    client = local_im.client()
    doc = {
        **BOUNDS,
        "schedules": [
            {"name": "office-hours", "cron": "0 8 * * MON-FRI", "timezone": "Europe/Madrid", "min": 3},
            {"name": "evening", "cron": "0 18 * * MON-FRI", "timezone": "Europe/Madrid", "min": 1},
        ],
        "demand": {"pending_pods": True, "oscar_jobs": False, "idle_after": "15m"},
    }
    (tmp_path / "day.yaml").write_text(yaml.safe_dump(doc))
    assert cli("autoscale", "enable", "elastic", "--policy", str(tmp_path / "day.yaml")).returncode == 0
    madrid = ZoneInfo("Europe/Madrid")
    clock = {"now": datetime(2030, 3, 4, 8, 5, tzinfo=madrid)}  # a Monday, office hours
    kube = FakeKube()  # no pending pods; the workers in kube.idle run nothing
    lc = Lifecycle(Settings(home=cli.home), client_factory=lambda _: local_im.client(), default_im_url=local_im.url)
    job = AutoscaleJob(lc, sources={"kubernetes": kube}, now=lambda: clock["now"])
    try:
        (up,) = job.tick()
        assert (up.action, up.rule, up.current, up.target, up.applied) == (
            "scale_up",
            "schedule:office-hours floor",
            1,
            3,
            True,
        )
        workers = sorted(workers_in_im(client, infra_id), key=int)
        assert len(workers) == 3
        oldest = workers[0]

        clock["now"] = datetime(2030, 3, 4, 18, 10, tzinfo=madrid)  # evening: floor 1; the oldest worker is idle
        kube.idle = {oldest}
        (first_seen,) = job.tick()
        assert (first_seen.action, first_seen.current) == ("none", 3)  # idle since now: not 15 minutes yet
        clock["now"] += timedelta(minutes=16)
        (down,) = job.tick()
        assert (down.action, down.rule, down.current, down.target, down.remove, down.applied) == (
            "scale_down",
            "idle",
            3,
            2,
            [oldest],
            True,
        )
    finally:
        lc.close()
    assert sorted(workers_in_im(client, infra_id), key=int) == workers[1:]  # the named one went, not the newest

    explained = cli.json("autoscale", "explain", "elastic", "--last", "3")
    assert [(e["action"], e["rule"], e["applied"]) for e in explained] == [  # type: ignore[union-attr]
        ("scale_up", "schedule:office-hours floor", True),
        ("none", "steady", False),
        ("scale_down", "idle", True),
    ]
    assert explained[-1]["remove"] == [oldest]  # type: ignore[index]
    text = cli("autoscale", "explain", "elastic", "--last", "1").stdout
    assert f"removed: {oldest}" in text and "most idle first" in text
    assert cli("cluster", "destroy", "elastic", "--yes").returncode == 0


def test_the_long_running_job_ticks_until_sigterm(
    cluster: tuple[CLI, str], local_im: RunningIM, tmp_path: Path
) -> None:
    cli, infra_id = cluster
    office = policy(tmp_path / "office.yaml", name="office-hours", min=2)
    assert cli("autoscale", "enable", "elastic", "--policy", str(office)).returncode == 0
    proc = cli.popen("autoscale", "run", "--interval", "1")
    try:
        deadline = time.monotonic() + 120  # a safety net against a hang, not a timing assertion
        while len(cli.json("autoscale", "explain", "elastic", "--last", "10")) < 2:  # type: ignore[arg-type]
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the job never ticked twice"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # Decisions are the command's output (stdout, one line each), as for --once; stderr has only log lines.
    actions = [e["action"] for e in cli.json("autoscale", "explain", "elastic", "--last", "10")]  # type: ignore[union-attr]
    assert actions[:2] == ["scale_up", "none"]  # the second tick recounted IM's workers
    assert "elastic: scale_up 1 -> 2" in out and "elastic: none 2 -> 2" in out
    assert "elastic: scale_up" not in err
    assert len(workers_in_im(local_im.client(), infra_id)) == 2
    assert cli("cluster", "destroy", "elastic", "--yes").returncode == 0


def waiting_at(lock: Path, procs: list[subprocess.Popen[str]], deadline: float = 120.0) -> None:
    """Until every process has the lock file open, i.e. is in the lock's wait loop (a safety net, not a timing
    assertion: the deadline only turns a hang into a failure)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        opened = 0
        for proc in procs:
            assert proc.poll() is None, proc.communicate()
            fds = Path(f"/proc/{proc.pid}/fd")
            links = []
            for fd in fds.iterdir():
                try:
                    links.append(os.readlink(fd))
                except OSError:
                    continue  # closed meanwhile
            opened += str(lock) in links
        if opened == len(procs):
            return
        time.sleep(0.05)
    pytest.fail(f"the ticks never reached the cluster lock {lock}")


def test_two_concurrent_ticks_make_exactly_one_action(
    cluster: tuple[CLI, str], local_im: RunningIM, tmp_path: Path
) -> None:
    cli, infra_id = cluster
    client = local_im.client()
    office = policy(tmp_path / "office.yaml", name="office-hours", min=3)
    assert cli("autoscale", "enable", "elastic", "--policy", str(office)).returncode == 0
    before = client.vm_ids(infra_id)
    # The test holds the cluster's lock (the one `cluster scale` and the ticks take) while both ticks start, so both
    # are waiting for it at once when it is released: they overlap for sure, and must still make one action.
    lock = cluster_lock_path(cli.home, "elastic")
    with cluster_lock(cli.home, "elastic", 10, purpose="test: holding both ticks"):
        env = {ENV_LOCK_TIMEOUT: "300"}
        procs = [cli.popen("autoscale", "run", "--once", "-o", "json", env=env) for _ in range(2)]
        waiting_at(lock, procs)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out)[0])
    results.sort(key=lambda r: r["action"])
    assert [(r["action"], r["current"], r["target"], r["applied"]) for r in results] == [
        ("none", 3, 3, False),  # the second recounted IM's workers after the first one's action
        ("scale_up", 1, 3, True),
    ]
    # IM's side: exactly two VMs were ever created (IM numbers VMs in order; a second action would show ids past
    # them, even had it been undone), and three workers are there.
    after = client.vm_ids(infra_id)
    assert sorted(after, key=int) == [str(i) for i in range(len(before) + 2)]
    assert len(workers_in_im(client, infra_id)) == 3
    with Store.open(cli.home) as store:
        phases = [e.phase.value for e in store.journal("elastic")]
    assert (phases.count("scaling"), phases.count("scaled")) == (1, 1)
    assert cli("cluster", "destroy", "elastic", "--yes").returncode == 0


def test_unreadable_demand_source_holds_and_never_scales_down(
    cluster: tuple[CLI, str], local_im: RunningIM, tmp_path: Path
) -> None:
    cli, infra_id = cluster
    # Two workers idle "forever" would be removed -- if the job could read Kubernetes. It cannot (the made-up
    # addresses of local-sim answer no SSH), so it must hold.
    assert cli("cluster", "scale", "elastic", "--workers", "2").returncode == 0
    demand = tmp_path / "demand.yaml"
    demand.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "min_workers": 0,
                "max_workers": 5,
                "cooldown": 0,
                "demand": {"pending_pods": True, "oscar_jobs": False, "idle_after": "1m"},
            }
        )
    )
    out = cli.json("autoscale", "run", "--once", "--cluster", "elastic", "--policy", str(demand))
    (tick,) = out  # type: ignore[misc]
    assert tick["action"] == "hold" and tick["applied"] is False
    assert "kubernetes" in tick["reason"]
    assert len(workers_in_im(local_im.client(), infra_id)) == 2
    (entry,) = cli.json("autoscale", "explain", "elastic", "--last", "1")  # type: ignore[misc]
    assert entry["signals"]["errors"] and entry["signals"]["errors"][0].startswith("kubernetes:")
    assert cli("cluster", "destroy", "elastic", "--yes").returncode == 0


def test_bad_policy_is_refused_with_the_field(cluster: tuple[CLI, str], tmp_path: Path) -> None:
    cli, _ = cluster
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"version": 1, "min_workers": 4, "max_workers": 2}))
    result = cli("autoscale", "enable", "elastic", "--policy", str(bad))
    assert result.returncode == 2
    assert "max_workers" in result.stderr.splitlines()[0]
    tz = tmp_path / "tz.yaml"
    tz.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "min_workers": 1,
                "max_workers": 2,
                "schedules": [{"name": "x", "cron": "0 8 * * *", "timezone": "Mars/Olympus", "min": 2}],
            }
        )
    )
    result = cli("autoscale", "run", "--once", "--cluster", "elastic", "--policy", str(tz))
    assert result.returncode == 2 and "schedules[0].timezone" in result.stderr
    assert cli("cluster", "destroy", "elastic", "--yes").returncode == 0


def test_a_schedule_only_tick_costs_one_im_request_until_the_vms_change(
    cluster: tuple[CLI, str], local_im: RunningIM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, infra_id = cluster
    sent: list[tuple[str, str]] = []
    real_request = IMClient._request

    def counting(self: IMClient, method: str, path: str, **kwargs: object) -> object:
        sent.append((method, path))
        return real_request(self, method, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(IMClient, "_request", counting)
    steady = policy(tmp_path / "steady.yaml", name="steady", min=1)
    assert cli("autoscale", "enable", "elastic", "--policy", str(steady)).returncode == 0
    lc = Lifecycle(Settings(home=cli.home), client_factory=lambda _: local_im.client(), default_im_url=local_im.url)
    job = AutoscaleJob(lc)
    try:
        (first,) = job.tick()
        assert (first.action, first.current) == ("none", 1)
        assert sent == [("GET", f"/infrastructures/{infra_id}/state")]

        # A worker added behind the tool's back: the VM ids differ, so the tick reads every VM once, refreshes the
        # registry's map, and the next tick is one request again, counting 2.
        local_im.client().add_resources(infra_id, lc._render_for(lc.record("elastic"), wn_count=2, removal=[]))
        sent.clear()
        (second,) = job.tick()
        assert second.current == 2 and len(sent) > 1 and sent[0][1].endswith("/state")
        sent.clear()
        (third,) = job.tick()
        assert third.current == 2 and sent == [("GET", f"/infrastructures/{infra_id}/state")]
    finally:
        lc.close()
