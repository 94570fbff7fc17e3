"""``provision state``: locks held now, migrate between backends (SQLite <-> PostgreSQL), doctor."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.errors import EXIT_BAD_INPUT, EXIT_UNREACHABLE
from provisioner.state import Phase, Store, cluster_lock, use_url
from provisioner.state.admin import MigrateConflict, doctor, held_locks, migrate
from provisioner.state.pg import PgStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1, microseconds=7)
        return self.now


def seed(store: Store | PgStore) -> None:
    """A small state: a cluster, a finished create, an unfinished create, a workflow apply cut short."""
    store.upsert_cluster(
        "demo", im_url="https://im.example/", template="oscar", site="one", inputs={"n": 2}, deployment_id="d1"
    )
    store.update_cluster("demo", infra_id="inf-1", state="configured", workers=2, extra={"note": "é"})
    for phase in (Phase.RENDERED, Phase.SUBMITTING, Phase.INFRA_ID_KNOWN, Phase.WAITING, Phase.CONFIGURED):
        store.append("demo", phase, {"k": phase.value})
    store.append("new", Phase.RENDERED)
    store.append("new", Phase.SUBMITTING, {"deployment_id": "d2"})
    store.append("workflow:wf", Phase.WORKFLOW_APPLYING, {"source": "/srv/wf.yaml", "services": []})
    store.append("workflow:wf", Phase.SERVICE_SENDING, {"cluster": "demo", "service": "a"})
    store.append_decision("demo", "hold", {"applied": False})
    store.upsert_workflow("wf", source="/srv/wf.yaml", services=[{"cluster": "demo", "service": "a", "digest": "x"}])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_url_reset: None) -> Iterator[Path]:
    for key in [k for k in os.environ if k.startswith("PROVISION_")]:
        monkeypatch.delenv(key)
    found = tmp_path / "home"
    monkeypatch.setenv("PROVISION_HOME", str(found))
    use_url(None)
    yield found


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from provisioner.cli.main import main_exit_code

    code = main_exit_code(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_sqlite_to_postgresql_to_sqlite_keeps_every_row(
    home: Path, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(home, now=Clock()) as store:
        seed(store)
        journal = store.journal()
    code, out, err = cli(capsys, "state", "migrate", "--to", pg_url, "-o", "json")
    assert code == 0, err
    first = json.loads(out)
    assert first["verified"] and first["copied"] == {"clusters": 1, "journal": 9, "decisions": 1, "workflows": 1}
    with PgStore.open(pg_url) as pg:
        assert [(e.cluster, e.phase, e.ts, e.detail) for e in pg.journal()] == [
            (e.cluster, e.phase, e.ts, e.detail) for e in journal
        ]
    # A second run copies nothing, and says so.
    code, out, err = cli(capsys, "state", "migrate", "--to", pg_url)
    assert code == 0 and out.startswith("nothing new to copy"), out + err
    # From PostgreSQL into a new SQLite file: the same checksums.
    use_url(pg_url)
    again = migrate(home, f"sqlite:///{tmp_path}/copy.db")
    assert again.checksums == first["checksums"] and again.copied == first["copied"]
    use_url(None)
    code, out, _ = cli(capsys, "--state", f"sqlite:///{tmp_path}/copy.db", "state", "migrate", "--to", pg_url)
    assert code == 0 and "nothing new" in out


def test_migrate_refuses_a_conflicting_destination_and_bad_urls(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(home, now=Clock()) as store:
        seed(store)
    other = tmp_path / "other.db"
    with Store.open(home, path=other, now=Clock()) as store:
        store.upsert_cluster("demo", im_url="https://elsewhere/", template="t", site="s", inputs={}, deployment_id="z")
    with pytest.raises(MigrateConflict, match="cluster 'demo'"):
        migrate(home, f"sqlite:///{other}")
    code, _, err = cli(capsys, "state", "migrate", "--to", f"sqlite:///{other}")
    assert code == 1 and "differs from the source at cluster 'demo', im_url: 'https://elsewhere/' there" in err
    with Store.open(home, path=other) as store:
        assert store.journal() == []  # nothing copied
    # A journal that went another way is refused too (named by its position).
    forked = tmp_path / "forked.db"
    with Store.open(home, path=forked, now=Clock()) as store:
        store.append("someone-else", Phase.RENDERED)
    code, _, err = cli(capsys, "state", "migrate", "--to", f"sqlite:///{forked}")
    assert code == 1 and "journal entry #1" in err
    assert cli(capsys, "state", "migrate", "--to", "mysql://x")[0] == EXIT_BAD_INPUT
    assert cli(capsys, "state", "migrate", "--to", f"sqlite:///{home}/state.db")[0] == EXIT_BAD_INPUT
    unreachable = "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2"
    assert cli(capsys, "state", "migrate", "--to", unreachable)[0] == EXIT_UNREACHABLE


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_doctor_names_the_resume_commands(
    backend: str, home: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    argv: list[str] = []
    if backend == "postgresql":
        url = str(request.getfixturevalue("pg_url"))
        argv = ["--state", url]
        with PgStore.open(url, now=Clock()) as pg:
            seed(pg)
    else:
        with Store.open(home, now=Clock()) as store:
            seed(store)
    code, out, _ = cli(capsys, *argv, "state", "doctor", "-o", "json")
    report = json.loads(out)
    assert code == 1 and not report["healthy"] and report["schema_current"] and report["backend"] == backend
    assert {u["name"]: u["resume"] for u in report["unfinished"]} == {
        "new": "provision cluster status new --wait",
        "workflow:wf": "provision workflow apply /srv/wf.yaml --name wf",
    }
    code, out, _ = cli(capsys, *argv, "state", "doctor")
    assert code == 1 and "provision cluster status new --wait" in out and "needs attention" in out


def test_doctor_is_healthy_on_a_finished_journal(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(home) as store:
        store.append("c", Phase.DESTROYING)
        store.append("c", Phase.DESTROYED)
        store.append("continuum:x", Phase.CONTINUUM_UP, {"source": "/srv/c.yaml"})
        store.append("continuum:x", Phase.CONTINUUM_UP_ENDED, {"ok": True})
    code, out, _ = cli(capsys, "state", "doctor")
    assert code == 0 and "healthy" in out.splitlines()[-1]
    with Store.open(home) as store:
        store.append("continuum:x", Phase.CONTINUUM_UP, {"source": "/srv/c.yaml"})
        store.append("d", Phase.DESTROYING)
        store.append("s", Phase.SCALING, {"from": 1, "to": 3})
    resumes = [u.resume for u in doctor(home).unfinished]
    assert resumes == [
        "provision continuum up /srv/c.yaml",
        "provision cluster destroy d --yes",
        "provision cluster scale s --workers 3",
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_locks_lists_a_held_cluster_lock(
    backend: str, home: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    argv: list[str] = []
    if backend == "postgresql":
        url = str(request.getfixturevalue("pg_url"))
        argv = ["--state", url]
        use_url(url)
    assert held_locks(home) == []
    with cluster_lock(home, "demo", 0, purpose="cluster scale"):
        (held,) = held_locks(home)
        assert (held.subject, held.pid, held.command) == ("cluster 'demo'", os.getpid(), "cluster scale")
        assert held.user and held.host and held.since
        use_url(None)
        code, out, _ = cli(capsys, *argv, "state", "locks", "-o", "json")
        assert code == 0 and [row["subject"] for row in json.loads(out)] == ["cluster 'demo'"]
        code, out, _ = cli(capsys, *argv, "state", "doctor")
        assert code == 1 and "cluster scale" in out
        if backend == "postgresql":
            use_url(argv[1])
    assert held_locks(home) == []
    code, out, _ = cli(capsys, *argv, "state", "locks")
    assert code == 0 and "no locks held" in out


def test_doctor_and_migrate_create_no_state(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "state", "doctor")
    assert code == 0 and "no state yet" in out and not (home / "state.db").exists()
    code, _, err = cli(capsys, "state", "migrate", "--to", f"sqlite:///{tmp_path}/copy.db")
    assert code == 1 and "no state to migrate" in err and not (tmp_path / "copy.db").exists()


def test_doctor_on_an_unused_postgresql_database_says_no_state_yet_and_makes_none(
    home: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    code, out, _ = cli(capsys, "--state", pg_url, "state", "doctor")
    assert code == 0 and "schema version: 0, no state yet" in out and out.splitlines()[-1] == "healthy"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)


def test_doctor_finds_a_version_5_file_older_then_current_once_migrated(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from provisioner.state.records import SCHEMA_VERSION
    from provisioner.state.store import _MIGRATIONS

    home.mkdir(parents=True)
    raw = sqlite3.connect(home / "state.db")
    for version in range(1, 6):
        for statement in _MIGRATIONS[version]:
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 5")
    raw.commit()
    raw.close()
    code, out, _ = cli(capsys, "state", "doctor", "-o", "json")
    report = json.loads(out)
    assert code == 1 and (report["schema_version"], report["expected_schema_version"]) == (5, SCHEMA_VERSION)
    assert not report["schema_current"]
    code, out, _ = cli(capsys, "state", "doctor")  # the first look migrated it
    assert code == 0 and f"schema version: {SCHEMA_VERSION}, current" in out
