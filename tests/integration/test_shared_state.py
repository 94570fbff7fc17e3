"""A team's shared state: two operators (two ``provision`` processes, each with its own PROVISION_HOME) on one
PostgreSQL database (a real server: tests/pglab.py), against the real IM, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from provisioner.im import IMClient
from provisioner.settings import ENV_LOCK_TIMEOUT, ENV_SECRETS_REF, ENV_STATE_URL
from provisioner.state import Phase
from provisioner.state.pg import PgStore
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy
from tests.pglab import PgLab

pytestmark = pytest.mark.im

PASSWORD = "Team-db-pw-7731"  # trust authentication ignores it; it must show up nowhere


@pytest.fixture
def team_url(pg_url: str) -> str:
    return pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")


def operator(tmp_path: Path, who: str, local_im: RunningIM, url: str) -> CLI:
    """One operator's ``provision``: a home of their own, the team's IM credentials and state database."""
    cli = CLI(tmp_path / who / "home", local_im.url, local_im.auth_file)
    cli.env[ENV_STATE_URL] = url
    return cli


def at_once(clis: list[CLI], *args: str, env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """The same command from every operator, started together; their results once all have ended."""
    procs = [cli.popen(*args, env=env) for cli in clis]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_two_operators_creating_the_same_cluster_make_one_infrastructure(
    local_im: RunningIM, team_url: str, tmp_path: Path, im_client: IMClient
) -> None:
    ann, bob = operator(tmp_path, "ann", local_im, team_url), operator(tmp_path, "bob", local_im, team_url)
    before = set(im_client.list_infrastructures())
    create = ("cluster", "create", "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1", "-o", "json")

    # No waiting for the lock: one creates, the other is told at once who holds it (exit 5).
    results = at_once([ann, bob], *create[:2], "team-a", *create[2:], env={ENV_LOCK_TIMEOUT: "0"})
    assert sorted(r.returncode for r in results) == [0, 5], [r.stderr for r in results]
    winner, loser = sorted(results, key=lambda r: r.returncode)
    made = json.loads(winner.stdout)
    assert set(im_client.list_infrastructures()) - before == {made["infra_id"]}
    assert "cluster 'team-a' is busy: another provision command (pid " in loser.stderr
    assert "'cluster create', since " in loser.stderr

    # Waiting for it: the second finds the first's cluster in the shared registry and adopts it: still one.
    results = at_once([ann, bob], *create[:2], "team-b", *create[2:])
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    views = [json.loads(r.stdout) for r in results]
    assert views[0]["infra_id"] == views[1]["infra_id"]
    assert set(im_client.list_infrastructures()) - before == {made["infra_id"], views[0]["infra_id"]}

    # One registry and one journal for both; nothing of it in their homes.
    assert [c["name"] for c in json.loads(bob("cluster", "list", "-o", "json").stdout)] == ["team-a", "team-b"]
    with PgStore.open(team_url) as store:
        for name in ("team-a", "team-b"):
            assert [e.phase for e in store.journal(name)].count(Phase.SUBMITTING) == 1
    assert not (ann.home / "state.db").exists() and not (bob.home / "state.db").exists()
    assert not (ann.home / "locks").exists() and not (bob.home / "locks").exists()

    # Bob removes what Ann made; IM is left as it was.
    for name in ("team-a", "team-b"):
        destroyed = bob("cluster", "destroy", name, "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
    assert set(im_client.list_infrastructures()) - before == set()
    assert ann.json("cluster", "list") == []

    # The database's password was never shown, nor kept in the database.
    for result in results:
        assert PASSWORD not in result.stdout + result.stderr
    with psycopg.connect(team_url, autocommit=True) as conn:
        dumped = conn.execute(
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM journal) t UNION ALL "
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM lock_holders) t"
        ).fetchall()
    assert PASSWORD not in str(dumped)


def test_a_bad_state_url_is_bad_input_and_hides_its_password(tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", "http://127.0.0.1:9", tmp_path / "auth.dat")
    result = cli.in_process("--state", "mysql://ops:Sekret-9871@db/provision", "cluster", "list")
    assert result.returncode == 2
    assert result.stderr.startswith("error: state_url (flag): must be sqlite:///PATH")
    assert "Sekret-9871" not in result.stderr and "mysql://ops:***@db/provision" in result.stderr


def test_an_unreachable_state_database_is_named_without_its_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cli = CLI(tmp_path / "home", "http://127.0.0.1:9", tmp_path / "auth.dat")
    url = f"postgresql://ops:Sekret-9871@127.0.0.1:{port}/provision?connect_timeout=2"
    result = cli.in_process("cluster", "list", env={ENV_STATE_URL: url})
    assert result.returncode == 3  # unreachable, as IM down is
    assert result.stderr.startswith(
        f"error: cannot connect to the state database postgresql://ops:***@127.0.0.1:{port}"
    )
    assert "Sekret-9871" not in result.stderr
    assert not (tmp_path / "home" / "state.db").exists()


def test_the_team_database_stopped_exits_3_with_its_cause_and_runbook(
    pg_lab: PgLab, team_url: str, tmp_path: Path
) -> None:
    """The real server, stopped: every kind of command says the same one thing (and IM is not blamed)."""
    cli = CLI(tmp_path / "home", "http://127.0.0.1:9", tmp_path / "auth.dat")
    assert cli("--state", team_url, "cluster", "list").returncode == 0  # the team's database, in use
    pg_lab.halt()
    try:
        results = [
            cli("--state", team_url, "cluster", "list"),
            cli("cluster", "status", "team-a", env={ENV_STATE_URL: team_url}),
            cli("state", "doctor", env={ENV_STATE_URL: team_url}),
        ]
    finally:
        pg_lab.resume()
    shown = team_url.replace(PASSWORD, "***")
    for result in results:
        lines = result.stderr.splitlines()
        assert result.returncode == 3, result.stderr
        assert lines[0].startswith(f"error: cannot connect to the state database {shown}: "), lines
        assert lines[0].endswith("Connection refused"), lines
        assert lines[2:] == [
            "cause: state-unreachable: the state database did not answer or refused the connection",
            "see provision runbook state-down (provisioner/data/runbooks/state-down.md)",
        ]
        assert PASSWORD not in result.stdout + result.stderr and "Traceback" not in result.stderr


def last_phase(url: str, name: str) -> Phase | None:
    with PgStore.open(url) as store:
        entry = store.last_phase(name)
    return None if entry is None else entry.phase


def test_the_database_restarted_mid_create_stops_it_clearly_and_the_rerun_converges(
    local_im: RunningIM, pg_lab: PgLab, team_url: str, tmp_path: Path, im_client: IMClient
) -> None:
    """PostgreSQL restarted (as its service is: sessions ended, then up again) while a create waits for IM. The
    create's cluster lock died with its session: it stops at its next write instead of going on unlocked, in one
    line (exit 3, the cause and the runbook); typing the command again finishes the job with the one infrastructure.
    IM's state answers are slowed by the fault proxy so that the restart lands inside the wait."""
    proxy = FaultProxy(local_im.url).start()
    try:
        ann = CLI(tmp_path / "ann" / "home", proxy.url, local_im.auth_file)
        ann.env.update({ENV_STATE_URL: team_url, "PROVISION_CONNECT_TIMEOUT": "2", "PROVISION_READ_TIMEOUT": "30"})
        before = set(im_client.list_infrastructures())
        proxy.add("pass", "delay:4")  # the POST, then a first state poll that answers after 4 s
        create = ("cluster", "create", "db-restart", "-t", "kubernetes", "-s", "local-sim", "--set", "wn_num=1")
        proc = ann.popen(*create, "--wait", "-o", "json")
        deadline = time.monotonic() + 120
        while last_phase(team_url, "db-restart") is not Phase.WAITING:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the create never reached its wait"
            time.sleep(0.02)
        pg_lab.halt()  # -m fast: every session ended, the create's lock with it
        pg_lab.resume()
        out, err = proc.communicate(timeout=180)

        assert proc.returncode == 3, err
        lines = err.splitlines()
        assert lines[0].startswith(
            "error: cluster 'db-restart' is no longer locked: the connection holding its lock in the state database "
            f"{team_url.replace(PASSWORD, '***')} broke"
        ), lines
        assert lines[0].endswith("; stopped rather than go on without the lock")
        assert lines[1:] == [
            "hint: once the state database answers, run the same command again: it resumes from the journal "
            "(provision state doctor lists what was left unfinished)",
            "cause: state-unreachable: the state database did not answer or refused the connection",
            "see provision runbook state-down (provisioner/data/runbooks/state-down.md)",
        ]
        assert out == "" and PASSWORD not in err and "Traceback" not in err
        assert last_phase(team_url, "db-restart") is Phase.WAITING  # nothing written after the lock was gone
        made = set(im_client.list_infrastructures()) - before
        assert len(made) == 1  # IM went on with what it was sent

        doctor = ann("state", "doctor", "-o", "json")
        assert doctor.returncode == 1
        report = json.loads(doctor.stdout)
        assert report["locks"] == []  # the lock died with its session: nobody holds it
        assert [(u["name"], u["resume"]) for u in report["unfinished"]] == [
            ("db-restart", "provision cluster status db-restart --wait")
        ]

        again = ann(*create, "--wait", "-o", "json")
        assert again.returncode == 0, again.stderr
        view = json.loads(again.stdout)
        assert view["state"] == "configured" and {view["infra_id"]} == made
        assert set(im_client.list_infrastructures()) - before == made
        with PgStore.open(team_url) as store:
            record = store.get_cluster("db-restart")
            phases = [e.phase for e in store.journal("db-restart")]
        assert record is not None and (record.infra_id, record.state) == (view["infra_id"], "configured")
        assert phases.count(Phase.SUBMITTING) == 1 and phases[-1] is Phase.CONFIGURED
        assert ann("state", "doctor").returncode == 0
        assert ann("cluster", "destroy", "db-restart", "--yes").returncode == 0
        assert set(im_client.list_infrastructures()) - before == set()
    finally:
        proxy.stop()


