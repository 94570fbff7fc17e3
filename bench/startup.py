"""Figure 2 (CLI start-up), figure 3 (template render + validate, warm) and figure 6 (polling cost, fake clock)."""

from __future__ import annotations

import random
import time

from bench.common import PROVISION, Context, median, must, run
from bench.report import Row, verdict
from provisioner import tosca
from provisioner.polling import DEFAULT_SCHEDULE, wait_until
from provisioner.state import Store, new_deployment_id

# --- figure 2 ----------------------------------------------------------------------------------------------------


def fill_registry(ctx: Context, count: int) -> None:
    home = ctx.home("fig2-registry")
    vms = [
        {"id": "0", "role": "front", "state": "configured", "private_ip": "10.0.0.1", "public_ip": None},
        {"id": "1", "role": "wn", "state": "configured", "private_ip": "10.0.0.2", "public_ip": None},
    ]
    with Store.open(home) as store, store.transaction():
        for i in range(count):
            store.upsert_cluster(
                f"reg-{i:04d}",
                im_url=ctx.im_url,
                template="oscar",
                site="local-sim",
                inputs={"wn_num": 1},
                deployment_id=new_deployment_id(),
                infra_id=f"00000000-0000-0000-0000-{i:012d}",
                state="configured",
                workers=1,
                extra={"vms": vms},
            )


def startup(ctx: Context) -> list[Row]:
    runs = max(ctx.args.runs, 10)
    env = ctx.env(ctx.home("fig2-empty"), im=False)
    must(run([str(PROVISION), "--help"], env), "provision --help")  # warm the page cache once
    helps = []
    for _ in range(runs):
        start = time.perf_counter()
        must(run([str(PROVISION), "--help"], env), "provision --help")
        helps.append(time.perf_counter() - start)
    n = ctx.args.registry
    fill_registry(ctx, n)
    env = ctx.env(ctx.home("fig2-registry"), im=False)
    out = must(run([str(PROVISION), "cluster", "list", "-o", "json"], env), "provision cluster list")
    listed = out.count('"infra_id"')
    lists = []
    for _ in range(runs):
        start = time.perf_counter()
        must(run([str(PROVISION), "cluster", "list"], env), "provision cluster list")
        lists.append(time.perf_counter() - start)
    spread = lambda xs: f"min {min(xs):.3f}, max {max(xs):.3f}"  # noqa: E731
    return [
        Row(
            "2",
            f"provision --help, median of {runs}",
            f"{median(helps):.3f} s",
            "≤ 0.25 s",
            verdict(median(helps) <= 0.25),
            spread(helps),
        ),
        Row(
            "2",
            f"provision cluster list ({n} clusters in the registry, text), median of {runs}",
            f"{median(lists):.3f} s",
            "≤ 0.4 s",
            verdict(median(lists) <= 0.4),
            f"{spread(lists)}; -o json listed {listed}; no IM call",
        ),
    ]


# --- figure 3 ----------------------------------------------------------------------------------------------------


def template(ctx: Context) -> list[Row]:
    def once() -> float:
        start = time.perf_counter()
        site = tosca.resolve_site("local-sim", {})
        inputs = tosca.prepare_inputs("oscar", {}, secrets_store=None)
        doc = tosca.render("oscar", site, inputs, cluster_name="bench", deployment_id=new_deployment_id())
        tosca.validate_offline(doc)
        tosca.dump(doc)
        return time.perf_counter() - start

    cold = once()
    warm = [once() for _ in range(max(ctx.args.runs, 5))]
    return [
        Row(
            "3",
            f"oscar on local-sim: prepare_inputs + render + validate_offline + dump, in-process, "
            f"median of {len(warm)} warm",
            f"{median(warm):.3f} s",
            "≤ 0.3 s",
            verdict(median(warm) <= 0.3),
            f"first (cold) call {cold:.3f} s; warm min {min(warm):.3f}, max {max(warm):.3f}",
        )
    ]


# --- figure 6 ----------------------------------------------------------------------------------------------------

DURATIONS = (10, 30, 60, 300, 600, 1800, 3600)


def simulate(duration: float, rand: object) -> tuple[int, float]:
    """Requests and detection lag for a deployment that becomes configured ``duration`` s in (fake clock)."""
    now = [0.0]
    checks = [0]

    def check() -> str | None:
        checks[0] += 1
        return "configured" if now[0] >= duration else None

    def sleep(seconds: float) -> None:
        now[0] += seconds

    wait_until(check, timeout=duration * 2 + 100, clock=lambda: now[0], sleep=sleep, rand=rand)  # type: ignore[arg-type]
    return checks[0], now[0] - duration


def polling(ctx: Context) -> list[Row]:
    rows = []
    for duration in DURATIONS:
        # Worst case over jitter: none (rand=0), full (rand→1), and 200 seeded random draws.
        results = [simulate(duration, lambda: 0.0), simulate(duration, lambda: 0.999999)]
        rng = random.Random(duration)
        results += [simulate(duration, rng.random) for _ in range(200)]
        worst_req = max(r for r, _ in results)
        worst_lag = max(lag for _, lag in results)
        lags = sorted(lag for _, lag in results)
        req_goal = 30 + duration / 15
        lag_goal = max(1.0, 0.05 * duration)
        rows.append(
            Row(
                "6",
                f"T = {duration} s: requests (worst of 202 jitter draws)",
                str(worst_req),
                f"≤ {req_goal:.1f}",
                verdict(worst_req <= req_goal),
            )
        )
        rows.append(
            Row(
                "6",
                f"T = {duration} s: lag before configured is noticed (worst)",
                f"{worst_lag:.2f} s",
                f"≤ {lag_goal:g} s",
                verdict(worst_lag <= lag_goal + 1e-9),
                f"median lag {lags[len(lags) // 2]:.2f} s; schedule's bound {DEFAULT_SCHEDULE.max_lag(duration):.2f} s",
            )
        )
    return rows
