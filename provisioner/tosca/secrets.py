"""Per-cluster secret inputs, kept in ``<home>/secrets/<cluster>.yaml`` (file 0600, directory 0700).

Generated secrets (admin token, OSCAR and MinIO passwords) are created once and reused by every later render of
the same cluster, so a scaling re-render sends IM the same values. Secrets the user gave are kept too, for the
same reason. The file is a flat YAML mapping of input name to string.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from pathlib import Path

import yaml

from provisioner.errors import ConfigError
from provisioner.model import check_name
from provisioner.privfs import write_secret_file

_HEADER = "# Secret inputs of this cluster, written by provision (keep it 0600; never commit it).\n"


def generate_secret() -> str:
    """A strong random value: 32 URL-safe characters (192 bits)."""
    return _random.token_urlsafe(24)


class SecretStore:
    """The secrets file of one cluster. Reads are lazy; writes are atomic and 0600 from the first byte."""

    def __init__(self, home: Path, cluster: str) -> None:
        self.home = Path(home)
        self.cluster = check_name(cluster)

    @property
    def directory(self) -> Path:
        return self.home / "secrets"

    @property
    def path(self) -> Path:
        return self.directory / f"{self.cluster}.yaml"

    def __repr__(self) -> str:
        return f"SecretStore({str(self.path)!r})"

    def load(self) -> dict[str, str]:
        """The kept secrets ({} when there is no file yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}", field="secrets") from None
        self._tighten()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"{self.path} is not valid YAML", field="secrets") from None
        if data is None:
            return {}
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError(f"{self.path} must be a mapping of input name to string", field="secrets")
        return dict(data)

    def get(self, name: str) -> str | None:
        return self.load().get(name)

    def update(self, values: Mapping[str, str | None]) -> None:
        """Set (or, for ``None``, remove) these secrets, keeping the others. Writes only when something changes."""
        current = self.load()
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
        text = _HEADER + yaml.safe_dump(merged, sort_keys=True, default_flow_style=False, allow_unicode=False)
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
        return True

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create {self.directory}: {exc.strerror}", field="secrets") from None

    def _tighten(self) -> None:
        try:
            if self.path.stat().st_mode & 0o077:
                os.chmod(self.path, 0o600)
        except OSError:
            pass
