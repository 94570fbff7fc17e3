"""Figure 8 (state backends): `cluster list` of N clusters and one autoscale tick, SQLite vs PostgreSQL.

The PostgreSQL server is a throw-away one on 127.0.0.1 (tests/pglab.py: initdb in a temp dir, a free port, trust
authentication, durability off), started for this figure and removed at its end. Both backends are filled the same
way, through the state's store API (``open_store`` with the URL in use), and measured alternately in the same run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from bench.common import PROVISION, Context, destroy_all, fill_registry, median, must, run
from bench.load import _actions, _tick, destroy_managed, managed_clusters
from bench.report import ERROR, FAIL, NA, Row, verdict
from provisioner.state import open_store, use_url

GOAL = 1.5  # PostgreSQL / SQLite, at most
TICK_RUNS = 3


def _ratio_row(what: str, sqlite: list[float], pg: list[float], notes: str, ok: bool = True) -> Row:
    ratio = median(pg) / median(sqlite) if median(sqlite) > 0 else float("inf")
    spread = lambda xs: f"min {min(xs):.3f}, max {max(xs):.3f}"  # noqa: E731
    return Row(
        "8",
        what,
        f"PostgreSQL {median(pg):.3f} s / SQLite {median(sqlite):.3f} s = {ratio:.2f}x",
        f"≤ {GOAL}x",
        verdict(ratio <= GOAL and ok),
        f"SQLite {spread(sqlite)}; PostgreSQL {spread(pg)}; {notes}",
    )


def _cluster_list(ctx: Context, pg_url: str) -> Row:
    n = ctx.args.registry
    runs = max(ctx.args.runs, 10)
    sqlite_home = ctx.home("fig8-sqlite")
    pg_home = ctx.home("fig8-pg")
    ctx.say(f"figure 8: filling {n} clusters into SQLite and into PostgreSQL")
    fill_registry(sqlite_home, n, ctx.im_url)
    fill_registry(pg_home, n, ctx.im_url, pg_url)
    envs = {
        "SQLite": ctx.env(sqlite_home, im=False),
        "PostgreSQL": {**ctx.env(pg_home, im=False), "PROVISION_STATE_URL": pg_url},
    }
    cmd = [str(PROVISION), "cluster", "list", "-o", "json"]
    listed = {}
    for name, env in envs.items():  # once each, unmeasured: warms the page cache and checks the count
        listed[name] = len(json.loads(must(run(cmd, env), f"provision cluster list ({name})")))
    times: dict[str, list[float]] = {name: [] for name in envs}
    ctx.say(f"figure 8: `provision cluster list -o json`, {runs} runs each, alternating")
    for _ in range(runs):
        for name, env in envs.items():
            start = time.perf_counter()
            must(run(cmd, env), f"provision cluster list ({name})")
            times[name].append(time.perf_counter() - start)
    ok = all(count == n for count in listed.values())
    return _ratio_row(
        f"provision cluster list -o json ({n} clusters in the registry), median of {runs} each, alternating",
        times["SQLite"],
        times["PostgreSQL"],
        f"listed: SQLite {listed['SQLite']}, PostgreSQL {listed['PostgreSQL']}; no IM call; the PostgreSQL "
        "server local on 127.0.0.1 (TCP, durability off)",
        ok,
    )


def _autoscale(ctx: Context, pg_url: str) -> list[Row]:
    n = ctx.args.autoscale
    home = ctx.home("fig8-autoscale")
    names = [f"st-{i:03d}" for i in range(n)]
    ctx.say(f"figure 8: set-up, {n} real IM clusters (oscar, 1 worker) created up front in SQLite")
    try:
        states, setup = managed_clusters(ctx, home, names, ctx.tmp / "fig8-policy.yaml")
        configured = sum(1 for s in states if s == "configured")
        # Straight to IM (the proxy costs a little per request and is not what is compared here).
        with open_store(home) as store:
            for name in names:
                store.update_cluster(name, im_url=ctx.im_url)
        sqlite_env = {**ctx.env(home), "PROVISION_IM_URL": ctx.im_url}
        pg_env = {**sqlite_env, "PROVISION_STATE_URL": pg_url}
        # The same registry, journal and decisions in PostgreSQL: the tool's own copy (policies and secrets stay
        # under the same PROVISION_HOME, which both backends share).
        ctx.say("figure 8: `provision state migrate --to` PostgreSQL")
        must(run([str(PROVISION), "state", "migrate", "--to", pg_url], sqlite_env), "provision state migrate")
        times: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
        notes: list[str] = []
        ok = True
        for i in range(TICK_RUNS):
            for name, env in (("SQLite", sqlite_env), ("PostgreSQL", pg_env)):
                ctx.say(f"figure 8: autoscale tick over {n} clusters on {name} ({i + 1}/{TICK_RUNS})")
                wall, proc, outcomes = _tick(env)
                times[name].append(wall)
                good = proc.returncode == 0 and len(outcomes) == n and not _actions(outcomes).get("error")
                ok = ok and good
                if i == 0:
                    notes.append(f"{name}: exit {proc.returncode}, decisions {json.dumps(_actions(outcomes))}")
                if not good:
                    notes.append(f"{name} stderr: {(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}")
    finally:
        use_url(None)
        ctx.say(f"figure 8: destroying the {n} clusters")
        teardown, left = destroy_managed(ctx, home, names)
    rows = [
        _ratio_row(
            f"provision autoscale run --once over {n} clusters (schedule-only policies, straight to IM), "
            f"median of {TICK_RUNS} each, alternating",
            times["SQLite"],
            times["PostgreSQL"],
            "; ".join(notes) + f"; the {configured}/{n} clusters created up front ({setup:.0f} s, not timed), copied "
            f"to PostgreSQL by `provision state migrate`, destroyed after ({teardown:.0f} s); default --concurrency 8",
            ok,
        )
    ]
    if left:
        rows.append(Row("8", "infrastructures left after figure 8", str(len(left)), "0", FAIL))
        destroy_all(ctx, left)
    return rows


def figure(ctx: Context) -> list[Row]:
    try:
        from tests.pglab import PgLab, available
    except ImportError as exc:
        return [Row("8", "state backends: SQLite vs PostgreSQL", "not available", "—", NA, f"{exc}")]
    if not available():
        return [
            Row("8", "state backends: SQLite vs PostgreSQL", "not available", "—", NA, "no PostgreSQL: .ci/system-deps")
        ]
    ctx.say("figure 8: starting a throw-away PostgreSQL on 127.0.0.1")
    lab = PgLab().start()
    rows: list[Row] = []
    try:
        steps: list[tuple[str, Callable[[Context, str], Row | list[Row]]]] = [
            ("cluster list", _cluster_list),
            ("autoscale tick", _autoscale),
        ]
        for title, step in steps:
            url = lab.url(lab.create_database())
            try:
                got = step(ctx, url)
            except Exception as exc:  # noqa: BLE001 - one row failing must not hide the other
                got = Row("8", f"{title}: SQLite vs PostgreSQL", ERROR, f"≤ {GOAL}x", FAIL, f"{exc}"[:400])
            finally:
                use_url(None)
            rows.extend(got if isinstance(got, list) else [got])
    finally:
        lab.stop()
    return rows
