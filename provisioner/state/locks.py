"""Cross-process locks: one per cluster, one per IM endpoint.

When the state is in PostgreSQL (a team's shared database, see :mod:`provisioner.state.url`), a lock is a session
advisory lock in that database, so that every operator's commands exclude each other; the holder's user, host, pid
and purpose are recorded beside it, and it dies with its holder's connection (:func:`provisioner.state.pg.
advisory_lock`). Otherwise, as follows.

A lock is an ``flock`` on a file under ``<home>/locks``. The kernel drops it when its holder exits, however it
exits (even on SIGKILL), so there is never a stale lock to clean up. After acquiring, the holder writes its pid and
a short description of what it is doing into the file, so that a command that finds the lock busy can say who
holds it. Lock files are never deleted (deleting a flock'ed file lets two processes "hold" it at once).

The locks are not re-entrant: taking the same lock twice in one process waits for itself and times out.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from provisioner.errors import LockBusy, OperationFailed
from provisioner.privfs import ensure_private_dir
from provisioner.state.url import StateURL, current_postgresql

LOCKS_DIRNAME = "locks"
DEFAULT_POLL = 0.05

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_HOLDER_MAX_BYTES = 4096


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the process holding it (either may be unknown)."""

    pid: int | None
    purpose: str | None


def cluster_lock_path(home: Path, name: str) -> Path:
    """The lock file of cluster ``name``."""
    if not name:
        raise ValueError("cluster name must not be empty")
    stem = name
    if not _SAFE_NAME.fullmatch(name):  # keep it readable, and unique thanks to the hash
        stem = f"{_UNSAFE_CHARS.sub('_', name)[:40]}-{_sha256(name)[:12]}"
    return home / LOCKS_DIRNAME / f"cluster-{stem}.lock"


def endpoint_lock_path(home: Path, im_url: str) -> Path:
    """The lock file of an IM endpoint (keyed on a hash of its normalised URL)."""
    return home / LOCKS_DIRNAME / f"endpoint-{_sha256(_normalise_url(im_url))[:16]}.lock"


@contextmanager
def cluster_lock(
    home: Path, name: str, timeout: float, *, poll: float = DEFAULT_POLL, purpose: str | None = None
) -> Iterator[Path]:
    """Hold the lock of cluster ``name`` for the ``with`` block; yields the lock file's path.

    Waits up to ``timeout`` s (0: try once) and raises :class:`LockBusy` naming the holder if it stays busy.
    ``purpose`` (e.g. ``"cluster scale"``) is what other commands will be told this process is doing.
    """
    path = cluster_lock_path(home, name)
    subject = f"cluster {name!r}"
    shared = current_postgresql()
    if shared is not None:
        with _hold_shared(shared, f"cluster:{name}", timeout, poll, purpose, subject=subject):
            yield path  # where the file would be: on PostgreSQL there is none
        return
    with _hold(path, timeout, poll, purpose, subject=subject) as held:
        yield held


@contextmanager
def endpoint_lock(
    home: Path, im_url: str, timeout: float, *, poll: float = DEFAULT_POLL, purpose: str | None = None
) -> Iterator[Path]:
    """Hold the lock of the IM endpoint ``im_url`` (e.g. to run one destroy at a time per endpoint)."""
    subject = f"IM endpoint {_normalise_url(im_url)!r}"
    path = endpoint_lock_path(home, im_url)
    shared = current_postgresql()
    if shared is not None:
        with _hold_shared(shared, f"endpoint:{_normalise_url(im_url)}", timeout, poll, purpose, subject=subject):
            yield path
        return
    with _hold(path, timeout, poll, purpose, subject=subject) as held:
        yield held


def read_holder(path: Path) -> LockHolder | None:
    """Who the lock file says holds it, or ``None`` if it is free, missing or unreadable.

    Only informative: the file is cleared on a clean release but keeps its last holder if that process died.
    """
    try:
        with path.open("rb") as f:
            return _parse_holder(f.read(_HOLDER_MAX_BYTES))
    except OSError:
        return None


# --- internals -----------------------------------------------------------------------------------------------------


@contextmanager
def _hold_shared(
    url: StateURL, key: str, timeout: float, poll: float, purpose: str | None, *, subject: str
) -> Iterator[None]:
    from provisioner.state.pg import advisory_lock  # psycopg is imported only by those who use PostgreSQL

    with advisory_lock(url, key, subject=subject, timeout=timeout, poll=poll, purpose=purpose):
        yield


@contextmanager
def _hold(path: Path, timeout: float, poll: float, purpose: str | None, *, subject: str) -> Iterator[Path]:
    ensure_private_dir(path.parent.parent)
    ensure_private_dir(path.parent)
    fd = _open_lock_file(path)
    try:
        _acquire(fd, timeout, poll, subject)
        try:
            _write_holder(fd, purpose)
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise OperationFailed(f"cannot open lock file {path}: {e.strerror}") from e
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    except OSError as e:
        os.close(fd)
        raise OperationFailed(f"cannot set the mode of lock file {path}: {e.strerror}") from e
    return fd


def _acquire(fd: int, timeout: float, poll: float, subject: str) -> None:
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise OperationFailed(f"cannot lock {subject}: {e.strerror}") from e
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockBusy(
                f"{subject} is busy: {_describe(_read_fd_holder(fd))} holds its lock",
                hint="wait for the other command to finish, or give a longer lock timeout",
            )
        time.sleep(min(max(poll, 0.001), remaining))


def _describe(holder: LockHolder | None) -> str:
    if holder is None or holder.pid is None:
        return "another provision command"
    who = "this process" if holder.pid == os.getpid() else f"pid {holder.pid}"
    if holder.purpose:
        return f"another provision command ({who}, {holder.purpose!r})"
    return f"another provision command ({who})"


def _write_holder(fd: int, purpose: str | None) -> None:
    record = {"pid": os.getpid(), "purpose": purpose, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    data = json.dumps(record).encode("utf-8")[:_HOLDER_MAX_BYTES]
    with contextlib.suppress(OSError):  # only informative: never fail a command because of it
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _read_fd_holder(fd: int) -> LockHolder | None:
    try:
        return _parse_holder(os.pread(fd, _HOLDER_MAX_BYTES, 0))
    except OSError:
        return None


def _parse_holder(data: bytes) -> LockHolder | None:
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):  # empty (free, or being written) or garbled
        return None
    if not isinstance(record, dict):
        return None
    pid = record.get("pid")
    purpose = record.get("purpose")
    return LockHolder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        purpose=purpose if isinstance(purpose, str) else None,
    )


def _normalise_url(url: str) -> str:
    """Scheme and host lower-cased, no credentials, query or fragment, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
