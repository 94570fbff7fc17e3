"""The state stores (the embedded SQLite one, and PostgreSQL on a real throw-away server: tests/pglab.py) and the
cross-process locks (flock files; advisory locks when the state is in PostgreSQL).

The tests of a store's behaviour take the ``store`` fixture and run on both backends; those of a backend's own
mechanics (files, modes, WAL, PRAGMA versions; the version table, advisory locks) name theirs."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from provisioner.errors import EXIT_UNREACHABLE, LockBusy, NotFound, OperationFailed, StateUnreachable
from provisioner.state import (
    DB_FILENAME,
    SCHEMA_VERSION,
    ClusterRecord,
    Phase,
    Store,
    check_no_secrets,
    cluster_lock,
    cluster_lock_path,
    endpoint_lock,
    endpoint_lock_path,
    inputs_hash,
    new_deployment_id,
    read_holder,
)
from provisioner.state.interface import StateStore
from provisioner.state.pg import PgStore

REPO_ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class FakeNow:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def now() -> FakeNow:
    return FakeNow()


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(request: pytest.FixtureRequest, backend: str, home: Path, now: FakeNow) -> Iterator[StateStore]:
    """A store on each backend: SQLite in ``home``, or PostgreSQL in a fresh database of this test's own."""
    opened: StateStore
    if backend == "sqlite":
        opened = Store.open(home, now=now)
    else:
        opened = PgStore.open(request.getfixturevalue("pg_url"), now=now)
    with opened as s:
        yield s


class Raw:
    """The store's database reached behind its back (another client), to check what the database itself refuses."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def refused(self, statement: str) -> str:
        """Run ``statement`` and return the database's error (the test fails if it was accepted)."""
        if isinstance(self.store, Store):
            raw = sqlite3.connect(self.store.path)
            try:
                raw.execute(statement)
            except sqlite3.DatabaseError as e:
                return str(e)
            finally:
                raw.rollback()
                raw.close()
        else:
            assert isinstance(self.store, PgStore)
            with psycopg.connect(self.store._url.url, autocommit=True) as conn:
                try:
                    conn.execute(statement)
                except psycopg.Error as e:
                    return str(e)
        pytest.fail(f"the database accepted {statement!r}")


def add(store: StateStore, name: str = "alpha", **overrides: Any) -> ClusterRecord:
    fields: dict[str, Any] = {
        "im_url": "https://im.example.org:8800",
        "template": "kubernetes",
        "site": "openstack-a",
        "inputs": {"wn_num": 2, "fe_cpus": 4},
        "deployment_id": new_deployment_id(),
    }
    fields.update(overrides)
    return store.upsert_cluster(name, **fields)


# --- opening ---------------------------------------------------------------------------------------------------------


def test_open_creates_private_home_and_database(home: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        with Store.open(home) as store:
            assert store.path == home / DB_FILENAME
    finally:
        os.umask(old_umask)
    assert mode(home) == 0o700
    assert mode(home / DB_FILENAME) == 0o600
    for sidecar in (home / f"{DB_FILENAME}-wal", home / f"{DB_FILENAME}-shm"):
        if sidecar.exists():
            assert mode(sidecar) & 0o077 == 0


def test_open_sets_wal_busy_timeout_and_schema_version(home: Path) -> None:
    with Store.open(home, busy_timeout=7.5) as store:
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 7500
    raw = sqlite3.connect(home / DB_FILENAME)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"clusters", "journal"} <= tables
    finally:
        raw.close()


def test_reopening_keeps_data(home: Path) -> None:
    with Store.open(home) as store:
        add(store)
        store.append("alpha", Phase.RENDERED, {})
    with Store.open(home) as store:
        assert [c.name for c in store.list_clusters()] == ["alpha"]
        assert len(store.journal("alpha")) == 1


def test_existing_database_with_loose_mode_is_tightened(home: Path) -> None:
    Store.open(home).close()
    os.chmod(home / DB_FILENAME, 0o644)
    Store.open(home).close()
    assert mode(home / DB_FILENAME) == 0o600


def test_newer_schema_is_refused(home: Path) -> None:
    Store.open(home).close()
    raw = sqlite3.connect(home / DB_FILENAME)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(OperationFailed, match="newer"):
        Store.open(home)


