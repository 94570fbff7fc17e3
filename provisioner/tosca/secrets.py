"""Per-cluster secret inputs, kept in ``<home>/secrets/<cluster>.yaml`` (file 0600, directory 0700).

Generated secrets (admin token, OSCAR and MinIO passwords) are created once and reused by every later render of
the same cluster, so a scaling re-render sends IM the same values. Secrets the user gave are kept too, for the
same reason. The file is a flat YAML mapping of input name to string, written in JSON's form (YAML's flow style,
``{"admin_token": "..."}``, after a comment line): YAML readers read it, a person may edit it as YAML, and reading
and writing it back need no YAML parser (PyYAML's import alone is about 11 ms of a command's start). A file
that is not JSON (edited by hand) is read as YAML.

A team that shares its state database shares secrets through a reference instead (``secrets_ref``, see
:class:`provisioner.settings.SecretsRef`), set once per command with :func:`use_ref`: a file per cluster at a path
of the team's choosing (read and written like the default one), or a ``command(...)`` that prints the cluster's
mapping (read-only: its values win; secrets generated meanwhile are kept in the local file). The database never
holds a secret, only rows that name the cluster.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.model import check_name
from provisioner.privfs import write_secret_file
from provisioner.redact import register_secret
from provisioner.secretcmd import run_command
from provisioner.settings import SecretsRef

_ref: SecretsRef | None = None
_command_cache: dict[str, dict[str, str]] = {}


def use_ref(ref: SecretsRef | None) -> None:
    """Where secrets live for the rest of this process (the CLI calls this once, from the settings)."""
    global _ref
    _ref = ref
    _command_cache.clear()


def current_ref() -> SecretsRef | None:
    return _ref


_HEADER = "# Secret inputs of this cluster, written by provision (keep it 0600; never commit it).\n"


def generate_secret() -> str:
    """A strong random value: 32 URL-safe characters (192 bits)."""
    return _random.token_urlsafe(24)


class SecretStore:
    """The secrets file of one cluster. Reads are lazy; writes are atomic and 0600 from the first byte."""

    def __init__(self, home: Path, cluster: str, ref: SecretsRef | None = None) -> None:
        self.home = Path(home)
        self.cluster = check_name(cluster)
        self.ref = ref if ref is not None else _ref

    @property
    def shared_file(self) -> bool:
        """Whether the file is the team's (a file reference), not this home's own."""
        return self.ref is not None and self.ref.kind == "file"

    @property
    def directory(self) -> Path:
        return self.path.parent if self.shared_file else self.home / "secrets"

    @property
    def path(self) -> Path:
        if self.ref is not None and self.ref.kind == "file":
            return Path(self.ref.for_cluster(self.cluster)).expanduser()
        return self.home / "secrets" / f"{self.cluster}.yaml"

    def __repr__(self) -> str:
        return f"SecretStore({str(self.path)!r})"

    def load(self) -> dict[str, str]:
        """The kept secrets ({} when there is none yet); with a command reference, its values over the local ones."""
        local = self._load_file()
        if self.ref is None or self.ref.kind != "command":
            return local
        return {**local, **self._from_command()}

    def _from_command(self) -> dict[str, str]:
        assert self.ref is not None
        command = self.ref.for_cluster(self.cluster)
        if command in _command_cache:
            return dict(_command_cache[command])
        where = f"secrets_ref (cluster {self.cluster})"
        text = run_command(command, where, keep_newlines=True)
        try:
            data = _load_mapping_text(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ConfigError("the command must print a YAML mapping of input name to value", field=where)
        values = {k: str(v) for k, v in data.items() if v is not None}
        for value in values.values():
            register_secret(value)
        _command_cache[command] = values
        return dict(values)

    def _load_file(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}", field="secrets") from None
        self._tighten()
        try:
            data = _load_mapping_text(text)
        except ValueError:
            raise ConfigError(f"{self.path} is not valid YAML", field="secrets") from None
        if data is None:
            return {}
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError(f"{self.path} must be a mapping of input name to string", field="secrets")
        return dict(data)

    def get(self, name: str) -> str | None:
        return self.load().get(name)

    def update(self, values: Mapping[str, str | None]) -> None:
        """Set (or, for ``None``, remove) these secrets, keeping the others. Writes only when something changes.

        With a command reference only the local file is written, and only with what the command does not give."""
        current = self._load_file()
        if self.ref is not None and self.ref.kind == "command":
            given = self._from_command()
            values = {k: v for k, v in values.items() if given.get(k) != v or v is None}
            if not values:
                return
        merged = dict(current)
        for name, value in values.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if merged == current and self.path.exists():
            self._tighten()
            return
        self._ensure_directory()
        text = _HEADER + json.dumps(merged, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
        try:
            write_secret_file(self.path, text)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror}", field="secrets") from None

    def delete(self) -> bool:
        """Remove the file (when the cluster is destroyed). Returns whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            if self.shared_file:  # a team's read-only copy (a mounted Secret): its owners remove it
                return False
            raise ConfigError(f"cannot remove {self.path}: {exc.strerror}", field="secrets") from None
        return True

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.shared_file:  # a team's directory keeps the modes its owners gave it
                os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create {self.directory}: {exc.strerror}", field="secrets") from None

    def _tighten(self) -> None:
        try:
            if self.path.stat().st_mode & 0o077:
                os.chmod(self.path, 0o600)
        except OSError:
            pass


def _load_mapping_text(text: str) -> Any:
    """The data in a secrets text: JSON (what this module writes, after its comment lines) when it is, else YAML.
    Raises ``ValueError`` for a text that is neither."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    try:
        return json.loads(body) if body.strip() else None
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
