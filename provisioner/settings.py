"""Settings: flags > environment (PROVISION_*) > config file > defaults.

Every environment variable the tool reads is named in this module and nowhere else.
"""

from __future__ import annotations

import difflib
import math
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.redact import redact_url, register_url_password
from provisioner.secretcmd import command_of
from provisioner.yamlfile import read_yaml_mapping


def data_path(*parts: str) -> Path:
    """A file or directory the package ships (``provisioner/data/...``: templates, playbooks, runbooks).

    Found beside this module, so it works from a wheel installed by pip or pipx as from a checkout (not through
    ``importlib.resources``, whose import, with zipfile's, cost every command about 1.5 ms). The data must be on a
    real file system (Ansible and tosca-parser read paths): a zipped install is refused.
    """
    root = Path(__file__).parent / "data"
    if not root.is_dir():  # a zip import: nothing here supports it
        raise RuntimeError(f"provisioner's data is not on a file system ({root}); install it unzipped")
    return root.joinpath(*parts)


ENV_HOME = "PROVISION_HOME"
ENV_CONFIG = "PROVISION_CONFIG"
ENV_IM_URL = "PROVISION_IM_URL"
ENV_AUTH_FILE = "PROVISION_AUTH_FILE"
ENV_INSECURE = "PROVISION_INSECURE"
ENV_CA_BUNDLE = "PROVISION_CA_BUNDLE"
ENV_CONNECT_TIMEOUT = "PROVISION_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "PROVISION_READ_TIMEOUT"
ENV_LOCK_TIMEOUT = "PROVISION_LOCK_TIMEOUT"
ENV_IM_VENV = "PROVISION_IM_VENV"
ENV_IM_PIP_ARGS = "PROVISION_IM_PIP_ARGS"
ENV_LOG_LEVEL = "PROVISION_LOG_LEVEL"
ENV_PROGRESS_INTERVAL = "PROVISION_PROGRESS_INTERVAL"
ENV_POLL_INITIAL = "PROVISION_POLL_INITIAL"
ENV_OSCAR_CLI_CONFIG = "PROVISION_OSCAR_CLI_CONFIG"
ENV_STATE_URL = "PROVISION_STATE_URL"
ENV_SECRETS_REF = "PROVISION_SECRETS_REF"

APP_NAME = "provision"


def default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False)) / "config.yaml"


@dataclass(frozen=True)
class Settings:
    """Every setting a command runs with, resolved once from flags, environment and the config file (see
    :func:`load_settings`); secrets are never held here, only where they are (auth file, secrets reference)."""

    home: Path
    config_file: Path | None = None
    im_url: str | None = None
    auth_file: Path | None = None
    insecure: bool = False
    ca_bundle: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    lock_timeout: float = 30.0
    im_venv: Path | None = None
    log_level: str = "WARNING"
    # Off a terminal (CI, cron, pipes): a progress line on stderr at least this often (s); 0 turns the lines off.
    progress_interval: float = 30.0
    # Seconds before the second look at a deployment's state (the schedule then grows; see provisioner.polling).
    poll_initial: float = 1.0
    # oscar-cli's cluster list, read by `provision workflow` for clusters this tool does not manage.
    oscar_cli_config: Path | None = None
    # Where the registry, journal, decision log, workflow records and locks live: None is the embedded SQLite
    # database <home>/state.db; else sqlite:///PATH or postgresql://USER@HOST/DB (a team's shared database).
    state_url: str | None = None
    # Where each cluster's secrets live when a team shares them (see SecretsRef): None is <home>/secrets/NAME.yaml.
    secrets_ref: SecretsRef | None = None
    sites: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def verify(self) -> bool | str:
        """What HTTP clients verify TLS with: False only when the user asked for --insecure, else the CA bundle
        (a path) or True (the client's default bundle)."""
        if self.insecure:
            return False
        return self.ca_bundle or True

    @property
    def oscar_cli_config_file(self) -> Path:
        return self.oscar_cli_config or Path.home() / ".oscar-cli" / "config.yaml"

    @property
    def local_im_dir(self) -> Path:
        return self.home / "local-im"

    @property
    def local_im_venv(self) -> Path:
        return self.im_venv or (self.home / "im-venv")