def test_garbage_database_is_reported(home: Path) -> None:
    home.mkdir()
    (home / DB_FILENAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(OperationFailed, match="unusable"):
        Store.open(home)


# --- clusters --------------------------------------------------------------------------------------------------------


def test_upsert_get_list(store: StateStore, now: FakeNow) -> None:
    record = add(store, "beta", infra_id=None, state="pending", workers=2, extra={"note": "x"})
    assert record.name == "beta"
    assert record.inputs == {"wn_num": 2, "fe_cpus": 4}
    assert record.inputs_hash == inputs_hash({"fe_cpus": 4, "wn_num": 2})
    assert record.created_at == record.updated_at == now.now
    assert record.extra == {"note": "x"}
    add(store, "alpha")
    assert [c.name for c in store.list_clusters()] == ["alpha", "beta"]
    assert store.get_cluster("beta") == record
    assert store.get_cluster("nope") is None


def test_upsert_replaces_fields_but_keeps_created_at_and_extra(store: StateStore, now: FakeNow) -> None:
    first = add(store, extra={"keep": True})
    now.now += timedelta(minutes=5)
    second = add(store, infra_id="inf-1", inputs={"wn_num": 3}, deployment_id=first.deployment_id)
    assert second.created_at == first.created_at
    assert second.updated_at == now.now
    assert second.infra_id == "inf-1"
    assert second.inputs == {"wn_num": 3}
    assert second.extra == {"keep": True}


def test_upsert_takes_an_explicit_inputs_hash(store: StateStore) -> None:
    record = add(store, inputs_hash="abc")
    assert record.inputs_hash == "abc"


def test_update_cluster(store: StateStore, now: FakeNow) -> None:
    first = add(store)
    now.now += timedelta(seconds=30)
    record = store.update_cluster("alpha", infra_id="inf-9", state="configured", workers=5)
    assert (record.infra_id, record.state, record.workers) == ("inf-9", "configured", 5)
    assert record.updated_at == now.now
    assert record.created_at == first.created_at
    record = store.update_cluster("alpha", inputs={"wn_num": 5})
    assert record.inputs_hash == inputs_hash({"wn_num": 5})


def test_update_cluster_refuses_unknown_and_read_only_fields(store: StateStore) -> None:
    add(store)
    for field in ("colour", "name", "created_at", "updated_at"):
        with pytest.raises(ValueError, match=field):
            store.update_cluster("alpha", **{field: "x"})


def test_update_cluster_type_checks(store: StateStore) -> None:
    add(store)
    with pytest.raises(ValueError, match="workers"):
        store.update_cluster("alpha", workers="three")
    with pytest.raises(ValueError, match="workers"):
        store.update_cluster("alpha", workers=-1)
    with pytest.raises(ValueError, match="im_url"):
        store.update_cluster("alpha", im_url=None)


def test_update_missing_cluster_is_not_found(store: StateStore) -> None:
    with pytest.raises(NotFound):
        store.update_cluster("ghost", state="configured")


def test_deployment_id_is_unique_and_findable(store: StateStore) -> None:
    dep = new_deployment_id()
    add(store, "alpha", deployment_id=dep)
    with pytest.raises(ValueError, match="deployment id"):
        add(store, "beta", deployment_id=dep)
    found = store.find_by_deployment_id(dep)
    assert found is not None
    assert found.name == "alpha"
    assert store.find_by_deployment_id("0" * 32) is None


def test_delete_cluster_keeps_its_journal(store: StateStore) -> None:
    add(store)
    store.append("alpha", Phase.DESTROYING, {})
    assert store.delete_cluster("alpha") is True
    assert store.delete_cluster("alpha") is False
    store.append("alpha", Phase.DESTROYED, {})
    assert store.get_cluster("alpha") is None
    assert [e.phase for e in store.journal("alpha")] == [Phase.DESTROYING, Phase.DESTROYED]


# --- no secrets ------------------------------------------------------------------------------------------------------


def test_inputs_with_listed_secret_keys_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="minio_accesskey"):
        add(store, inputs={"minio_accesskey": "AKIA", "wn_num": 1}, secret_keys={"minio_accesskey"})
    add(store)
    with pytest.raises(ValueError, match="ssh_user_key"):
        store.update_cluster("alpha", inputs={"ssh_user_key": "x"}, secret_keys=["SSH_USER_KEY"])
    assert store.get_cluster("alpha") == store.list_clusters()[0]  # unchanged


@pytest.mark.parametrize(
    "key", ["password", "oscar_password", "kube_admin_token", "minio_secretkey", "Private-Key", "ssh_private_key"]
)
def test_inputs_and_extra_with_secret_looking_keys_are_refused(store: StateStore, key: str) -> None:
    with pytest.raises(ValueError):
        add(store, inputs={key: "x"})
    with pytest.raises(ValueError):
        add(store, extra={"nested": {key: "x"}})
    assert store.list_clusters() == []


@pytest.mark.parametrize(
    "detail",
    [
        {"Password": "x"},
        {"auth": {"access_TOKEN": "x"}},
        {"items": [{"ok": 1}, {"client-secret": "x"}]},
        {"private_key": "-----BEGIN"},
    ],
)
def test_journal_detail_with_secret_looking_keys_is_refused(store: StateStore, detail: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="secret"):
        store.append("alpha", Phase.SUBMITTING, detail)
    assert store.journal() == []


