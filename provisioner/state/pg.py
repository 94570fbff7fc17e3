"""The state on PostgreSQL (``postgresql://USER@HOST/DB``, psycopg 3): a team's shared registry, journal, decision
log and workflow records (:class:`PgStore`), and the per-cluster and per-endpoint locks (:func:`advisory_lock`).

The same four tables, records and refusals as the embedded SQLite store (what they share is in records.py: the
records, the secret checks, the typed cluster fields, the canonical JSON), and the same schema versions: each
version's DDL is written twice, once per backend (``_MIGRATIONS`` here, store.py's for SQLite). Here:

* the version is in the one-row table ``schema_version``; a database made by a newer tool is refused. Migrations
  run in one transaction under a transaction-level advisory lock, so that commands opening a new database at once
  wait for the first to have made it;
* timestamps are ``timestamptz``, read back in UTC; JSON columns are ``json`` (the canonical text kept as written);
* the journal and the decision log are append-only: triggers raise on any UPDATE, DELETE or TRUNCATE;
* each store is one connection in autocommit; :meth:`PgStore.transaction` is ``BEGIN`` ... ``COMMIT``, and a
  nested use is a savepoint inside it (a failed statement in it leaves the outer transaction usable, as SQLite's
  statements do);
* a lock is a session-level advisory lock (``pg_try_advisory_lock`` on a 64-bit hash of its subject, polled until
  the timeout) on a connection of its own, held as long as the lock is: when its holder exits or is killed, the
  server ends the session and the lock with it. Who holds it (user, host, pid, what it does, since when) is a row of
  ``lock_holders`` written on that connection and deleted on release; a row whose session is gone (its backend
  pid, started at that time, no longer in ``pg_stat_activity``) is never shown.

When the database goes away (stopped, restarted, the network cut):

* a command that cannot connect stops with :class:`~provisioner.errors.StateUnreachable` (exit 3, triage cause
  ``state-unreachable``, runbook ``state-down``), naming the database by its URL without the password;
* a store whose connection broke connects again, once (retrying for up to :data:`RECONNECT_WINDOW` s while the
  server starts), and only outside an open transaction: a statement that was not sent or is safe to send again
  (a read, or the ``BEGIN`` of a write). A connection that breaks inside a transaction, or on its ``COMMIT``,
  is not retried: the command stops, saying whether the write was lost or its fate is unknown;
* a lock does not survive its connection: the server ended the session, so another command may hold the lock now.
  The holder cannot know when that happened, so it does not take the lock again, nor go on without it: before every
  write (at the ``BEGIN`` of each transaction, and before reconnecting a store) the store checks the connections of
  the locks this process holds in its database (without a round trip: whether the server closed them), and a
  lost one stops the command with :class:`~provisioner.errors.StateUnreachable` naming the lock. What the command
  sent to IM since its last write ran unlocked for that while; running the same command again resumes from the
  journal (``provision state doctor`` lists what was left unfinished).

Secrets stay out of this database as out of the SQLite one: they are refused before any SQL is sent.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict

from provisioner.errors import InputError, LockBusy, NotFound, OperationFailed, StateUnreachable
from provisioner.model import ClusterKind
from provisioner.redact import mask
from provisioner.state.records import (
    CLUSTER_COLUMNS,
    DECISION_COLUMNS,
    JOURNAL_COLUMNS,
    JSON_COLUMNS,
    SCHEMA_VERSION,
    WORKFLOW_COLUMNS,
    ClusterRecord,
    DecisionEntry,
    JournalEntry,
    Phase,
    RowReader,
    WorkflowRecord,
    canonical_json,
    checked_detail,
    checked_services,
    require_name,
    update_fields,
    upsert_fields,
    utc_now,
)
from provisioner.state.url import StateURL, parse_state_url

DEFAULT_LOCK_WAIT = 30.0  # s a write waits for another command's row locks (SQLite's busy timeout, here)
DEFAULT_CONNECT_TIMEOUT = 10  # s, unless the URL says otherwise
RECONNECT_WINDOW = 10.0  # s a store whose connection broke keeps trying to connect again (a server restarting)
_UNREACHABLE_HINT = (
    "check the state URL (--state, PROVISION_STATE_URL, state_url), that the server is up, and the credentials "
    "(a password in ~/.pgpass or PGPASSWORD keeps it out of the URL)"
)
_AGAIN_HINT = (
    "once the state database answers, run the same command again: it resumes from the journal "
    "(provision state doctor lists what was left unfinished)"
)

_APPEND_ONLY = """
    CREATE OR REPLACE FUNCTION provision_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
    END
    $$
