"""Looking after the state itself (``provision state``): the locks held now, a copy of the state into another backend
(``migrate``), and a health check (``doctor``): the backend and its schema, open locks, unfinished journal phases.

Library code: it returns data, the CLI prints it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import InputError, OperationFailed
from provisioner.state.locks import LOCKS_DIRNAME, read_holder
from provisioner.state.records import (
    CLUSTER_COLUMNS,
    SCHEMA_VERSION,
    WORKFLOW_COLUMNS,
    ClusterRecord,
    DecisionEntry,
    JournalEntry,
    Phase,
    WorkflowRecord,
    canonical_json,
)
from provisioner.state.store import DB_FILENAME, Store
from provisioner.state.url import SQLITE, StateURL, current_url, parse_state_url

if TYPE_CHECKING:
    from provisioner.state.pg import PgStore

TABLES = ("clusters", "journal", "decisions", "workflows")


# --- locks ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldLock:
    """A lock held now and its holder, as ``state locks`` lists it: a PostgreSQL advisory lock, or a flock file
    under ``<home>/locks``."""

    subject: str
    user: str | None
    host: str | None
    pid: int | None
    command: str | None
    since: str | None


def held_locks(home: Path) -> list[HeldLock]:
    """The locks held now and their holders: PostgreSQL advisory locks, or the flock files under ``<home>/locks``."""
    url = current_url()
    if url is not None and url.is_postgresql:
        from provisioner.state.pg import lock_holders

        return [
            HeldLock(h.subject, h.user, h.host, h.pid, h.purpose, h.since.isoformat(timespec="seconds"))
            for h in lock_holders(url)
        ]
    directory = home / LOCKS_DIRNAME
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.lock")):
        if not _is_held(path):
            continue
        holder = read_holder(path)
        found.append(
            HeldLock(
                subject=_subject(path),
                user=_owner(path),
                host=socket.gethostname(),
                pid=holder.pid if holder else None,
                command=holder.purpose if holder else None,
                since=_since(path),
            )
        )
    return found


def _is_held(path: Path) -> bool:
    """Whether some process holds the flock of ``path`` (tried without waiting, on a descriptor of our own)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _subject(path: Path) -> str:
    stem = path.name.removesuffix(".lock")
    if stem.startswith("cluster-"):
        return f"cluster {stem.removeprefix('cluster-')!r}"
    if stem.startswith("endpoint-"):
        return f"IM endpoint {stem.removeprefix('endpoint-')}"
    return stem


def _owner(path: Path) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