def test_check_no_secrets_accepts_ordinary_data() -> None:
    check_no_secrets({"wn_num": 2, "names": ["password-less"], "nested": {"key_count": 1}})
    with pytest.raises(ValueError):
        check_no_secrets({"a": 1}, secret_keys=["A"])


# --- journal ---------------------------------------------------------------------------------------------------------


def test_append_and_read_journal(store: StateStore, now: FakeNow) -> None:
    e1 = store.append("alpha", Phase.RENDERED, {"template": "kubernetes"})
    now.now += timedelta(seconds=1)
    e2 = store.append("beta", "submitting", {})
    e3 = store.append("alpha", Phase.INFRA_ID_KNOWN, {"infra_id": "inf-1"})
    assert e1.seq < e2.seq < e3.seq
    assert e2.phase is Phase.SUBMITTING
    assert e2.ts == now.now
    assert store.journal() == [e1, e2, e3]
    assert store.journal("alpha") == [e1, e3]
    assert store.journal("alpha", limit=1) == [e3]
    assert store.journal(limit=2) == [e2, e3]
    assert store.journal(limit=0) == []
    assert store.last_phase("alpha") == e3
    assert store.last_phase("nobody") is None


def test_unknown_phase_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError):
        store.append("alpha", "exploded", {})


def test_journal_is_append_only_in_the_database(store: StateStore) -> None:
    store.append("alpha", Phase.RENDERED, {})
    raw = Raw(store)
    assert "the journal is append-only" in raw.refused("UPDATE journal SET phase = 'configured'")
    assert "the journal is append-only" in raw.refused("DELETE FROM journal")
    if isinstance(store, PgStore):
        assert "the journal is append-only" in raw.refused("TRUNCATE journal")
    assert [e.phase for e in store.journal()] == [Phase.RENDERED]


def test_transaction_groups_writes_and_rolls_back(store: StateStore) -> None:
    with store.transaction():
        add(store)
        store.append("alpha", Phase.SUBMITTING, {})
    assert store.get_cluster("alpha") is not None

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction():
        store.update_cluster("alpha", infra_id="inf-2")
        store.append("alpha", Phase.INFRA_ID_KNOWN, {"infra_id": "inf-2"})
        raise Boom
    record = store.get_cluster("alpha")
    assert record is not None
    assert record.infra_id is None
    assert [e.phase for e in store.journal("alpha")] == [Phase.SUBMITTING]


def test_a_refused_write_inside_a_transaction_leaves_it_usable(store: StateStore) -> None:
    taken = add(store, "alpha").deployment_id
    with store.transaction():
        store.append("beta", Phase.RENDERED, {})
        with pytest.raises(ValueError, match="deployment id"):
            add(store, "beta", deployment_id=taken)
        add(store, "beta")  # the transaction goes on (on PostgreSQL: the refused write was a savepoint's)
    assert [c.name for c in store.list_clusters()] == ["alpha", "beta"]
    assert [e.phase for e in store.journal("beta")] == [Phase.RENDERED]


def _open(where: str) -> StateStore:
    return PgStore.open(where) if where.startswith("postgresql://") else Store.open(Path(where))


def _append_many(where: str, worker: int, count: int) -> list[int]:
    with _open(where) as store:
        return [store.append(f"c{worker % 2}", Phase.WAITING, {"worker": worker, "i": i}).seq for i in range(count)]


def test_concurrent_writers_from_several_processes(request: pytest.FixtureRequest, backend: str, home: Path) -> None:
    # Nothing opened in the parent first: the processes also race to create the database (and its schema).
    where = str(home) if backend == "sqlite" else request.getfixturevalue("pg_url")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_append_many, [(where, w, 50) for w in range(4)])
    seqs = [seq for result in results for seq in result]
    assert len(seqs) == len(set(seqs)) == 200
    with _open(where) as store:
        entries = store.journal()
    assert len(entries) == 200
    assert sorted(e.seq for e in entries) == sorted(seqs)
    assert {(e.detail["worker"], e.detail["i"]) for e in entries} == {(w, i) for w in range(4) for i in range(50)}


# --- helpers ---------------------------------------------------------------------------------------------------------


