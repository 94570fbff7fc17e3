"""What the rest of the tool may ask of the state: the :class:`StateStore` protocol, and :func:`open_store`.

Services (the lifecycle, the add-ons, the autoscaler) and the CLI speak to this protocol only, so the second backend,
a PostgreSQL database a team shares (:class:`provisioner.state.pg.PgStore`), implements it beside the embedded
SQLite one (:class:`provisioner.state.store.Store`) without their code changing: the CLI names the backend once
(:func:`use_url`, from ``--state``/``PROVISION_STATE_URL``/``state_url``) and every :func:`open_store` (and every
lock) of the process uses it. Four parts, one connection:

* the registry: one record per cluster (:class:`ClusterRecord`), never a secret;
* the journal: append-only, per cluster, typed by :class:`Phase`; it outlives the record;
* the decision log: append-only, the autoscaler's decisions (what ``autoscale explain`` reads);
* the workflows: one record per applied workflow, with the services it owns.

A store is a context manager; writes are transactions, and :meth:`StateStore.transaction` groups several.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from provisioner.model import ClusterKind
from provisioner.state.store import (
    DB_FILENAME,
    ClusterRecord,
    DecisionEntry,
    JournalEntry,
    Phase,
    Store,
    WorkflowRecord,
)
from provisioner.state.url import SQLITE, current_url
from provisioner.state.url import use_url as use_url


class StateStore(Protocol):
    @property
    def path(self) -> Path: ...

    @property
    def location(self) -> str: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    # -- the registry --

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
    ) -> ClusterRecord: ...

    def get_cluster(self, name: str) -> ClusterRecord | None: ...

    def list_clusters(self) -> list[ClusterRecord]: ...

    def find_by_deployment_id(self, deployment_id: str) -> ClusterRecord | None: ...

    def update_cluster(self, name: str, /, *, secret_keys: Collection[str] = (), **fields: Any) -> ClusterRecord: ...

    def delete_cluster(self, name: str) -> bool: ...

    # -- workflows --

    def upsert_workflow(self, name: str, *, source: str, services: list[Mapping[str, Any]]) -> WorkflowRecord: ...

    def get_workflow(self, name: str) -> WorkflowRecord | None: ...

    def list_workflows(self) -> list[WorkflowRecord]: ...

    def delete_workflow(self, name: str) -> bool: ...

    # -- the journal --

    def append(self, name: str, phase: Phase | str, detail: Mapping[str, Any] | None = None) -> JournalEntry: ...

    def journal(self, name: str | None = None, limit: int | None = None) -> list[JournalEntry]: ...

    def last_of_phase(self, name: str, phase: Phase | str) -> JournalEntry | None: ...

    def last_phase(self, name: str) -> JournalEntry | None: ...

    # -- the decision log --

    def append_decision(self, name: str, action: str, detail: Mapping[str, Any]) -> DecisionEntry: ...

    def decisions(self, name: str, limit: int | None = None) -> list[DecisionEntry]: ...

    def last_decision(self, name: str, *, applied: bool = False, having: str | None = None) -> DecisionEntry | None: ...


def open_store(home: Path) -> StateStore:
    """The state of ``home``: the embedded SQLite database ``<home>/state.db`` unless the CLI named another
    (:func:`use_url`): a ``sqlite:///PATH`` file, or a PostgreSQL database (``home`` then keeps only the secrets,
    generated files and the local IM). (mypy checks here that both stores implement the protocol.)"""
    url = current_url()
    if url is None:
        return Store.open(home)
    if url.kind == SQLITE:
        return Store.open(home, path=url.sqlite_path)
    from provisioner.state.pg import PgStore  # psycopg is imported only by those who use PostgreSQL

    return PgStore.open(url)


def has_state(home: Path) -> bool:
    """Whether there is a state to read yet, so that merely looking creates none: the SQLite file exists (a
    PostgreSQL database always counts: it is the team's, made by whoever set it up)."""
    url = current_url()
    if url is None:
        return (home / DB_FILENAME).is_file()
    if url.kind == SQLITE:
        return url.sqlite_path is not None and url.sqlite_path.is_file()
    return True


def state_location(home: Path) -> str:
    """Where the state of ``home`` is, for messages (the URL without its password)."""
    url = current_url()
    if url is None:
        return str(home / DB_FILENAME)
    return str(url.sqlite_path) if url.kind == SQLITE else url.redacted
