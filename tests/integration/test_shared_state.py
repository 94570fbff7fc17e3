"""A team's shared state: two operators (two ``provision`` processes, each with its own PROVISION_HOME) on one
PostgreSQL database (a real server: tests/pglab.py), against the real IM, through the real CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from provisioner.im import IMClient
from provisioner.settings import ENV_LOCK_TIMEOUT, ENV_STATE_URL
from provisioner.state import Phase
from provisioner.state.pg import PgStore
from tests.clihelper import CLI
from tests.conftest import RunningIM

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
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: cannot connect to the state database postgresql://ops:***@127.0.0.1:{port}"
    )
    assert "Sekret-9871" not in result.stderr
    assert not (tmp_path / "home" / "state.db").exists()