POLICY_FLOOR_3 = {
    "version": 1,
    "min_workers": 1,
    "max_workers": 5,
    "cooldown": "10m",
    "max_step": 3,
    # In effect all day (every minute, on the real clock): the tick raises the cluster to 3 workers.
    "schedules": [{"name": "office-hours", "cron": "* * * * *", "timezone": "Europe/Madrid", "min": 3}],
}


def waiting_for_lock(url: str, subject: str, count: int, procs: list[subprocess.Popen[str]]) -> None:
    """Until ``count`` connections are at the lock of ``subject`` (each lock has a connection of its own, named
    after it), while none of ``procs`` has ended."""
    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                (f"provision lock {subject}"[:63],),
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            for proc in procs:
                assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the commands never reached the cluster's lock"
            time.sleep(0.05)


def test_a_manual_scale_racing_an_autoscale_tick_serialize_on_the_clusters_lock(
    local_im: RunningIM, team_url: str, tmp_path: Path, im_client: IMClient
) -> None:
    """Ann scales by hand from her laptop while Bob's scheduled job ticks, on the team's database: one waits for the
    other's lock, the second counts what the first left, and the journal shows one operation after the other."""
    from provisioner.state.pg import advisory_lock
    from provisioner.state.url import parse_state_url

    ann, bob = operator(tmp_path, "ann", local_im, team_url), operator(tmp_path, "bob", local_im, team_url)
    for cli in (ann, bob):  # the cluster's generated secrets: in the team's file, not in one operator's home
        cli.env[ENV_SECRETS_REF] = f"{tmp_path}/team-secrets/{{cluster}}.yaml"
    made = ann.json("cluster", "create", "elastic", "-t", "oscar", "-s", "local-sim", "--set", "wn_num=1")
    assert isinstance(made, dict)
    policy = tmp_path / "floor-3.yaml"
    policy.write_text(yaml.safe_dump(POLICY_FLOOR_3))
    enabled = bob("autoscale", "enable", "elastic", "--policy", str(policy))  # Bob's job manages Ann's cluster
    assert enabled.returncode == 0, enabled.stderr
    with PgStore.open(team_url) as store:
        done = len(store.journal("elastic"))

    # Both started while the test holds the cluster's lock, so both are waiting for it when it is released: they
    # overlap for sure. Then one of them takes it first; the other waits for it (no lock timeout runs out).
    patient = {ENV_LOCK_TIMEOUT: "300"}
    subject = "cluster 'elastic'"
    url = parse_state_url(team_url)
    with advisory_lock(url, "cluster:elastic", subject=subject, timeout=10, poll=0.05, purpose="test: the start"):
        procs = [
            ann.popen("cluster", "scale", "elastic", "--workers", "2", "-o", "json", env=patient),
            bob.popen("autoscale", "run", "--once", "-o", "json", env=patient),
        ]
        waiting_for_lock(team_url, subject, 3, procs)  # the test's connection and both commands'
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    scaled, (tick,) = outputs
    assert (tick["action"], tick["applied"], tick["target"]) == ("scale_up", True, 3)

    with PgStore.open(team_url) as store:
        new = store.journal("elastic")[done:]
        decision = store.last_decision("elastic", applied=True)
    phases = [e.phase for e in new]
    manual = [Phase.SCALING, Phase.SCALED, Phase.WAITING, Phase.CONFIGURED]  # `cluster scale` waits for IM
    job = [Phase.SCALING, Phase.SCALED]  # the tick does not
    tick_first = new[0].detail["to"] == 3
    assert phases == (job + manual if tick_first else manual + job), phases
    first, second = new[0].detail, new[len(job) if tick_first else len(manual)].detail
    # Serialized: the second recounted the workers the first one left.
    assert (first["from"], first["to"]) == ((1, 3) if tick_first else (1, 2))
    assert (second["from"], second["to"]) == ((3, 2) if tick_first else (2, 3))
    assert tick["current"] == (1 if tick_first else 2)
    # The tick's decision was logged while it held the lock: after its own entries, before the other's.
    assert decision is not None and decision.action == "scale_up"
    tick_scaled = new[1] if tick_first else new[-1]
    assert tick_scaled.ts <= decision.ts
    if tick_first:
        assert decision.ts <= new[2].ts
    assert scaled["workers"] == 2  # what Ann's command left, whichever came first
    assert bob("state", "doctor").returncode == 0  # nothing left unfinished, no lock held
    assert ann("cluster", "destroy", "elastic", "--yes").returncode == 0
    assert made["infra_id"] not in im_client.list_infrastructures()
