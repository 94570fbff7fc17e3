"""The embedded state database: ``<home>/state.db`` (SQLite, WAL), or the file a ``sqlite:///PATH`` state URL names.
The records, and the checks every backend makes before writing, are in records.py (re-exported here); pg.py is
the same store on PostgreSQL, with the same schema versions.

Four tables (the SQLite implementation of :class:`provisioner.state.interface.StateStore`):

* ``clusters``: one row per known cluster: where it lives (IM URL, infrastructure id), how it was made (template,
  site, the non-secret inputs and a hash of the inputs), a deployment id unique to this tool, and its last known
  IM state and worker count.
* ``journal``: an append-only log of what the tool did to each cluster (:class:`Phase`). SQLite triggers refuse
  any UPDATE or DELETE of its rows; it outlives the cluster's row, so the history of a destroyed cluster stays.
* ``decisions``: the autoscaler's decision log, append-only in the same way (UPDATE refused since schema 2,
  DELETE since schema 6).
* ``workflows``: one row per workflow applied by ``provision workflow`` (schema 4): the FDL it came from and the
  services it owns on each cluster (what ``--prune`` and ``delete`` may remove); its journal is the ``journal``'s,
  under the name ``workflow:<name>``.

A continuum (``provision continuum``, schema 5: its clusters, their add-ons and a workflow, from one file) has no
table: its journal, under the name ``continuum:<name>``, records each ``up`` (which clusters and workflow it
declared), each step and its outcome, and each ``down``.

The store never holds secrets: inputs, ``extra`` and journal details with a key named like a secret (password,
token, secret, private key) are refused with ``ValueError`` -- that is a programming error, not a user error.

Every write is a transaction (``BEGIN IMMEDIATE``); several processes may write at once, each waits up to
``busy_timeout`` for the others. :meth:`Store.transaction` groups several writes into one.

Schema changes: bump :data:`SCHEMA_VERSION` and add the statements to ``_MIGRATIONS``; ``PRAGMA user_version``
records the version of a database, and a database from a newer version of the tool is refused. Adding a
:class:`Phase` needs a version bump too (a migration with no statements), so that an older tool does not meet
a phase it does not know.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from provisioner.errors import LockBusy, NotFound, OperationFailed
from provisioner.model import ClusterKind
from provisioner.privfs import ensure_private_dir
from provisioner.state.records import (
    CLUSTER_COLUMNS,
    WORKFLOW_COLUMNS,
    RowReader,
    checked_detail,
    checked_services,
    require_name,
    update_fields,
    upsert_fields,
    utc_now,
)

# The records and the rules before writing are every backend's (records.py); re-exported here, where they were.
from provisioner.state.records import SCHEMA_VERSION as SCHEMA_VERSION
from provisioner.state.records import SECRET_NAME_FRAGMENTS as SECRET_NAME_FRAGMENTS
from provisioner.state.records import ClusterRecord as ClusterRecord
from provisioner.state.records import DecisionEntry as DecisionEntry
from provisioner.state.records import JournalEntry as JournalEntry
from provisioner.state.records import Phase as Phase
from provisioner.state.records import WorkflowRecord as WorkflowRecord
from provisioner.state.records import check_no_secrets as check_no_secrets
from provisioner.state.records import inputs_hash as inputs_hash
from provisioner.state.records import new_deployment_id as new_deployment_id

DB_FILENAME = "state.db"
DEFAULT_BUSY_TIMEOUT = 30.0

# --- schema ----------------------------------------------------------------------------------------------------------

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE clusters (
            name          TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),
            im_url        TEXT NOT NULL,
            infra_id      TEXT,
            template      TEXT NOT NULL,
            site          TEXT NOT NULL,
            inputs        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(inputs)),
            inputs_hash   TEXT NOT NULL,
            deployment_id TEXT NOT NULL UNIQUE,
            state         TEXT,
            workers       INTEGER CHECK (workers IS NULL OR workers >= 0),
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL,
            extra         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(extra))
        ) STRICT
        """,
        """
        CREATE TABLE journal (
            seq     INTEGER PRIMARY KEY AUTOINCREMENT,
            cluster TEXT NOT NULL,
            phase   TEXT NOT NULL,
            ts      TEXT NOT NULL,
            detail  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
        ) STRICT
        """,
        "CREATE INDEX journal_by_cluster ON journal (cluster, seq)",
        """
        CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END
        """,
        """
        CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END
        """,
    ),
    # New journal phases (edge, install), and the autoscaler's decision log (append-only too).
    2: (
        """
        CREATE TABLE decisions (
            seq     INTEGER PRIMARY KEY AUTOINCREMENT,
            cluster TEXT NOT NULL,
            ts      TEXT NOT NULL,
            action  TEXT NOT NULL,
            detail  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
        ) STRICT
        """,
        "CREATE INDEX decisions_by_cluster ON decisions (cluster, seq)",
        """
        CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END
        """,
    ),
    # Who runs the machines, as a column: edge clusters were marked by the im_url "edge:" until now.
    3: (
        "ALTER TABLE clusters ADD COLUMN kind TEXT NOT NULL DEFAULT 'im' CHECK (kind IN ('im', 'edge'))",
        "UPDATE clusters SET kind = 'edge', im_url = '' WHERE im_url = 'edge:'",
    ),
    # Workflows (OSCAR services across clusters) and their journal phases.
    4: (
        """
        CREATE TABLE workflows (
            name       TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),
            source     TEXT NOT NULL,
            services   TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(services)),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT
        """,
    ),
    # The continuum's journal phases (no new table: its journal is the journal's, under "continuum:<name>").
    5: (),
    # The decision log refuses DELETE too, as the journal does (schema 2 refused only UPDATE).
    6: (
        """
        CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END
        """,
    ),
}
assert sorted(_MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))

