"""Private files and directories: what holds secrets or state is created 0600/0700 from its first byte.

Bottom layer: imports nothing of the project but ``errors``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from provisioner.errors import OperationFailed

__all__ = ["ensure_private_dir", "write_secret_file"]


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; every directory this creates gets mode 0700.

    Not ``mkdir(parents=True)``: the parents it makes get the umask's mode (0755), not the one asked for.
    """
    missing: list[Path] = []
    cursor = path
    while not os.path.lexists(cursor) and cursor.parent != cursor:
        missing.append(cursor)
        cursor = cursor.parent
    if not missing and not path.is_dir():
        raise OperationFailed(f"{path} exists and is not a directory")
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            if not directory.is_dir():
                raise OperationFailed(f"{directory} exists and is not a directory") from None
            continue
        except OSError as e:
            raise OperationFailed(f"cannot create directory {directory}: {e.strerror}") from e
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def write_secret_file(path: Path, text: str) -> None:
    """Create or replace ``path`` with ``text``, atomically and with mode 0600 from the first byte.

    The text goes to a temporary file (created 0600) in the same directory, which then replaces ``path``.
    Raises ``OSError`` if the directory is missing or not writable.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        done = True
    finally:
        if not done:
            Path(tmp_name).unlink(missing_ok=True)