"""


def _append_only(table: str, what: str) -> tuple[str, ...]:
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION provision_append_only('{what}')",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION provision_append_only('{what}')",
    )


# The schema versions of store.py's _MIGRATIONS, in PostgreSQL's words.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE clusters (
            name          TEXT PRIMARY KEY CHECK (name <> ''),
            im_url        TEXT NOT NULL,
            infra_id      TEXT,
            template      TEXT NOT NULL,
            site          TEXT NOT NULL,
            inputs        JSON NOT NULL DEFAULT '{}',
            inputs_hash   TEXT NOT NULL,
            deployment_id TEXT NOT NULL UNIQUE,
            state         TEXT,
            workers       INTEGER CHECK (workers IS NULL OR workers >= 0),
            created_at    TIMESTAMPTZ NOT NULL,
            updated_at    TIMESTAMPTZ NOT NULL,
            extra         JSON NOT NULL DEFAULT '{}'
        )
        """,
        """
        CREATE TABLE journal (
            seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            cluster TEXT NOT NULL,
            phase   TEXT NOT NULL,
            ts      TIMESTAMPTZ NOT NULL,
            detail  JSON NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX journal_by_cluster ON journal (cluster, seq)",
        _APPEND_ONLY,
        *_append_only("journal", "the journal"),
        # PostgreSQL only, from the start: who holds the advisory locks (see advisory_lock).
        """
        CREATE TABLE lock_holders (
            lock_id       BIGINT PRIMARY KEY,
            subject       TEXT NOT NULL,
            backend_pid   INTEGER NOT NULL,
            backend_start TIMESTAMPTZ NOT NULL,
            user_name     TEXT NOT NULL,
            host          TEXT NOT NULL,
            pid           INTEGER NOT NULL,
            purpose       TEXT,
            since         TIMESTAMPTZ NOT NULL
        )
        """,
    ),
    2: (
        """
        CREATE TABLE decisions (
            seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            cluster TEXT NOT NULL,
            ts      TIMESTAMPTZ NOT NULL,
            action  TEXT NOT NULL,
            detail  JSON NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX decisions_by_cluster ON decisions (cluster, seq)",
        *_append_only("decisions", "the decision log"),
    ),
    3: (
        "ALTER TABLE clusters ADD COLUMN kind TEXT NOT NULL DEFAULT 'im' CHECK (kind IN ('im', 'edge'))",
        "UPDATE clusters SET kind = 'edge', im_url = '' WHERE im_url = 'edge:'",
    ),
    4: (
        """
        CREATE TABLE workflows (
            name       TEXT PRIMARY KEY CHECK (name <> ''),
            source     TEXT NOT NULL,
            services   JSON NOT NULL DEFAULT '[]',
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )
        """,
    ),
    5: (),
    # SQLite's decision log learns to refuse DELETE; here its trigger has refused UPDATE, DELETE and TRUNCATE
    # since version 2.
    6: (),
}
assert sorted(_MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        version  INTEGER NOT NULL
    )
