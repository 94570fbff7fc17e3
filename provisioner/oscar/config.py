"""oscar-cli's cluster list (``~/.oscar-cli/config.yaml``), read so clusters set up for oscar-cli work here too.

The file (oscar-cli ``pkg/config``): ``oscar: {ID: {endpoint, auth_user, auth_password | oidc_account_name |
oidc_refresh_token, ssl_verify}}`` and ``default: ID``. Only basic-auth entries and entries with a ready token
are usable here, and an ``oidc_account_name`` entry: its token is asked of oidc-agent (``oidc-token NAME``)
when first needed and again after a 401. A refresh token alone has no password, and a command that needs it
says so.

Driver layer: imports only the bottom layer.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import InputError
from provisioner.redact import register_secret
from provisioner.yamlfile import read_yaml_mapping

__all__ = ["OscarAccess", "read_oscar_cli_config"]


@dataclass(frozen=True)
class OscarAccess:
    """How to reach one OSCAR cluster: where it answers and with which credentials."""

    cluster: str
    endpoint: str
    user: str = "oscar"
    password: str | None = None
    token: str | None = None
    token_command: str | None = None  # a command(...) printing an OIDC token, run again on a 401
    verify: bool | str = True
    source: str = ""  # where it came from: "registry", "FDL clusters:", "oscar-cli config"

    def __repr__(self) -> str:  # never the credentials
        return f"OscarAccess({self.cluster!r}, {self.endpoint!r}, source={self.source!r})"


def read_oscar_cli_config(path: Path) -> dict[str, OscarAccess]:
    """The clusters of oscar-cli's config at ``path`` ({} when there is no such file)."""
    if not path.is_file():
        return {}
    data = read_yaml_mapping(path, label=f"oscar-cli config {path}", field="oscar-cli config")
    clusters = data.get("oscar") or {}
    if not isinstance(clusters, dict):
        raise InputError(f"{path}: oscar: must be a mapping of cluster ids", field="oscar-cli config")
    found: dict[str, OscarAccess] = {}
    for ident, entry in clusters.items():
        if not isinstance(entry, dict) or not entry.get("endpoint"):
            continue
        password = entry.get("auth_password")
        if password:
            register_secret(str(password))
        account = str(entry.get("oidc_account_name") or "")
        found[str(ident)] = OscarAccess(
            cluster=str(ident),
            endpoint=str(entry["endpoint"]),
            user=str(entry.get("auth_user") or "oscar"),
            password=str(password) if password else None,
            token_command=f"oidc-token {shlex.quote(account)}" if account and not password else None,
            verify=bool(entry.get("ssl_verify", True)),
            source=f"oscar-cli config {path}",
        )
    return found
