"""Typed results of IM REST calls. Secrets (VM passwords, private keys) never appear in a repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# IM's VM and infrastructure states.
PENDING = "pending"
RUNNING = "running"
CONFIGURED = "configured"
UNCONFIGURED = "unconfigured"
STOPPED = "stopped"
OFF = "off"
FAILED = "failed"
UNKNOWN = "unknown"
DELETING = "deleting"
FINAL_STATES = frozenset({CONFIGURED, UNCONFIGURED, FAILED, STOPPED, OFF})

_SECRET_RADL_KEYS = ("password", "private_key", "token", "secret")


@dataclass(frozen=True)
class CreateResult:
    """What IM answers a create: the new infrastructure's id and URI."""

    infra_id: str
    uri: str


@dataclass(frozen=True)
class InfraState:
    """An infrastructure's overall state and each VM's, from ``GET /infrastructures/<id>/state``."""

    state: str
    vm_states: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class VMCredentials:
    """How to log in to a VM, from its RADL; the secret parts are kept out of ``repr``."""

    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    public_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class VMInfo:
    """One VM as IM describes it (its RADL ``system``), with the secret fields kept apart."""

    id: str
    state: str | None
    name: str | None
    private_ips: list[str]
    public_ips: list[str]
    system: dict[str, Any] = field(repr=False)
    credentials: VMCredentials = field(default_factory=VMCredentials, repr=False)

    @property
    def private_ip(self) -> str | None:
        return self.private_ips[0] if self.private_ips else None

    @property
    def public_ip(self) -> str | None:
        return self.public_ips[0] if self.public_ips else None


@dataclass(frozen=True)
class CloudImage:
    """One image a cloud offers, as IM lists it (its URI, its name when given, IM's whole entry)."""

    uri: str
    name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class DryRunCloud:
    """What IM would launch on one cloud: one entry per VM (cores, memory in MB) and the disks."""

    cloud_id: str
    cloud_type: str | None
    endpoint: str | None
    vms: list[dict[str, Any]]
    storage: list[dict[str, Any]]


def dry_run_cloud(cloud_id: str, plan: dict[str, Any]) -> DryRunCloud:
    return DryRunCloud(
        cloud_id=cloud_id,
        cloud_type=_opt_str(plan.get("cloudType")),
        endpoint=_opt_str(plan.get("cloudEndpoint")),
        vms=[dict(item) for item in plan.get("compute") or [] if isinstance(item, dict)],
        storage=[dict(item) for item in plan.get("storage") or [] if isinstance(item, dict)],
    )


@dataclass(frozen=True)
class Quota:
    """One resource's use and limit on a cloud, as IM reports them (``None`` when unknown)."""

    used: float | None
    limit: float | None


def is_secret_radl_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_RADL_KEYS)


def vm_info_from_radl(vm_id: str, radl: list[dict[str, Any]]) -> VMInfo:
    """Build a VMInfo from IM's RADL-as-JSON answer to GET .../vms/<id>."""
    networks = {str(item.get("id")): item for item in radl if item.get("class") == "network"}
    system: dict[str, Any] = next((item for item in radl if item.get("class") == "system"), {})
    private: list[str] = []
    public: list[str] = []
    index = 0
    while f"net_interface.{index}.connection" in system or f"net_interface.{index}.ip" in system:
        ip = system.get(f"net_interface.{index}.ip")
        connection = str(system.get(f"net_interface.{index}.connection", ""))
        if ip:
            outbound = str(networks.get(connection, {}).get("outbound", "no")).lower() == "yes"
            (public if outbound else private).append(str(ip))
        index += 1
    creds = VMCredentials(
        username=_opt_str(system.get("disk.0.os.credentials.username")),
        password=_opt_str(system.get("disk.0.os.credentials.password")),
        private_key=_opt_str(system.get("disk.0.os.credentials.private_key")),
        public_key=_opt_str(system.get("disk.0.os.credentials.public_key")),
    )
    clean = {key: value for key, value in system.items() if not is_secret_radl_key(key)}
    return VMInfo(
        id=vm_id,
        state=_opt_str(system.get("state")),
        name=_opt_str(system.get("id")),
        private_ips=private,
        public_ips=public,
        system=clean,
        credentials=creds,
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