_SELECT_CLUSTERS = f"SELECT {CLUSTER_COLUMNS} FROM clusters "  # noqa: S608 - a fixed column list


class Store:
    """The state database. Use as ``with Store.open(home) as store: ...``; not shared between threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, now: Callable[[], datetime] | None = None) -> None:
        self._conn = conn
        self._path = path
        self._now = now or (lambda: datetime.now(UTC))
        self._depth = 0

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        now: Callable[[], datetime] | None = None,
        path: Path | None = None,
    ) -> Self:
        """Open (creating on first use) ``<home>/state.db``, or the database file ``path`` (a ``sqlite:///PATH``
        state URL); the missing directories are created with mode 0700."""
        path = home / DB_FILENAME if path is None else path
        ensure_private_dir(home if path == home / DB_FILENAME else path.parent)
        _create_private_file(path)
        try:
            # One thread at a time uses a store, not always the one that opened it (workflow apply keeps one store
            # per cluster for all its waves, each wave on a worker thread).
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise OperationFailed(f"cannot open the state database {path}: {e}") from e
        store = cls(conn, path, now=now)
        try:
            store._configure(busy_timeout)
            store._migrate()
        except sqlite3.DatabaseError as e:
            conn.close()
            if _is_busy(e):
                raise _busy_error(path) from e
            raise OperationFailed(
                f"the state database {path} is unusable: {e}",
                hint="move it aside to start afresh (the clusters it lists will then be unknown to this tool)",
            ) from e
        except BaseException:
            conn.close()
            raise
        return store

    @property
    def path(self) -> Path:
        return self._path

    @property
    def location(self) -> str:
        """Where the state is, for messages: the database file."""
        return str(self._path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction (nested uses join the outer one); rolled back on any exception."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if _is_busy(e):
                raise _busy_error(self._path) from e
            raise
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if _is_busy(e):
                raise _busy_error(self._path) from e
            raise

    # --- clusters ----------------------------------------------------------------------------------------------------

    def upsert_cluster(
        self,
        name: str,
        *,
        im_url: str,
        template: str,
        site: str,
        inputs: Mapping[str, Any],
        deployment_id: str,
        infra_id: str | None = None,
        state: str | None = None,
        workers: int | None = None,
        extra: Mapping[str, Any] | None = None,
        inputs_hash: str | None = None,
        secret_keys: Collection[str] = (),
        kind: ClusterKind = ClusterKind.IM,
    ) -> ClusterRecord:
        """Create the record of cluster ``name``, or replace its fields (``created_at`` is kept).

        ``inputs`` must hold only non-secret inputs: a key in ``secret_keys`` or named like a secret is refused.
        ``inputs_hash`` defaults to the hash of ``inputs``; ``extra=None`` keeps the current ``extra``.
        """
        require_name(name)
        params = upsert_fields(
            im_url=im_url,
            template=template,
            site=site,
            inputs=inputs,
            deployment_id=deployment_id,
            infra_id=infra_id,
            state=state,
            workers=workers,
            extra=extra,
            inputs_hash=inputs_hash,
            secret_keys=secret_keys,
            kind=kind,
        )
        now = self._timestamp()
        params.update(name=name, now=now)
        with self.transaction():
            try:
                self._conn.execute(
                    """
                    INSERT INTO clusters (name, im_url, infra_id, template, site, inputs, inputs_hash, deployment_id,
                                          state, workers, created_at, updated_at, extra, kind)
                    VALUES (:name, :im_url, :infra_id, :template, :site, :inputs, :inputs_hash, :deployment_id,
                            :state, :workers, :now, :now, COALESCE(:extra, '{}'), :kind)
                    ON CONFLICT (name) DO UPDATE SET
                        im_url = excluded.im_url, infra_id = excluded.infra_id, template = excluded.template,
                        site = excluded.site, inputs = excluded.inputs, inputs_hash = excluded.inputs_hash,
                        deployment_id = excluded.deployment_id, state = excluded.state, workers = excluded.workers,
                        updated_at = excluded.updated_at, extra = COALESCE(:extra, clusters.extra),
                        kind = excluded.kind
                    """,
                    params,
                )
            except sqlite3.IntegrityError as e:
                raise _integrity_error(e, deployment_id) from e
            record = self.get_cluster(name)
        assert record is not None
        return record

    def get_cluster(self, name: str) -> ClusterRecord | None:
        row = self._conn.execute(_SELECT_CLUSTERS + "WHERE name = ?", (name,)).fetchone()
        return None if row is None else _cluster(row)

    def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster record, by name."""
        rows = self._conn.execute(_SELECT_CLUSTERS + "ORDER BY name").fetchall()
        return [_cluster(row) for row in rows]

    def find_by_deployment_id(self, deployment_id: str) -> ClusterRecord | None:
        row = self._conn.execute(_SELECT_CLUSTERS + "WHERE deployment_id = ?", (deployment_id,)).fetchone()
        return None if row is None else _cluster(row)

    def update_cluster(self, name: str, /, *, secret_keys: Collection[str] = (), **fields: Any) -> ClusterRecord:
        """Set some fields of cluster ``name`` (and ``updated_at``); returns the updated record.

        Only the columns of :class:`ClusterRecord` other than ``name``, ``created_at`` and ``updated_at`` may be set
        (``ValueError`` otherwise). New ``inputs`` without ``inputs_hash`` get the hash of the new inputs.
        Raises :class:`NotFound` if there is no such cluster.
        """
        params = update_fields(fields, secret_keys)
        params["updated_at"] = self._timestamp()
        assignments = ", ".join(f"{column} = :{column}" for column in params)
        params["name"] = name
        with self.transaction():
            try:
                # The column names come from UPDATABLE (records.py), never from the caller.
                cursor = self._conn.execute(f"UPDATE clusters SET {assignments} WHERE name = :name", params)  # noqa: S608
            except sqlite3.IntegrityError as e:
                raise _integrity_error(e, fields.get("deployment_id")) from e
            if cursor.rowcount == 0:
                raise NotFound(f"no cluster named {name!r} in the local state")
            record = self.get_cluster(name)
        assert record is not None
        return record

    def delete_cluster(self, name: str) -> bool:
        """Remove the record of cluster ``name`` (its journal stays); ``False`` if there was none."""
        with self.transaction():
            cursor = self._conn.execute("DELETE FROM clusters WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # --- workflows ---------------------------------------------------------------------------------------------------

    def upsert_workflow(self, name: str, *, source: str, services: list[Mapping[str, Any]]) -> WorkflowRecord:
        """Create or replace the record of workflow ``name`` (``created_at`` is kept)."""
        require_name(name, "workflow")
        listed = checked_services(services)
        now = self._timestamp()
        with self.transaction():
            self._conn.execute(
                """
                INSERT INTO workflows (name, source, services, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET source = excluded.source, services = excluded.services,
                    updated_at = excluded.updated_at
                """,
                (name, source, json.dumps(listed, sort_keys=True), now, now),
            )
            record = self.get_workflow(name)
        assert record is not None
        return record

    def get_workflow(self, name: str) -> WorkflowRecord | None:
        row = self._conn.execute(_SELECT_WORKFLOWS + "WHERE name = ?", (name,)).fetchone()
        return None if row is None else _workflow(row)

    def list_workflows(self) -> list[WorkflowRecord]:
        return [_workflow(row) for row in self._conn.execute(_SELECT_WORKFLOWS + "ORDER BY name").fetchall()]

    def delete_workflow(self, name: str) -> bool:
        with self.transaction():
            cursor = self._conn.execute("DELETE FROM workflows WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # --- journal -----------------------------------------------------------------------------------------------------

    def append(self, name: str, phase: Phase | str, detail: Mapping[str, Any] | None = None) -> JournalEntry:
        """Append an entry to the journal of cluster ``name`` (which need not have a record)."""
        require_name(name)
        phase = Phase(phase)
        detail_json = checked_detail(detail, "journal detail")
        ts = self._timestamp()
        with self.transaction():
            row = self._conn.execute(
                "INSERT INTO journal (cluster, phase, ts, detail) VALUES (?, ?, ?, ?) RETURNING seq",
                (name, phase.value, ts, detail_json),
            ).fetchone()
        return _entry((row[0], name, phase.value, ts, detail_json))

    def journal(self, name: str | None = None, limit: int | None = None) -> list[JournalEntry]:
        """Journal entries, oldest first: of cluster ``name`` (all clusters if ``None``); the last ``limit`` only."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        params: list[Any] = []
        where = ""
        if name is not None:
            where = "WHERE cluster = ?"
            params.append(name)
        query = f"SELECT seq, cluster, phase, ts, detail FROM journal {where} ORDER BY seq DESC"  # noqa: S608
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        rows = self._conn.execute(query, params).fetchall()
        return [_entry(row) for row in reversed(rows)]

    def append_decision(self, name: str, action: str, detail: Mapping[str, Any]) -> DecisionEntry:
        """Append an autoscaler decision (signals read, rule matched, action taken or not) to the decision log."""
        require_name(name)
        detail_json = checked_detail(detail, "decision detail")
        ts = self._timestamp()
        with self.transaction():
            row = self._conn.execute(
                "INSERT INTO decisions (cluster, ts, action, detail) VALUES (?, ?, ?, ?) RETURNING seq",
                (name, ts, action, detail_json),
            ).fetchone()
        return _decision((row[0], name, ts, action, detail_json))

    def decisions(self, name: str, limit: int | None = None) -> list[DecisionEntry]:
        """The autoscaler's decisions about cluster ``name``, oldest first (the last ``limit`` only)."""
        query = "SELECT seq, cluster, ts, action, detail FROM decisions WHERE cluster = ? ORDER BY seq DESC"
        params: list[Any] = [name]
        if limit is not None:
            query += " LIMIT ?"
            params.append(max(limit, 0))
        rows = self._conn.execute(query, params).fetchall()
        return [_decision(r) for r in reversed(rows)]

    def all_decisions(self) -> list[DecisionEntry]:
        """The whole decision log, oldest first (what ``provision state migrate`` copies)."""
        rows = self._conn.execute("SELECT seq, cluster, ts, action, detail FROM decisions ORDER BY seq").fetchall()
        return [_decision(r) for r in rows]

    def last_decision(self, name: str, *, applied: bool = False, having: str | None = None) -> DecisionEntry | None:
        """The latest decision about ``name``: only among those whose scaling was applied (``applied``), and/or
        those whose detail has the top-level key ``having`` (e.g. ``"idle_since"``). ``None`` if there is none."""
        conditions = ["cluster = ?"]
        params: list[Any] = [name]
        if applied:
            conditions.append("json_extract(detail, '$.applied') = 1")
        if having is not None:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", having):
                raise ValueError(f"not a detail key: {having!r}")
            conditions.append("json_type(detail, ?) IS NOT NULL")
            params.append(f"$.{having}")
        query = (
            "SELECT seq, cluster, ts, action, detail FROM decisions "  # noqa: S608 - fixed fragments, values bound
            f"WHERE {' AND '.join(conditions)} ORDER BY seq DESC LIMIT 1"
        )
        row = self._conn.execute(query, params).fetchone()
        if row is None:
            return None
        return _decision(row)

    def last_of_phase(self, name: str, phase: Phase | str) -> JournalEntry | None:
        """The latest journal entry of cluster ``name`` in ``phase`` (e.g. the last ``SCALED``), or ``None``."""
        row = self._conn.execute(
            "SELECT seq, cluster, phase, ts, detail FROM journal WHERE cluster = ? AND phase = ? "
            "ORDER BY seq DESC LIMIT 1",
            (name, Phase(phase).value),
        ).fetchone()
        return _entry(row) if row is not None else None

    def last_phase(self, name: str) -> JournalEntry | None:
        """The latest journal entry of cluster ``name``."""
        entries = self.journal(name, limit=1)
        return entries[0] if entries else None

    # --- internals ---------------------------------------------------------------------------------------------------

    def _configure(self, busy_timeout: float) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {max(int(busy_timeout * 1000), 0)}")
        # Switching to WAL needs an exclusive lock and SQLite does not wait for it (no busy handler here): when
        # several processes open a new database at once, retry until one of them has switched it.
        deadline = time.monotonic() + busy_timeout
        pause = 0.005
        while True:
            try:
                mode = str(self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
                mode = "busy"
            if mode.lower() == "wal":
                break
            if time.monotonic() >= deadline:
                raise sqlite3.DatabaseError(f"cannot switch to WAL mode (journal_mode is {mode!r})")
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        self._conn.execute("PRAGMA synchronous = FULL")

    def _migrate(self) -> None:
        if self._user_version() == SCHEMA_VERSION:
            return
        with self.transaction():
            version = self._user_version()  # again: another process may have migrated meanwhile
            if version > SCHEMA_VERSION:
                raise OperationFailed(
                    f"the state database {self._path} has schema version {version}, newer than this tool's"
                    f" ({SCHEMA_VERSION})",
                    hint="upgrade provision",
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {target}")

    def _user_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _timestamp(self) -> str:
        return utc_now(self._now).isoformat(timespec="microseconds")


# --- helpers ----------------------------------------------------------------------------------------------------------


_ROWS = RowReader(when=datetime.fromisoformat, error=sqlite3.DatabaseError)  # timestamps are ISO 8601 text here
_cluster = _ROWS.cluster
_workflow = _ROWS.workflow
_entry = _ROWS.entry
_decision = _ROWS.decision
_SELECT_WORKFLOWS = f"SELECT {WORKFLOW_COLUMNS} FROM workflows "  # noqa: S608 - a fixed column list


def _create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing (before SQLite creates it with the umask's mode); tighten it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o777 != 0o600:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as e:
        raise OperationFailed(f"cannot open the state database {path}: {e.strerror}") from e


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _busy_error(path: Path) -> LockBusy:
    return LockBusy(
        f"the state database {path} is busy: another provision command kept it locked too long",
        hint="try again when the other command has finished",
    )


def _integrity_error(error: sqlite3.IntegrityError, deployment_id: str | None) -> ValueError:
    if "deployment_id" in str(error):
        return ValueError(f"deployment id {deployment_id!r} already belongs to another cluster")
    return ValueError(f"the state database refused the change: {error}")