# name -> (type, env var)
_KEYS: dict[str, tuple[type, str | None]] = {
    "home": (Path, ENV_HOME),
    "im_url": (str, ENV_IM_URL),
    "auth_file": (Path, ENV_AUTH_FILE),
    "insecure": (bool, ENV_INSECURE),
    "ca_bundle": (str, ENV_CA_BUNDLE),
    "connect_timeout": (float, ENV_CONNECT_TIMEOUT),
    "read_timeout": (float, ENV_READ_TIMEOUT),
    "lock_timeout": (float, ENV_LOCK_TIMEOUT),
    "im_venv": (Path, ENV_IM_VENV),
    "log_level": (str, ENV_LOG_LEVEL),
    "progress_interval": (float, ENV_PROGRESS_INTERVAL),
    "poll_initial": (float, ENV_POLL_INITIAL),
    "oscar_cli_config": (Path, ENV_OSCAR_CLI_CONFIG),
    "state_url": (str, ENV_STATE_URL),
    "secrets_ref": (str, ENV_SECRETS_REF),
}
# Settings where 0 means something ("try once", "no progress lines"); every other number must be above 0.
_ZERO_ALLOWED = {"lock_timeout", "progress_interval"}
_CONFIG_ONLY = {"sites"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def _convert(name: str, kind: type, value: Any, origin: str) -> Any:
    where = f"{name} ({origin})"
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"must be true or false, got {value!r}", field=where)
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"must be a number of seconds, got {value!r}", field=where)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"must be a number of seconds, got {value!r}", field=where) from None
        if not math.isfinite(number):
            raise ConfigError(f"must be a finite number of seconds, got {value!r}", field=where)
        if name in _ZERO_ALLOWED and number < 0:
            raise ConfigError(f"must be 0 or more, got {value!r}", field=where)
        if name not in _ZERO_ALLOWED and not number > 0:
            raise ConfigError(f"must be greater than 0, got {value!r}", field=where)
        return number
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ConfigError(f"must be a non-empty string, got {value!r}", field=where)
    if kind is Path:
        return Path(os.path.expanduser(str(value)))
    text = str(value).strip()
    if name == "log_level":
        text = text.upper()
        if text not in _LOG_LEVELS:
            raise ConfigError(f"must be one of {', '.join(sorted(_LOG_LEVELS))}, got {value!r}", field=where)
    if name == "state_url":
        return _state_url(text, where)
    if name == "secrets_ref":
        return SecretsRef.parse(text, where)
    if name == "im_url" and not text.startswith(("http://", "https://")):
        raise ConfigError(f"must start with http:// or https://, got {value!r}", field=where)
    return text.rstrip("/") if name == "im_url" else text


@dataclass(frozen=True)
class SecretsRef:
    """Where every cluster's secrets are read (and, for a file, written): a team's shared source.

    ``/PATH/{cluster}.yaml`` (``~`` allowed) is a file per cluster, read and written like the default
    ``<home>/secrets/NAME.yaml`` (0600): a file synced to each operator, or a Kubernetes Secret mounted in the
    autoscale pod. ``command(CMD ... {cluster} ...)`` runs CMD (no shell) and reads the YAML mapping of input name
    to value it prints, e.g. ``command(vault kv get -format=yaml -field=data secret/provision/{cluster})``: it is
    read-only, so secrets a create generates stay in the creator's local file until stored where CMD reads them.
    Either way the reference, never a secret, is what the configuration holds.
    """

    kind: str  # "file" or "command"
    template: str  # with one or more {cluster}

    @classmethod
    def parse(cls, text: str, where: str = "secrets_ref") -> SecretsRef:
        text = text.strip()
        command = command_of(text)
        kind, template = ("command", command.strip()) if command is not None else ("file", text)
        try:
            fields = {
                (name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None
            }
        except ValueError:
            fields = set()
        if fields != {("cluster", "", None)}:
            raise ConfigError(
                "must contain {cluster} (and no other {...}) so each cluster has its own secrets, "
                f"got {template!r}",
                field=where,
            )
        if kind == "file" and not os.path.isabs(os.path.expanduser(template)):
            raise ConfigError(f"must be an absolute path or command(...), got {template!r}", field=where)
        if kind == "command" and not template.replace("{cluster}", "").strip():
            raise ConfigError("command() is empty", field=where)
        return cls(kind, template)

    def for_cluster(self, cluster: str) -> str:
        """The path or command for ``cluster`` (a checked name: letters, digits and dashes only)."""
        return self.template.replace("{cluster}", cluster)

    def __str__(self) -> str:
        return f"command({self.template})" if self.kind == "command" else self.template


def _state_url(text: str, where: str) -> str:
    """``sqlite:///PATH`` (an absolute path) or ``postgresql://...`` (libpq's URL; ``postgres://`` too). The password
    a URL may carry is registered for masking at once, and never shown in an error."""
    register_url_password(text)
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() == "sqlite" and rest.startswith("/") and rest.strip("/"):
        return text
    if sep and scheme.lower() in ("postgresql", "postgres"):
        return text
    raise ConfigError(
        f"must be sqlite:///PATH (an absolute path) or postgresql://USER@HOST/DB, got {redact_url(text)!r}",
        field=where,
    )


def read_config_file(path: Path) -> dict[str, Any]:
    data = read_yaml_mapping(
        path, label=f"config file {path}", field="config", expected="a mapping of settings", error=ConfigError
    )
    known = set(_KEYS) | _CONFIG_ONLY
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting in {path}{hint}", field=str(key))
    sites = data.get("sites", {})
    if sites is not None and not isinstance(sites, dict):
        raise ConfigError(f"must be a mapping of site name to site settings in {path}", field="sites")
    return data


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: flags > env > config file > defaults. ``None`` flags count as not given."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env

    config_path: Path | None
    if "config" in flags:
        config_path = Path(flags["config"])
    elif env.get(ENV_CONFIG):
        config_path = Path(env[ENV_CONFIG])
    else:
        candidate = default_config_file()
        config_path = candidate if candidate.is_file() else None
    config = read_config_file(config_path) if config_path is not None else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (kind, env_name) in _KEYS.items():
        if name in flags:
            values[name] = _convert(name, kind, flags[name], "flag")
            sources[name] = "flag"
        elif env_name and env.get(env_name) not in (None, ""):
            values[name] = _convert(name, kind, env[env_name], env_name)
            sources[name] = env_name
        elif config.get(name) is not None:
            values[name] = _convert(name, kind, config[name], f"config {config_path}")
            sources[name] = "config"
    if "home" not in values:
        values["home"] = default_home()
        sources["home"] = "default"
    return Settings(config_file=config_path, sites=dict(config.get("sites") or {}), sources=sources, **values)