def test_inputs_hash_is_canonical_and_stable() -> None:
    assert inputs_hash({}) == hashlib.sha256(b"{}").hexdigest()
    assert inputs_hash({"b": 1, "a": {"y": 2, "x": [1, "é"]}}) == inputs_hash({"a": {"x": [1, "é"], "y": 2}, "b": 1})
    assert inputs_hash({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()
    assert inputs_hash({"a": 1}) != inputs_hash({"a": "1"})


def test_new_deployment_id() -> None:
    ids = {new_deployment_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# --- locks -----------------------------------------------------------------------------------------------------------

HOLDER_SCRIPT = """
import sys
from pathlib import Path
from provisioner.state import use_url
from provisioner.state.locks import cluster_lock, endpoint_lock
home, kind, key = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
use_url(sys.argv[4] if len(sys.argv) > 4 else None)
lock = cluster_lock if kind == "cluster" else endpoint_lock
with lock(home, key, timeout=10, purpose="cluster scale"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


class Holder:
    """A separate process holding a lock until told to let go (or killed)."""

    def __init__(self, home: Path, kind: str, key: str, state_url: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER_SCRIPT, str(home), kind, key, *([state_url] if state_url else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.close()


def test_second_acquirer_waits_for_release(home: Path, holders: list[Holder]) -> None:
    holder = Holder(home, "cluster", "alpha")
    holders.append(holder)
    timer = threading.Timer(0.5, holder.release)
    timer.start()
    try:
        started = time.monotonic()
        with cluster_lock(home, "alpha", timeout=10, purpose="cluster show") as path:
            waited = time.monotonic() - started
            found = read_holder(path)
            assert found is not None
            assert (found.pid, found.purpose) == (os.getpid(), "cluster show")
    finally:
        timer.join()
    assert waited >= 0.4
    assert read_holder(path) is None  # cleared on release


@pytest.mark.parametrize("timeout", [0.0, 0.3])
def test_busy_lock_times_out_naming_the_holder(home: Path, holders: list[Holder], timeout: float) -> None:
    holder = Holder(home, "cluster", "alpha")
    holders.append(holder)
    started = time.monotonic()
    with pytest.raises(LockBusy) as info, cluster_lock(home, "alpha", timeout=timeout):
        pytest.fail("acquired a held lock")
    waited = time.monotonic() - started
    assert timeout <= waited < timeout + 2
    message = str(info.value)
    assert message == (
        f"cluster 'alpha' is busy: another provision command (pid {holder.pid}, 'cluster scale') holds its lock"
    )
    assert info.value.exit_code == 5
    # Other clusters are not affected.
    with cluster_lock(home, "beta", timeout=0):
        pass


def test_lock_is_released_when_the_holder_is_killed(home: Path, holders: list[Holder]) -> None:
    holder = Holder(home, "cluster", "alpha")
    holders.append(holder)
    with pytest.raises(LockBusy), cluster_lock(home, "alpha", timeout=0):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(timeout=10)
    with cluster_lock(home, "alpha", timeout=5):
        pass


def test_endpoint_lock_is_keyed_on_the_normalised_url(home: Path, holders: list[Holder]) -> None:
    holder = Holder(home, "endpoint", "https://IM.example.org:8800/")
    holders.append(holder)
    expected = rf"IM endpoint 'https://im.example.org:8800' is busy: .*pid {holder.pid}"
    with pytest.raises(LockBusy, match=expected), endpoint_lock(home, "https://u:pw@im.example.org:8800", timeout=0.1):
        pass
    with endpoint_lock(home, "https://other.example.org:8800", timeout=0):
        pass
    assert endpoint_lock_path(home, "https://im.example.org:8800") == endpoint_lock_path(
        home, "HTTPS://im.example.org:8800/"
    )


def test_lock_files_are_private(home: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        with cluster_lock(home, "alpha", timeout=0) as path:
            assert mode(path) == 0o600
            assert mode(path.parent) == 0o700
            assert mode(home) == 0o700
    finally:
        os.umask(old_umask)


def test_lock_is_not_reentrant_within_a_process(home: Path) -> None:
    with (
        cluster_lock(home, "alpha", timeout=0),
        pytest.raises(LockBusy, match="this process"),
        cluster_lock(home, "alpha", timeout=0),
    ):
        pass


@pytest.mark.parametrize("name", ["../../etc/passwd", "a b/c", ".hidden", "x" * 300, "ümlaut"])
def test_odd_cluster_names_stay_inside_the_locks_directory(home: Path, name: str) -> None:
    path = cluster_lock_path(home, name)
    assert path.parent == home / "locks"
    assert len(path.name) < 120
    assert path != cluster_lock_path(home, name + "!")
    with cluster_lock(home, name, timeout=0):
        pass


def test_empty_cluster_name_is_refused(home: Path) -> None:
    with pytest.raises(ValueError):
        cluster_lock_path(home, "")


def test_decision_log_is_append_only_and_secret_free(store: StateStore) -> None:
    first = store.append_decision("c1", "none", {"rule": "steady", "current": 1})
    store.append_decision("c2", "scale_up", {"rule": "schedule", "current": 1, "target": 3})
    store.append_decision("c1", "scale_up", {"rule": "min_workers", "current": 0, "target": 1})
    assert [d.action for d in store.decisions("c1")] == ["none", "scale_up"]
    assert [d.seq for d in store.decisions("c1", limit=1)] == [first.seq + 2]
    with pytest.raises(ValueError, match="secret"):
        store.append_decision("c1", "none", {"signals": {"token": "x"}})
    raw = Raw(store)
    assert "the decision log is append-only" in raw.refused("UPDATE decisions SET action = 'x'")
    assert "the decision log is append-only" in raw.refused("DELETE FROM decisions")  # SQLite's since schema 6
    assert "the decision log is append-only" in raw.refused("DELETE FROM decisions WHERE cluster = 'c2'")
    if isinstance(store, PgStore):
        assert "the decision log is append-only" in raw.refused("TRUNCATE decisions")
    assert len(store.decisions("c1")) == 2 and len(store.decisions("c2")) == 1


def test_last_decision_filters_on_applied_and_detail_keys(store: StateStore, now: FakeNow) -> None:
    store.append_decision("c1", "scale_up", {"applied": True, "target": 3})
    now.now += timedelta(seconds=1)
    store.append_decision("c1", "none", {"applied": False, "idle_since": None})
    now.now += timedelta(seconds=1)
    store.append_decision("c2", "none", {"idle_since": "2025-01-02T03:04:05+00:00"})
    applied = store.last_decision("c1", applied=True)
    assert applied is not None and applied.detail == {"applied": True, "target": 3}
    idle = store.last_decision("c1", having="idle_since")
    assert idle is not None and idle.action == "none" and idle.ts == now.now - timedelta(seconds=1)
    assert store.last_decision("c1", applied=True, having="idle_since") is None
    assert store.last_decision("c3") is None
    with pytest.raises(ValueError, match="detail key"):
        store.last_decision("c1", having="x'); DROP TABLE decisions; --")


def test_a_version_1_database_is_migrated(home: Path) -> None:
    from provisioner.state.store import _MIGRATIONS

    home.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(home / "state.db")
    for statement in _MIGRATIONS[1]:
        raw.execute(statement)
    raw.execute(
        "INSERT INTO journal (cluster, phase, ts, detail) "
        "VALUES ('old', 'configured', '2026-01-01T00:00:00+00:00', '{}')"
    )
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Store.open(home) as store:
        assert [e.phase for e in store.journal("old")] == [Phase.CONFIGURED]
        store.append("c", Phase.REGISTERED, {})
        store.append_decision("c", "none", {})
    raw = sqlite3.connect(home / "state.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    raw.close()


def test_a_version_5_database_learns_to_refuse_deleting_decisions(home: Path) -> None:
    from provisioner.state.store import _MIGRATIONS

    home.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(home / "state.db")
    for version in range(1, 6):
        for statement in _MIGRATIONS[version]:
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 5")
    raw.execute(
        "INSERT INTO decisions (cluster, ts, action, detail) VALUES "
        "('old', '2026-01-01T00:00:00+00:00', 'scale_up', '{\"applied\": true}'), "
        "('old', '2026-01-01T00:05:00+00:00', 'none', '{}')"
    )
    raw.execute("DELETE FROM decisions WHERE action = 'none'")  # what version 5 let through
    raw.commit()
    raw.close()
    with Store.open(home) as store:
        assert [(d.action, d.detail) for d in store.decisions("old")] == [("scale_up", {"applied": True})]
        store.append_decision("old", "hold", {"rule": "cooldown"})
        assert "the decision log is append-only" in Raw(store).refused("DELETE FROM decisions")
        assert [d.action for d in store.decisions("old")] == ["scale_up", "hold"]
    raw = sqlite3.connect(home / "state.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'decisions_no_delete'").fetchall() == [
        ("decisions_no_delete",)
    ]
    raw.close()


def test_a_version_2_database_turns_the_edge_sentinel_into_a_kind(home: Path) -> None:
    from provisioner.model import ClusterKind
    from provisioner.state.store import _MIGRATIONS

    home.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(home / "state.db")
    for version in (1, 2):
        for statement in _MIGRATIONS[version]:
            raw.execute(statement)
    for name, url in (("edge1", "edge:"), ("cloud1", "http://127.0.0.1:8899")):
        raw.execute(
            "INSERT INTO clusters (name, im_url, template, site, inputs_hash, deployment_id, created_at, updated_at) "
            "VALUES (?, ?, 'oscar', 'local-sim', 'h', ?, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
            (name, url, f"dep-{name}"),
        )
    raw.execute("PRAGMA user_version = 2")
    raw.commit()
    raw.close()
    with Store.open(home) as store:
        edge, cloud = store.get_cluster("edge1"), store.get_cluster("cloud1")
        assert edge is not None and cloud is not None
        assert (edge.kind, edge.im_url) == (ClusterKind.EDGE, "")
        assert (cloud.kind, cloud.im_url) == (ClusterKind.IM, "http://127.0.0.1:8899")
        again = store.upsert_cluster(
            "edge2", im_url="", kind=ClusterKind.EDGE, template="k3s-edge", site="edge", inputs={}, deployment_id="d2"
        )
        assert again.kind is ClusterKind.EDGE
        with pytest.raises(sqlite3.IntegrityError):
            store._conn.execute("UPDATE clusters SET kind = 'other' WHERE name = 'edge2'")


def test_open_store_gives_the_state_protocol_over_sqlite(tmp_path: Path) -> None:
    from provisioner.state import open_store

    with open_store(tmp_path / "home") as store:
        typed: StateStore = store
        typed.append("c1", Phase.RENDERED, {"template": "oscar"})
        typed.append_decision("c1", "none", {"rule": "steady"})
        assert [e.phase for e in typed.journal("c1")] == [Phase.RENDERED]
        assert [d.action for d in typed.decisions("c1")] == ["none"]
        assert typed.path == tmp_path / "home" / "state.db"


def test_workflow_records_hold_owned_services_and_no_secrets(store: StateStore) -> None:
    from provisioner.state.store import Phase as P

    assert store.list_workflows() == []
    first = store.upsert_workflow(
        "masks", source="/x/masks.yaml", services=[{"cluster": "edge", "service": "blur", "digest": "d1"}]
    )
    again = store.upsert_workflow(
        "masks", source="/y/masks.yaml", services=[{"cluster": "cloud", "service": "detect", "digest": "d2"}]
    )
    assert again.created_at == first.created_at and again.source == "/y/masks.yaml"
    assert again.owns() == {("cloud", "detect")}
    assert [w.name for w in store.list_workflows()] == ["masks"]
    with pytest.raises(ValueError):
        store.upsert_workflow("masks", source="s", services=[{"cluster": "c", "secret_key": "x"}])
    store.append("workflow:masks", P.SERVICE_SENDING, {"cluster": "edge", "service": "blur", "action": "create"})
    assert store.last_phase("workflow:masks").phase is P.SERVICE_SENDING
    assert store.delete_workflow("masks") and not store.delete_workflow("masks")
    assert store.get_workflow("masks") is None


# --- PostgreSQL: the schema, the URL, the advisory locks -------------------------------------------------------------


def _pg_tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
    return {str(row[0]) for row in rows}


def test_pg_schema_is_made_on_an_empty_database_and_versioned(pg_url: str) -> None:
    assert _pg_tables(pg_url) == set()
    with PgStore.open(pg_url) as store:
        assert store.location == pg_url  # no password in it to hide
    assert _pg_tables(pg_url) == {"clusters", "journal", "decisions", "workflows", "lock_holders", "schema_version"}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(OperationFailed, match="newer"):
        PgStore.open(pg_url)


def test_a_version_1_pg_database_is_migrated(pg_url: str) -> None:
    from provisioner.state import pg

    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        conn.execute(pg._VERSION_TABLE)
        for statement in pg._MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO clusters (name, im_url, template, site, inputs_hash, deployment_id, created_at, updated_at) "
            "VALUES ('edge1', 'edge:', 'k3s-edge', 'edge', 'h', 'd1', now(), now())"
        )
        conn.execute("INSERT INTO journal (cluster, phase, ts) VALUES ('old', 'configured', now())")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    with PgStore.open(pg_url) as store:
        assert [e.phase for e in store.journal("old")] == [Phase.CONFIGURED]
        edge = store.get_cluster("edge1")
        assert edge is not None and edge.im_url == "" and edge.kind.value == "edge"
        store.append_decision("c", "none", {})
        store.upsert_workflow("w", source="w.yaml", services=[])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)


def test_pg_store_refuses_an_unreachable_server_in_our_words() -> None:
    port = _free_port()
    url = f"postgresql://ops:hunter2-secret@127.0.0.1:{port}/state?connect_timeout=2"
    with pytest.raises(StateUnreachable) as info:
        PgStore.open(url)
    message = str(info.value)
    assert message.startswith(f"cannot connect to the state database postgresql://ops:***@127.0.0.1:{port}/state")
    assert message.endswith("Connection refused")
    assert "hunter2" not in message and "hunter2" not in (info.value.hint or "")
    assert info.value.exit_code == EXIT_UNREACHABLE


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_open_store_follows_the_configured_url(pg_lab: Any, pg_url: str, tmp_path: Path, state_url_reset: None) -> None:
    from provisioner.redact import mask
    from provisioner.state import has_state, open_store, state_location, use_url

    home = tmp_path / "home"
    with_password = pg_url.replace("postgresql://postgres@", "postgresql://postgres:Sekr3t-pw@")
    use_url(with_password)  # trust authentication ignores the password; the URL keeps it, nothing shows it
    assert has_state(home)
    with open_store(home) as store:
        assert isinstance(store, PgStore)
        store.append("c1", Phase.RENDERED, {})
        assert "Sekr3t" not in store.location and ":***@" in store.location
    assert "Sekr3t" not in state_location(home)
    assert mask(f"url {with_password}") == f"url {with_password.replace('Sekr3t-pw', '***')}"
    assert not home.exists()  # nothing of the state went there

    db_file = tmp_path / "elsewhere" / "state.db"
    use_url(f"sqlite://{db_file}")
    assert not has_state(home)
    with open_store(home) as store:
        assert isinstance(store, Store) and store.path == db_file
    assert has_state(home) and state_location(home) == str(db_file)

    use_url(None)
    with open_store(home) as store:
        assert store.path == home / DB_FILENAME and store.journal() == []


def _pg_message(home: Path, url: str, name: str = "alpha") -> str:
    from provisioner.state import use_url

    use_url(url)
    with pytest.raises(LockBusy) as info, cluster_lock(home, name, timeout=0.2):
        pytest.fail("acquired a held lock")
    return str(info.value)


def test_pg_busy_lock_names_the_holder_and_dies_with_it(
    home: Path, pg_url: str, holders: list[Holder], state_url_reset: None
) -> None:
    import getpass
    import socket

    from provisioner.state import pg
    from provisioner.state.url import parse_state_url

    holder = Holder(home / "other-operator", "cluster", "alpha", pg_url)  # another PROVISION_HOME, same database
    holders.append(holder)
    message = _pg_message(home, pg_url)
    user, host = getpass.getuser(), socket.gethostname()
    assert message.startswith(
        f"cluster 'alpha' is busy: another provision command (pid {holder.pid} of {user}@{host}, 'cluster scale', "
        "since "
    )
    assert message.endswith(" UTC) holds its lock")
    url = parse_state_url(pg_url)
    assert [(h.subject, h.pid, h.purpose) for h in pg.lock_holders(url)] == [
        ("cluster 'alpha'", holder.pid, "cluster scale")
    ]
    with cluster_lock(home, "beta", timeout=0):  # other clusters are not affected
        pass

    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while pg.lock_holders(url) and time.monotonic() < deadline:  # the server notices the session is gone
        time.sleep(0.05)
    assert pg.lock_holders(url) == []  # its row is left behind, and never shown
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT pid FROM lock_holders").fetchall() == [(holder.pid,)]
    with cluster_lock(home, "alpha", timeout=5, purpose="cluster destroy"):
        assert [(h.pid, h.purpose) for h in pg.lock_holders(url)] == [(os.getpid(), "cluster destroy")]
        with (
            pytest.raises(LockBusy, match=r"\(this process, 'cluster destroy', since"),
            cluster_lock(home, "alpha", timeout=0),
        ):
            pass
    assert pg.lock_holders(url) == []
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM lock_holders").fetchone() == (0,)


def test_pg_second_acquirer_waits_for_release(
    home: Path, pg_url: str, holders: list[Holder], state_url_reset: None
) -> None:
    from provisioner.state import use_url

    holder = Holder(home / "other-operator", "cluster", "alpha", pg_url)
    holders.append(holder)
    use_url(pg_url)
    timer = threading.Timer(0.5, holder.release)
    timer.start()
    try:
        started = time.monotonic()
        with cluster_lock(home, "alpha", timeout=10, purpose="cluster show"):
            waited = time.monotonic() - started
    finally:
        timer.join()
    assert waited >= 0.4
    assert not (home / "locks").exists()  # no lock file: the lock was in the database


def test_pg_endpoint_lock_is_keyed_on_the_normalised_url(
    home: Path, pg_url: str, holders: list[Holder], state_url_reset: None
) -> None:
    from provisioner.state import use_url

    holder = Holder(home, "endpoint", "https://IM.example.org:8800/", pg_url)
    holders.append(holder)
    use_url(pg_url)
    expected = rf"IM endpoint 'https://im.example.org:8800' is busy: .*pid {holder.pid} of "
    with pytest.raises(LockBusy, match=expected), endpoint_lock(home, "https://u:pw@im.example.org:8800", timeout=0.1):
        pass
    with endpoint_lock(home, "https://other.example.org:8800", timeout=0), cluster_lock(home, "alpha", timeout=0):
        pass  # neither is the same lock as the held one


# --- PostgreSQL: a session that ends under a store or a lock ---------------------------------------------------------


def _end_session(url: str, backend_pid: int) -> None:
    """End one server session as a restart or an administrator would (and wait until it has ended)."""
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (backend_pid,)).fetchone() == (True,)


def _lock_session(url: str, subject: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT backend_pid FROM lock_holders WHERE subject = %s", (subject,)).fetchone()
    assert row is not None
    return int(row[0])


def test_pg_store_connects_again_when_its_session_ends_between_statements(pg_url: str) -> None:
    with PgStore.open(pg_url) as store:
        add(store, "alpha")
        before = store._conn.info.backend_pid
        _end_session(pg_url, before)
        got = store.get_cluster("alpha")  # a read: sent again on a new connection
        assert got is not None and got.name == "alpha"
        assert store._conn.info.backend_pid != before
        _end_session(pg_url, store._conn.info.backend_pid)
        store.append("alpha", Phase.RENDERED, {})  # a write: its BEGIN found the connection gone; nothing was sent
        assert [e.phase for e in store.journal("alpha")] == [Phase.RENDERED]


def test_pg_a_write_whose_session_ends_midway_stops_and_leaves_nothing(pg_url: str) -> None:
    with PgStore.open(pg_url) as store:
        broke = r"the connection to the state database \S+ broke mid-write: "
        with pytest.raises(StateUnreachable, match=broke), store.transaction():
            store.append("alpha", Phase.RENDERED, {})
            _end_session(pg_url, store._conn.info.backend_pid)
            store.append("alpha", Phase.SUBMITTING, {})
        assert store.journal("alpha") == []  # the server rolled the first append back with the session
        store.append("alpha", Phase.RENDERED, {})  # the store is usable again
        assert [e.phase for e in store.journal("alpha")] == [Phase.RENDERED]


def test_pg_a_lock_lost_with_its_session_stops_the_holders_next_write(
    home: Path, pg_url: str, state_url_reset: None
) -> None:
    from provisioner.state import use_url
    from provisioner.state.pg import lock_id, lost_locks
    from provisioner.state.url import parse_state_url

    use_url(pg_url)
    with cluster_lock(home, "alpha", timeout=5, purpose="cluster create"), PgStore.open(pg_url) as store:
        store.append("alpha", Phase.RENDERED, {})
        assert lost_locks(parse_state_url(pg_url)) == []
        _end_session(pg_url, _lock_session(pg_url, "cluster 'alpha'"))
        assert lost_locks(parse_state_url(pg_url)) == ["cluster 'alpha'"]
        with pytest.raises(StateUnreachable) as info:
            store.append("alpha", Phase.SUBMITTING, {})
        assert str(info.value).startswith(
            "cluster 'alpha' is no longer locked: the connection holding its lock in the state database "
        )
        assert str(info.value).endswith("; stopped rather than go on without the lock")
        assert "run the same command again" in (info.value.hint or "")
        assert [e.phase for e in store.journal("alpha")] == [Phase.RENDERED]  # reads go on; nothing was written
        # Another command may take the lock now: it is really free.
        with psycopg.connect(pg_url, autocommit=True) as other:
            taken = other.execute("SELECT pg_try_advisory_lock(%s)", (lock_id("cluster:alpha"),)).fetchone()
            assert taken == (True,)
    # Released (quietly: there was nothing left to release); the next holder writes as usual.
    assert lost_locks(parse_state_url(pg_url)) == []
    with cluster_lock(home, "alpha", timeout=0), PgStore.open(pg_url) as store:
        store.append("alpha", Phase.INFRA_ID_KNOWN, {"infra_id": "i-1"})
        assert [e.phase for e in store.journal("alpha")][-1] is Phase.INFRA_ID_KNOWN


def test_pg_store_whose_server_stays_down_says_so_without_the_password(
    pg_lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.state import pg

    monkeypatch.setattr(pg, "RECONNECT_WINDOW", 0.5)
    url = pg_lab.url(pg_lab.create_database(), password="Db-pw-4471")
    with PgStore.open(url) as store:
        add(store, "alpha")
        pg_lab.halt()
        try:
            with pytest.raises(StateUnreachable) as info:
                store.list_clusters()
        finally:
            pg_lab.resume()
        message = str(info.value)
        assert message.startswith(
            f"the connection to the state database postgresql://postgres:***@{pg_lab.host}:{pg_lab.port}/"
        )
        assert " and could not be made again: " in message and "Db-pw-4471" not in message
        assert [r.name for r in store.list_clusters()] == ["alpha"]  # the server back: the store goes on