def _since(path: Path) -> str | None:
    try:
        record = json.loads(path.read_bytes()[:4096].decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    since = record.get("since") if isinstance(record, dict) else None
    return since if isinstance(since, str) else None


# --- opening a backend ------------------------------------------------------------------------------------------------


class _Clock:
    """The time a destination store writes: set to the source row's before each write."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def describe(url: StateURL | None, home: Path) -> str:
    if url is None:
        return str(home / DB_FILENAME)
    return str(url.sqlite_path) if url.kind == SQLITE else url.redacted


@contextmanager
def _open(url: StateURL | None, home: Path, clock: Callable[[], datetime] | None = None) -> Iterator[Store | PgStore]:
    """The store at ``url`` (``None``: ``<home>/state.db``): :class:`StateUnreachable` when a PostgreSQL database
    cannot be reached; an unusable database (a SQLite file that is not one, a newer schema) is OperationFailed."""
    opened: Store | PgStore
    if url is None or url.kind == SQLITE:
        opened = Store.open(home, path=None if url is None else url.sqlite_path, now=clock)
    else:
        from provisioner.state.pg import PgStore

        opened = PgStore.open(url, now=clock)
    with opened as store:
        yield store


def parse_destination(text: str) -> StateURL:
    try:
        return parse_state_url(text)
    except ValueError as e:
        raise InputError(str(e), field="--to") from None


# --- canonical rows and checksums -------------------------------------------------------------------------------------


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def cluster_row(r: ClusterRecord) -> list[Any]:
    return [
        r.name,
        r.im_url,
        r.infra_id,
        r.template,
        r.site,
        canonical_json(r.inputs),
        r.inputs_hash,
        r.deployment_id,
        r.state,
        r.workers,
        _ts(r.created_at),
        _ts(r.updated_at),
        canonical_json(r.extra),
        r.kind.value,
    ]


def journal_row(e: JournalEntry) -> list[Any]:
    return [e.cluster, e.phase.value, _ts(e.ts), canonical_json(e.detail)]


def decision_row(d: DecisionEntry) -> list[Any]:
    return [d.cluster, _ts(d.ts), d.action, canonical_json(d.detail)]


def workflow_row(w: WorkflowRecord) -> list[Any]:
    return [w.name, w.source, canonical_json(w.services), _ts(w.created_at), _ts(w.updated_at)]


@dataclass
class Snapshot:
    """Every row of a state, in order (clusters and workflows by name, the journal and decisions by seq)."""

    clusters: list[ClusterRecord]
    journal: list[JournalEntry]
    decisions: list[DecisionEntry]
    workflows: list[WorkflowRecord]

    def rows(self) -> dict[str, list[list[Any]]]:
        return {
            "clusters": [cluster_row(r) for r in self.clusters],
            "journal": [journal_row(e) for e in self.journal],
            "decisions": [decision_row(d) for d in self.decisions],
            "workflows": [workflow_row(w) for w in self.workflows],
        }

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per table: the row count and the sha256 over the canonical rows in order (one JSON line each)."""
        found = {}
        for table, rows in self.rows().items():
            digest = hashlib.sha256()
            for row in rows:
                digest.update(canonical_json(row).encode("utf-8") + b"\n")
            found[table] = {"rows": len(rows), "sha256": digest.hexdigest()}
        return found


def snapshot(store: Store | PgStore) -> Snapshot:
    return Snapshot(
        clusters=store.list_clusters(),
        journal=store.journal(),
        decisions=store.all_decisions(),
        workflows=store.list_workflows(),
    )


# --- migrate ----------------------------------------------------------------------------------------------------------


@dataclass
class MigrateResult:
    """What ``state migrate`` copied into another backend: the rows added per table, and the source's counts and
    checksums, which the destination's matched after the copy."""

    source: str
    destination: str
    copied: dict[str, int]
    checksums: dict[str, dict[str, Any]]
    verified: bool

    @property
    def nothing_new(self) -> bool:
        return not any(self.copied.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nothing_new": self.nothing_new}


class MigrateConflict(OperationFailed):
    """The destination holds different content for a key of the source."""


def migrate(home: Path, to: str) -> MigrateResult:
    """Copy the current state into the backend at ``to``, only what it lacks (INSERTs for the journal and the
    decision log); refuse a destination whose content differs; verify by counts and checksums per table."""
    destination = parse_destination(to)
    source_url = current_url()
    source_where = describe(source_url, home)
    dest_where = describe(destination, home)
    if _same(source_url, destination, home):
        raise InputError(f"the destination is the current state ({dest_where})", field="--to")
    if not _exists(source_url, home):
        raise OperationFailed(f"there is no state to migrate at {source_where}")
    with _open(source_url, home) as source:
        src = snapshot(source)
    clock = _Clock()
    with _open(destination, home, clock) as dest:
        before = snapshot(dest)
        plan = _plan(src, before)
        copied = dict.fromkeys(TABLES, 0)
        with dest.transaction():
            for record in plan.clusters:
                _copy_cluster(dest, clock, record)
                copied["clusters"] += 1
            for entry in plan.journal:
                clock.at = entry.ts
                dest.append(entry.cluster, entry.phase, entry.detail)
                copied["journal"] += 1
            for decision in plan.decisions:
                clock.at = decision.ts
                dest.append_decision(decision.cluster, decision.action, decision.detail)
                copied["decisions"] += 1
            for workflow in plan.workflows:
                clock.at = workflow.created_at
                dest.upsert_workflow(workflow.name, source=workflow.source, services=list(workflow.services))
                if workflow.updated_at != workflow.created_at:
                    clock.at = workflow.updated_at
                    dest.upsert_workflow(workflow.name, source=workflow.source, services=list(workflow.services))
                copied["workflows"] += 1
        after = snapshot(dest).summary()
    wanted = src.summary()
    result = MigrateResult(source_where, dest_where, copied, wanted, after == wanted)
    if not result.verified:
        bad = [t for t in TABLES if after[t] != wanted[t]]
        raise OperationFailed(
            f"the copy in {dest_where} does not match the source: {', '.join(bad)} differ after copying",
            hint="compare both with `provision state doctor`; nothing was deleted",
        )
    return result


def _exists(url: StateURL | None, home: Path) -> bool:
    """Whether there is a state there yet (a PostgreSQL database always counts), so that looking creates none."""
    if url is not None and url.is_postgresql:
        return True
    path = home / DB_FILENAME if url is None else url.sqlite_path
    return path is not None and path.is_file()


def _same(source: StateURL | None, destination: StateURL, home: Path) -> bool:
    if destination.kind == SQLITE:
        here = home / DB_FILENAME if source is None else source.sqlite_path
        return bool(source is None or source.kind == SQLITE) and here is not None and destination.sqlite_path == here
    return source is not None and source.is_postgresql and source.url == destination.url


def _plan(src: Snapshot, dest: Snapshot) -> Snapshot:
    """What the destination lacks; :class:`MigrateConflict` naming the first difference."""
    missing = Snapshot([], [], [], [])
    theirs = {r.name: r for r in dest.clusters}
    ours = {r.name for r in src.clusters}
    for record in src.clusters:
        found = theirs.get(record.name)
        if found is None:
            missing.clusters.append(record)
        elif cluster_row(found) != cluster_row(record):
            _conflict(f"cluster {record.name!r}", cluster_row(record), cluster_row(found))
    extra = sorted(set(theirs) - ours)
    if extra:
        raise MigrateConflict(
            f"the destination has cluster {extra[0]!r}, which the source does not",
            hint="migrate into an empty state, or into a copy of this one",
        )
    missing.journal = _tail("journal entry", [journal_row(e) for e in src.journal], dest.journal, src.journal)
    missing.decisions = _tail("decision", [decision_row(d) for d in src.decisions], dest.decisions, src.decisions)
    wtheirs = {w.name: w for w in dest.workflows}
    for workflow in src.workflows:
        got = wtheirs.get(workflow.name)
        if got is None:
            missing.workflows.append(workflow)
        elif workflow_row(got) != workflow_row(workflow):
            _conflict(f"workflow {workflow.name!r}", workflow_row(workflow), workflow_row(got))
    wextra = sorted(set(wtheirs) - {w.name for w in src.workflows})
    if wextra:
        raise MigrateConflict(f"the destination has workflow {wextra[0]!r}, which the source does not")
    return missing


def _tail(what: str, wanted: list[list[Any]], have: list[Any], items: list[Any]) -> list[Any]:
    """The source's entries after those the destination has; its entries must be the source's first ones."""
    rows = [journal_row(e) if isinstance(e, JournalEntry) else decision_row(e) for e in have]
    for index, row in enumerate(rows):
        if index >= len(wanted):
            raise MigrateConflict(f"the destination has more {what}s than the source ({len(rows)} > {len(wanted)})")
        if row != wanted[index]:
            _conflict(f"{what} #{index + 1}", wanted[index], row)
    return items[len(rows) :]


_COLUMNS = {
    "cluster": CLUSTER_COLUMNS.split(", "),
    "workflow": WORKFLOW_COLUMNS.split(", "),
    "journal entry": ["cluster", "phase", "ts", "detail"],
    "decision": ["cluster", "ts", "action", "detail"],
}


def _conflict(what: str, ours: list[Any], theirs: list[Any]) -> None:
    columns = _COLUMNS[what.split(" #")[0].split(" '")[0]]
    column, mine, there = next((c, a, b) for c, a, b in zip(columns, ours, theirs, strict=True) if a != b)
    raise MigrateConflict(
        f"the destination differs from the source at {what}, {column}: {there!r} there, {mine!r} here",
        hint="nothing was copied; migrate into an empty state, or into a copy of this one",
    )


def _copy_cluster(dest: Store | PgStore, clock: _Clock, r: ClusterRecord) -> None:
    clock.at = r.created_at
    dest.upsert_cluster(
        r.name,
        im_url=r.im_url,
        template=r.template,
        site=r.site,
        inputs=r.inputs,
        deployment_id=r.deployment_id,
        infra_id=r.infra_id,
        state=r.state,
        workers=r.workers,
        extra=r.extra,
        inputs_hash=r.inputs_hash,
        kind=r.kind,
    )
    if r.updated_at != r.created_at:
        clock.at = r.updated_at
        dest.update_cluster(r.name, state=r.state)


# --- doctor -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unfinished:
    """Work the journal shows left unfinished under one name (a cluster, workflow or continuum), for
    ``state doctor``: since when, what did not finish, and the command that resumes it."""

    name: str
    phase: str
    since: str
    what: str
    resume: str


@dataclass
class Report:
    """What ``state doctor`` found: the backend and its schema version, the locks held now, and the unfinished
    work; healthy when the schema is current and there is neither."""

    backend: str
    location: str
    schema_version: int
    schema_current: bool
    locks: list[HeldLock] = field(default_factory=list)
    unfinished: list[Unfinished] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.schema_current and not self.locks and not self.unfinished

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "expected_schema_version": SCHEMA_VERSION, "healthy": self.healthy}


def doctor(home: Path) -> Report:
    url = current_url()
    backend = "postgresql" if url is not None and url.is_postgresql else "sqlite"
    version = _schema_version(url, home)
    report = Report(backend, describe(url, home), version, version == SCHEMA_VERSION)
    report.locks = held_locks(home)
    if version == 0 or not _exists(url, home):
        # Nothing to migrate (no file yet, or a PostgreSQL database no command has used): the first command makes it.
        report.schema_current = True
        return report
    if version > SCHEMA_VERSION:
        return report
    with _open(url, home) as store:
        entries = store.journal()
        workflows = {w.name: w for w in store.list_workflows()}
    report.unfinished = unfinished(entries, workflows)
    return report


def _schema_version(url: StateURL | None, home: Path) -> int:
    if url is not None and url.is_postgresql:
        from provisioner.state.pg import connect, schema_version

        conn = connect(url, purpose="provision state doctor")  # StateUnreachable when it cannot
        try:
            return schema_version(conn)
        finally:
            conn.close()
    path = home / DB_FILENAME if url is None else url.sqlite_path
    if path is None or not path.is_file():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as e:
        raise OperationFailed(f"cannot read the state database {path}: {e}") from e


_CREATE_OPEN = {Phase.SUBMITTING, Phase.INFRA_ID_KNOWN, Phase.WAITING, Phase.TIMED_OUT}


def unfinished(entries: list[JournalEntry], workflows: dict[str, WorkflowRecord]) -> list[Unfinished]:
    """The journal names whose last phases left something unfinished, with the command that resumes each."""
    by_name: dict[str, list[JournalEntry]] = {}
    for entry in entries:
        by_name.setdefault(entry.cluster, []).append(entry)
    found = []
    for name, history in sorted(by_name.items()):
        item = _unfinished_of(name, history, workflows)
        if item is not None:
            found.append(item)
    return found


def _unfinished_of(name: str, history: list[JournalEntry], workflows: dict[str, WorkflowRecord]) -> Unfinished | None:
    last = history[-1]
    since = _ts(last.ts)
    if name.startswith("workflow:"):
        workflow = name.removeprefix("workflow:")
        if last.phase in (Phase.SERVICE_SENDING, Phase.WORKFLOW_APPLYING):
            applying = next((e for e in reversed(history) if e.phase == Phase.WORKFLOW_APPLYING), None)
            fdl = (applying.detail.get("source") if applying else None) or (
                workflows[workflow].source if workflow in workflows else "FDL"
            )
            return Unfinished(
                name,
                last.phase.value,
                since,
                "a workflow apply did not finish",
                f"provision workflow apply {fdl} --name {workflow}",
            )
        return None
    if name.startswith("continuum:"):
        continuum = name.removeprefix("continuum:")
        up = next((i for i in range(len(history) - 1, -1, -1) if history[i].phase == Phase.CONTINUUM_UP), None)
        if up is None:
            return None
        later = {e.phase for e in history[up + 1 :]}
        if later & {Phase.CONTINUUM_UP_ENDED, Phase.CONTINUUM_DOWN, Phase.CONTINUUM_DELETED}:
            return None
        source = history[up].detail.get("source") or "FILE"
        return Unfinished(
            name,
            last.phase.value,
            since,
            f"continuum {continuum!r}: an up did not end",
            f"provision continuum up {source}",
        )
    phase = last.phase
    if phase == Phase.INTERRUPTED:  # what was interrupted is the phase before
        earlier = [e for e in history[:-1] if e.phase != Phase.INTERRUPTED]
        if not earlier:
            return None
        phase = earlier[-1].phase
    if phase == Phase.SUBMITTING:
        what = "a create never reached an infrastructure id"
    elif phase in _CREATE_OPEN:
        what = "a wait for IM never finished"
    elif phase == Phase.DESTROYING:
        return Unfinished(
            name, last.phase.value, since, "a destroy was not verified", f"provision cluster destroy {name} --yes"
        )
    elif phase == Phase.SCALING:
        scaling = next(e for e in reversed(history) if e.phase == Phase.SCALING)
        workers = scaling.detail.get("to", "N")
        return Unfinished(
            name,
            last.phase.value,
            since,
            "a scale was submitted but not finished",
            f"provision cluster scale {name} --workers {workers}",
        )
    elif phase == Phase.INSTALLING:
        return Unfinished(
            name, last.phase.value, since, "an add-on install did not finish", f"provision cluster install {name}"
        )
    else:
        return None
    return Unfinished(name, last.phase.value, since, what, f"provision cluster status {name} --wait")
