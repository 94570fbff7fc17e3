"""Where the state lives: the state URL the CLI resolved (``--state``, ``PROVISION_STATE_URL``, ``state_url``).

* none (the default): the embedded SQLite database ``<home>/state.db``, and flock files under ``<home>/locks``;
* ``sqlite:///PATH``: that SQLite database file instead (the locks stay under ``<home>/locks``);
* ``postgresql://USER@HOST/DB`` (libpq's URL, ``postgres://`` too): a database a team shares, with the locks as
  PostgreSQL advisory locks (:mod:`provisioner.state.pg`).

The CLI calls :func:`use_url` once it has resolved its settings; from then on every ``open_store(home)``,
``cluster_lock(home, ...)`` and ``endpoint_lock(home, ...)`` of the process uses that backend, so the services
never see the URL. A URL's password is registered for masking here too, and shown nowhere: :attr:`StateURL.redacted`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from provisioner.redact import redact_url, register_url_password

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class StateURL:
    """Where the shared state lives: a SQLite file or a PostgreSQL URL (the password only for the driver)."""

    kind: str  # SQLITE or POSTGRESQL
    url: str  # as given, password included: for the driver only
    sqlite_path: Path | None = None  # SQLITE: the database file

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    @property
    def is_postgresql(self) -> bool:
        return self.kind == POSTGRESQL


def parse_state_url(url: str) -> StateURL:
    """The backend a state URL names (``ValueError`` for anything else; settings.py has already said so nicely)."""
    register_url_password(url)
    scheme, sep, rest = url.strip().partition("://")
    if sep and scheme.lower() == SQLITE and rest.startswith("/") and rest.strip("/"):
        return StateURL(SQLITE, url, Path("/" + rest.lstrip("/")))
    if sep and scheme.lower() in ("postgresql", "postgres"):
        return StateURL(POSTGRESQL, url.strip())
    raise ValueError(f"not a state URL (sqlite:///PATH or postgresql://...): {redact_url(url)!r}")


_lock = threading.Lock()
_current: StateURL | None = None


def use_url(url: str | None) -> None:
    """Make ``url`` (``None``: the embedded default) this process's state, for every store and lock opened after."""
    global _current
    parsed = parse_state_url(url) if url else None
    with _lock:
        _current = parsed


def current_url() -> StateURL | None:
    """The state URL in use, ``None`` for the embedded default (``<home>/state.db``)."""
    with _lock:
        return _current


def current_postgresql() -> StateURL | None:
    """The state URL in use when it is PostgreSQL."""
    found = current_url()
    return found if found is not None and found.is_postgresql else None