"""


def lock_id(key: str) -> int:
    """The advisory lock key of ``key`` (``cluster:NAME``, ``endpoint:URL``...): a signed 64-bit hash."""
    return int.from_bytes(hashlib.sha256(f"provision:{key}".encode()).digest()[:8], "big", signed=True)


_MIGRATION_LOCK = lock_id("schema migration")


def _as_text(columns: str) -> str:
    """A column list with the JSON columns read as their text (decoded by records.RowReader as SQLite's are)."""
    return ", ".join(f"{c}::text" if c in (*JSON_COLUMNS, "detail", "services") else c for c in columns.split(", "))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


_ROWS = RowReader(when=_utc, error=psycopg.DataError)
_CLUSTERS = _as_text(CLUSTER_COLUMNS)
_WORKFLOWS = _as_text(WORKFLOW_COLUMNS)
_JOURNAL = _as_text(JOURNAL_COLUMNS)
_DECISIONS = _as_text(DECISION_COLUMNS)


# --- connections and the schema ---------------------------------------------------------------------------------------


def connect(
    url: StateURL, *, purpose: str = "provision", lock_wait: float = DEFAULT_LOCK_WAIT, keepalive: bool = False
) -> psycopg.Connection:
    """An autocommit connection to the state database, its session in UTC; what the URL sets wins over our
    defaults (connect timeout, application name), and its ``options`` are kept beside ours. ``keepalive``: the
    server probes the client's TCP connection after 30 s of silence, so that a lock whose holder's host vanished
    (no FIN ever sent) is released in about a minute rather than hours. :class:`StateUnreachable` if it cannot."""
    try:
        return _connect(url, purpose=purpose, lock_wait=lock_wait, keepalive=keepalive)
    except psycopg.Error as e:
        # Refused, DNS, TLS, a timeout, the server starting or shutting down, authentication refused, no such role
        # or database: all say the same to the user: this database cannot be used from here now.
        raise StateUnreachable(
            f"cannot connect to the state database {url.redacted}: {_reason(e)}", hint=_UNREACHABLE_HINT
        ) from e


def _connect(url: StateURL, *, purpose: str, lock_wait: float, keepalive: bool) -> psycopg.Connection:
    try:
        given = conninfo_to_dict(url.url)
    except psycopg.ProgrammingError as e:
        raise InputError(f"not a usable PostgreSQL URL {url.redacted}: {_reason(e)}", field="state_url") from e
    options = f"-c TimeZone=UTC -c lock_timeout={max(int(lock_wait * 1000), 1)}"
    if keepalive:
        options += " -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"
    extra: dict[str, Any] = {"options": f"{given.get('options') or ''} {options}".strip()}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = purpose[:63]
    return psycopg.connect(url.url, autocommit=True, **extra)


def ensure_schema(conn: psycopg.Connection, where: str) -> None:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` (one transaction; concurrent callers wait)."""
    try:
        version = _version(conn)
        if version == SCHEMA_VERSION:
            return
        if version < SCHEMA_VERSION:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(_VERSION_TABLE)
                version = _version(conn)  # again: another command may have migrated meanwhile
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target]:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (only_row, version) VALUES (TRUE, %s) "
                        "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                        (target,),
                    )
    except psycopg.errors.InsufficientPrivilege as e:
        raise OperationFailed(
            f"cannot create or migrate the schema of the state database {where}: {_reason(e)}",
            hint="the first command on a new database (and after an upgrade) needs a role that may create tables in "
            "it; or have its owner run that command once",
        ) from e
    except psycopg.Error as e:
        if conn.broken:
            raise StateUnreachable(
                f"the connection to the state database {where} broke: {_reason(e)}", hint=_UNREACHABLE_HINT
            ) from e
        raise OperationFailed(f"the state database {where} is unusable: {_reason(e)}") from e
    if version > SCHEMA_VERSION:
        raise OperationFailed(
            f"the state database {where} has schema version {version}, newer than this tool's ({SCHEMA_VERSION})",
            hint="upgrade provision",
        )


def schema_version(conn: psycopg.Connection) -> int:
    """The schema version of the database (0: none yet)."""
    return _version(conn)


def _version(conn: psycopg.Connection) -> int:
    in_transaction = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    try:
        # Inside a transaction a missing table would abort it: ask the catalogue first there.
        if in_transaction:
            row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
            if row is None or not row[0]:
                return 0
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row is not None else 0


class _Broken(Exception):
    """A store's connection found broken (its session, and what the session held, gone)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(error: psycopg.Error) -> str:
    """The server's or libpq's one-line reason, masked."""
    text = (error.diag.message_primary if error.diag is not None else None) or str(error)
    return mask(text.strip().splitlines()[0] if text.strip() else type(error).__name__)


# --- the store -------------------------------------------------------------------------------------------------------


class PgStore:
    """The state in a PostgreSQL database. Use as ``with PgStore.open(url) as store: ...``; one thread at a time."""

    def __init__(
        self,
        conn: psycopg.Connection,
        url: StateURL,
        *,
        now: Callable[[], datetime] | None = None,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        self._conn = conn
        self._url = url
        self._now = now or (lambda: datetime.now(UTC))
        self._depth = 0
        self._lock_wait = lock_wait

    @classmethod
    def open(
        cls,
        url: str | StateURL,
        *,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        now: Callable[[], datetime] | None = None,
    ) -> Self:
        """Connect, and create or migrate the schema on first use."""
        parsed = parse_state_url(url) if isinstance(url, str) else url
        if not parsed.is_postgresql:
            raise ValueError(f"not a PostgreSQL URL: {parsed.redacted}")
        conn = connect(parsed, lock_wait=lock_wait)
        try:
            ensure_schema(conn, parsed.redacted)
        except BaseException:
            conn.close()
            raise
        return cls(conn, parsed, now=now, lock_wait=lock_wait)

    @property
    def path(self) -> Path:
        """Not a file: the redacted URL as a path (see :attr:`location`)."""
        return Path(self._url.redacted)

    @property
    def location(self) -> str:
        """Where the state is, for messages: the URL without its password."""
        return self._url.redacted

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
        """Group writes into one transaction (a nested use is a savepoint in it); rolled back on any exception."""
        if self._depth:
            savepoint = f"nested_{self._depth}"
            self._exec(f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                with contextlib.suppress(psycopg.Error, OperationFailed):
                    self._exec(f"ROLLBACK TO SAVEPOINT {savepoint}")
                raise
            finally:
                self._depth -= 1
            self._exec(f"RELEASE SAVEPOINT {savepoint}")
            return
        self._require_locks()  # a write from here on: not without the locks this command holds
        self._exec("BEGIN")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self._exec("COMMIT", retry=False)

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
        """Create the record of cluster ``name``, or replace its fields (``created_at`` is kept); see Store."""
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
        params.update(name=name, now=utc_now(self._now))
        with self.transaction():
            row = self._write(
                f"""
                INSERT INTO clusters (name, im_url, infra_id, template, site, inputs, inputs_hash, deployment_id,
                                      state, workers, created_at, updated_at, extra, kind)
                VALUES (%(name)s, %(im_url)s, %(infra_id)s, %(template)s, %(site)s, %(inputs)s::json,
                        %(inputs_hash)s, %(deployment_id)s, %(state)s, %(workers)s, %(now)s, %(now)s,
                        COALESCE(%(extra)s::json, '{{}}'::json), %(kind)s)
                ON CONFLICT (name) DO UPDATE SET
                    im_url = excluded.im_url, infra_id = excluded.infra_id, template = excluded.template,
                    site = excluded.site, inputs = excluded.inputs, inputs_hash = excluded.inputs_hash,
                    deployment_id = excluded.deployment_id, state = excluded.state, workers = excluded.workers,
                    updated_at = excluded.updated_at, extra = COALESCE(%(extra)s::json, clusters.extra),
                    kind = excluded.kind
                RETURNING {_CLUSTERS}
                """,  # noqa: S608 - a fixed column list; values bound
                params,
                deployment_id,
            )
        assert row is not None
        return _ROWS.cluster(row)

    def get_cluster(self, name: str) -> ClusterRecord | None:
        row = self._exec(f"SELECT {_CLUSTERS} FROM clusters WHERE name = %s", (name,)).fetchone()  # noqa: S608
        return None if row is None else _ROWS.cluster(row)

    def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster record, by name."""
        rows = self._exec(f"SELECT {_CLUSTERS} FROM clusters ORDER BY name").fetchall()  # noqa: S608
        return [_ROWS.cluster(row) for row in rows]

    def find_by_deployment_id(self, deployment_id: str) -> ClusterRecord | None:
        query = f"SELECT {_CLUSTERS} FROM clusters WHERE deployment_id = %s"  # noqa: S608
        row = self._exec(query, (deployment_id,)).fetchone()
        return None if row is None else _ROWS.cluster(row)

    def update_cluster(self, name: str, /, *, secret_keys: Collection[str] = (), **fields: Any) -> ClusterRecord:
        """Set some fields of cluster ``name`` (and ``updated_at``); see Store. :class:`NotFound` if none."""
        params = update_fields(fields, secret_keys)
        params["updated_at"] = utc_now(self._now)
        # The column names come from UPDATABLE (records.py), never from the caller.
        assignments = ", ".join(
            f"{column} = %({column})s::json" if column in JSON_COLUMNS else f"{column} = %({column})s"
            for column in params
        )
        params["name"] = name
        with self.transaction():
            row = self._write(
                f"UPDATE clusters SET {assignments} WHERE name = %(name)s RETURNING {_CLUSTERS}",  # noqa: S608
                params,
                fields.get("deployment_id"),
            )
        if row is None:
            raise NotFound(f"no cluster named {name!r} in the local state")
        return _ROWS.cluster(row)

    def delete_cluster(self, name: str) -> bool:
        """Remove the record of cluster ``name`` (its journal stays); ``False`` if there was none."""
        with self.transaction():
            cursor = self._exec("DELETE FROM clusters WHERE name = %s", (name,))
        return cursor.rowcount > 0

    # --- workflows ---------------------------------------------------------------------------------------------------

    def upsert_workflow(self, name: str, *, source: str, services: list[Mapping[str, Any]]) -> WorkflowRecord:
        """Create or replace the record of workflow ``name`` (``created_at`` is kept)."""
        require_name(name, "workflow")
        listed = checked_services(services)
        now = utc_now(self._now)
        with self.transaction():
            row = self._exec(
                f"""
                INSERT INTO workflows (name, source, services, created_at, updated_at)
                VALUES (%s, %s, %s::json, %s, %s)
                ON CONFLICT (name) DO UPDATE SET source = excluded.source, services = excluded.services,
                    updated_at = excluded.updated_at
                RETURNING {_WORKFLOWS}
                """,  # noqa: S608 - a fixed column list; values bound
                (name, source, canonical_json(listed), now, now),
            ).fetchone()
        assert row is not None
        return _ROWS.workflow(row)

    def get_workflow(self, name: str) -> WorkflowRecord | None:
        row = self._exec(f"SELECT {_WORKFLOWS} FROM workflows WHERE name = %s", (name,)).fetchone()  # noqa: S608
        return None if row is None else _ROWS.workflow(row)

    def list_workflows(self) -> list[WorkflowRecord]:
        rows = self._exec(f"SELECT {_WORKFLOWS} FROM workflows ORDER BY name").fetchall()  # noqa: S608
        return [_ROWS.workflow(row) for row in rows]

    def delete_workflow(self, name: str) -> bool:
        with self.transaction():
            cursor = self._exec("DELETE FROM workflows WHERE name = %s", (name,))
        return cursor.rowcount > 0

    # --- journal -----------------------------------------------------------------------------------------------------

    def append(self, name: str, phase: Phase | str, detail: Mapping[str, Any] | None = None) -> JournalEntry:
        """Append an entry to the journal of cluster ``name`` (which need not have a record)."""
        require_name(name)
        phase = Phase(phase)
        detail_json = checked_detail(detail, "journal detail")
        with self.transaction():
            row = self._exec(
                f"INSERT INTO journal (cluster, phase, ts, detail) VALUES (%s, %s, %s, %s::json) "  # noqa: S608
                f"RETURNING {_JOURNAL}",
                (name, phase.value, utc_now(self._now), detail_json),
            ).fetchone()
        assert row is not None
        return _ROWS.entry(row)

    def journal(self, name: str | None = None, limit: int | None = None) -> list[JournalEntry]:
        """Journal entries, oldest first: of cluster ``name`` (all clusters if ``None``); the last ``limit`` only."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        params: list[Any] = []
        where = ""
        if name is not None:
            where = "WHERE cluster = %s"
            params.append(name)
        query = f"SELECT {_JOURNAL} FROM journal {where} ORDER BY seq DESC"  # noqa: S608
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        rows = self._exec(query, params).fetchall()
        return [_ROWS.entry(row) for row in reversed(rows)]

    def last_of_phase(self, name: str, phase: Phase | str) -> JournalEntry | None:
        """The latest journal entry of cluster ``name`` in ``phase``, or ``None``."""
        row = self._exec(
            f"SELECT {_JOURNAL} FROM journal WHERE cluster = %s AND phase = %s "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1",
            (name, Phase(phase).value),
        ).fetchone()
        return None if row is None else _ROWS.entry(row)

    def last_phase(self, name: str) -> JournalEntry | None:
        """The latest journal entry of cluster ``name``."""
        entries = self.journal(name, limit=1)
        return entries[0] if entries else None

    # --- the decision log --------------------------------------------------------------------------------------------

    def append_decision(self, name: str, action: str, detail: Mapping[str, Any]) -> DecisionEntry:
        """Append an autoscaler decision to the decision log."""
        require_name(name)
        detail_json = checked_detail(detail, "decision detail")
        with self.transaction():
            row = self._exec(
                f"INSERT INTO decisions (cluster, ts, action, detail) VALUES (%s, %s, %s, %s::json) "  # noqa: S608
                f"RETURNING {_DECISIONS}",
                (name, utc_now(self._now), action, detail_json),
            ).fetchone()
        assert row is not None
        return _ROWS.decision(row)

    def decisions(self, name: str, limit: int | None = None) -> list[DecisionEntry]:
        """The autoscaler's decisions about cluster ``name``, oldest first (the last ``limit`` only)."""
        query = f"SELECT {_DECISIONS} FROM decisions WHERE cluster = %s ORDER BY seq DESC"  # noqa: S608
        params: list[Any] = [name]
        if limit is not None:
            query += " LIMIT %s"
            params.append(max(limit, 0))
        rows = self._exec(query, params).fetchall()
        return [_ROWS.decision(row) for row in reversed(rows)]

    def all_decisions(self) -> list[DecisionEntry]:
        """The whole decision log, oldest first (what ``provision state migrate`` copies)."""
        rows = self._exec(f"SELECT {_DECISIONS} FROM decisions ORDER BY seq").fetchall()  # noqa: S608
        return [_ROWS.decision(row) for row in rows]

    def last_decision(self, name: str, *, applied: bool = False, having: str | None = None) -> DecisionEntry | None:
        """The latest decision about ``name`` (only applied ones, and/or those whose detail has the key ``having``)."""
        conditions = ["cluster = %s"]
        params: list[Any] = [name]
        if applied:
            conditions.append("(detail ->> 'applied') IN ('true', '1')")
        if having is not None:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", having):
                raise ValueError(f"not a detail key: {having!r}")
            conditions.append("(detail -> %s) IS NOT NULL")
            params.append(having)
        query = (
            f"SELECT {_DECISIONS} FROM decisions "  # noqa: S608 - fixed fragments, values bound
            f"WHERE {' AND '.join(conditions)} ORDER BY seq DESC LIMIT 1"
        )
        row = self._exec(query, params).fetchone()
        return None if row is None else _ROWS.decision(row)

    # --- internals ---------------------------------------------------------------------------------------------------

    def _exec(self, query: str, params: Any = None, *, retry: bool = True) -> psycopg.Cursor[tuple[Any, ...]]:
        """Run one statement; a lost connection or a wait for another command's rows that ran out, in our words.

        A connection found broken is made again once, and the statement sent again, only outside a transaction
        (a read, or a ``BEGIN``: nothing was written) and unless ``retry`` is false (a ``COMMIT``)."""
        try:
            return self._run(query, params)
        except _Broken as broken:
            if self._depth or not retry:
                # The server rolled back what the session had not committed; a COMMIT's answer is lost.
                what = "while committing a write, which may or may not be made" if not retry else "mid-write"
                self._depth = 0
                raise StateUnreachable(
                    f"the connection to the state database {self.location} broke {what}: {broken.reason}",
                    hint=_AGAIN_HINT,
                ) from broken.__cause__
            self._reconnect(broken.reason)
        try:
            return self._run(query, params)
        except _Broken as broken:
            raise StateUnreachable(
                f"the connection to the state database {self.location} broke again: {broken.reason}",
                hint=_AGAIN_HINT,
            ) from broken.__cause__

    def _run(self, query: str, params: Any) -> psycopg.Cursor[tuple[Any, ...]]:
        try:
            return self._conn.execute(query, params)
        except psycopg.errors.LockNotAvailable as e:
            raise LockBusy(
                f"the state database {self.location} is busy: another provision command kept rows locked too long",
                hint="try again when the other command has finished",
            ) from e
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            if self._conn.closed:  # broken (or closed under us): the session, and what it held, is gone
                raise _Broken(_reason(e)) from e
            raise OperationFailed(f"the state database {self.location} failed: {_reason(e)}") from e

    def _reconnect(self, reason: str) -> None:
        """A new connection for one whose session is gone, unless a lock of this process went with the server."""
        self._require_locks(reason)
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        deadline = time.monotonic() + RECONNECT_WINDOW
        while True:
            try:
                self._conn = _connect(self._url, purpose="provision", lock_wait=self._lock_wait, keepalive=False)
                return
            except psycopg.Error as e:
                if time.monotonic() >= deadline:
                    raise StateUnreachable(
                        f"the connection to the state database {self.location} broke ({reason}) and could not be "
                        f"made again: {_reason(e)}",
                        hint=_UNREACHABLE_HINT,
                    ) from e
                time.sleep(0.5)

    def _require_locks(self, reason: str | None = None) -> None:
        """Stop if a lock this process holds in this database was lost with its connection (see the module)."""
        lost = lost_locks(self._url)
        if lost:
            why = f" ({reason})" if reason else ""
            raise StateUnreachable(
                f"{lost[0]} is no longer locked: the connection holding its lock in the state database "
                f"{self.location} broke{why}; stopped rather than go on without the lock",
                hint=_AGAIN_HINT,
            )

    def _write(self, query: str, params: Mapping[str, Any], deployment_id: Any) -> tuple[Any, ...] | None:
        """A cluster write, its integrity errors (a deployment id taken, a refused value) as ``ValueError``."""
        try:
            return self._exec(query, params).fetchone()
        except psycopg.errors.UniqueViolation as e:
            if "deployment_id" in str(e):
                raise ValueError(f"deployment id {deployment_id!r} already belongs to another cluster") from e
            raise ValueError(f"the state database refused the change: {_reason(e)}") from e
        except psycopg.IntegrityError as e:
            raise ValueError(f"the state database refused the change: {_reason(e)}") from e


# --- locks -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgLockHolder:
    """Who holds an advisory lock, as its holder wrote it (only shown while the holder's session lives)."""

    subject: str
    user: str
    host: str
    pid: int
    purpose: str | None
    since: datetime


_LIVE_HOLDERS = """
    SELECT h.subject, h.user_name, h.host, h.pid, h.purpose, h.since
    FROM lock_holders h
    JOIN pg_stat_activity a ON a.pid = h.backend_pid AND a.backend_start = h.backend_start
"""


@contextmanager
def advisory_lock(
    url: StateURL, key: str, *, subject: str, timeout: float, poll: float, purpose: str | None
) -> Iterator[None]:
    """Hold the advisory lock of ``key`` for the ``with`` block, on a connection of its own (see the module).

    Waits up to ``timeout`` s (0: try once), then raises :class:`LockBusy` naming the holder.
    """
    conn = connect(url, purpose=f"provision lock {subject}"[:63], keepalive=True)
    try:
        ensure_schema(conn, url.redacted)
        ident = lock_id(key)
        _acquire(conn, url, ident, subject, timeout, poll)
        try:
            _record_holder(conn, ident, subject, purpose)
            # From here to the release the connection is idle: other threads' stores may look at it (lost_locks).
            with _HELD_GUARD:
                _HELD[id(conn)] = _Held(conn, url.url, subject)
            yield
        finally:
            with _HELD_GUARD:  # no look at this connection from now on: it is ours again
                _HELD.pop(id(conn), None)
            # A connection that broke meanwhile has lost the lock with its session: nothing left to undo.
            with contextlib.suppress(psycopg.Error):
                conn.execute("DELETE FROM lock_holders WHERE lock_id = %s AND backend_pid = pg_backend_pid()", (ident,))
                conn.execute("SELECT pg_advisory_unlock(%s)", (ident,))
    finally:
        conn.close()


@dataclass(frozen=True)
class _Held:
    """An advisory lock this process holds now: the idle connection whose session holds it (:func:`lost_locks`
    looks at it), the database's URL and the lock's subject."""

    conn: psycopg.Connection
    url: str
    subject: str


# The advisory locks this process holds now, by their connection's id (several threads may hold some).
_HELD: dict[int, _Held] = {}
_HELD_GUARD = threading.Lock()


def lost_locks(url: StateURL) -> list[str]:
    """The subjects of the locks this process holds in ``url``'s database whose connection the server closed (a
    restart, the session ended by an administrator): those locks are gone. No round trip: a held lock's connection
    is idle, so anything to read on it is the server's goodbye."""
    with _HELD_GUARD:
        return sorted(h.subject for h in _HELD.values() if h.url == url.url and not _alive(h.conn))


def _alive(conn: psycopg.Connection) -> bool:
    """Whether an idle connection is still open: it is not once the server has closed its end (its last words,
    a FATAL notice, come first: read them, then the end)."""
    if conn.closed:
        return False
    try:
        for _ in range(8):
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
            if not readable:
                break
            conn.pgconn.consume_input()
    except (OSError, ValueError, psycopg.Error):
        return False
    return conn.pgconn.status == psycopg.pq.ConnStatus.OK


def lock_holders(url: StateURL) -> list[PgLockHolder]:
    """Every advisory lock of this tool held now, by subject (what ``provision state locks`` will show)."""
    conn = connect(url, purpose="provision state locks")
    try:
        if _version(conn) == 0:
            return []  # no command has used this database yet (and looking makes no schema): no lock either
        rows = conn.execute(_LIVE_HOLDERS + " ORDER BY h.subject").fetchall()
    except psycopg.Error as e:
        kind = StateUnreachable if conn.broken else OperationFailed
        raise kind(f"cannot read the lock holders in {url.redacted}: {_reason(e)}") from e
    finally:
        conn.close()
    return [_holder(row) for row in rows]


def describe_holder(holder: PgLockHolder | None) -> str:
    """``another provision command (pid N of USER@HOST, 'PURPOSE', since ...)``, as LockBusy says it."""
    if holder is None:
        return "another provision command"
    if holder.pid == os.getpid() and holder.host == _HOST:
        who = "this process"
    else:
        who = f"pid {holder.pid} of {holder.user}@{holder.host}"
    what = f", {holder.purpose!r}" if holder.purpose else ""
    since = holder.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"another provision command ({who}{what}, since {since})"


def _acquire(conn: psycopg.Connection, url: StateURL, ident: int, subject: str, timeout: float, poll: float) -> None:
    deadline = time.monotonic() + max(timeout, 0.0)
    try:
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ident,)).fetchone()
            if row is not None and row[0]:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                found = _live_holder(conn, ident)
                raise LockBusy(
                    f"{subject} is busy: {describe_holder(_holder(found) if found else None)} holds its lock",
                    hint="wait for the other command to finish, or give a longer lock timeout",
                )
            time.sleep(min(max(poll, 0.001), remaining))
    except psycopg.Error as e:
        kind = StateUnreachable if conn.broken else OperationFailed
        raise kind(f"cannot lock {subject} in the state database {url.redacted}: {_reason(e)}") from e


_HOLDER_GRACE = 1.0  # s: a holder writes its row right after taking the lock; a busy lock with none yet waits this


def _live_holder(conn: psycopg.Connection, ident: int) -> tuple[Any, ...] | None:
    """The row of the live holder of lock ``ident``. A holder that has just taken the lock is given a moment to
    write its row (taking the lock and writing the row are two statements); none after that: not known."""
    deadline = time.monotonic() + _HOLDER_GRACE
    while True:
        found = conn.execute(_LIVE_HOLDERS + " WHERE h.lock_id = %s", (ident,)).fetchone()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def _record_holder(conn: psycopg.Connection, ident: int, subject: str, purpose: str | None) -> None:
    with contextlib.suppress(psycopg.Error):  # only informative: never fail a command because of it
        conn.execute(
            """
            INSERT INTO lock_holders
                (lock_id, subject, backend_pid, backend_start, user_name, host, pid, purpose, since)
            SELECT %s, %s, pid, backend_start, %s, %s, %s, %s, now()
            FROM pg_stat_activity WHERE pid = pg_backend_pid()
            ON CONFLICT (lock_id) DO UPDATE SET
                subject = excluded.subject, backend_pid = excluded.backend_pid,
                backend_start = excluded.backend_start, user_name = excluded.user_name, host = excluded.host,
                pid = excluded.pid, purpose = excluded.purpose, since = excluded.since
            """,
            (ident, subject, _USER, _HOST, os.getpid(), purpose),
        )


def _holder(row: tuple[Any, ...]) -> PgLockHolder:
    subject, user, host, pid, purpose, since = row
    return PgLockHolder(str(subject), str(user), str(host), int(pid), purpose, _utc(since))


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


_USER = _current_user()
_HOST = socket.gethostname()
