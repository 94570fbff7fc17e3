"""What applying a workflow would change: per service, create / update (field by field) / leave / remove (pure).

The inputs are what was read once per operation: the services each cluster has now (``GET /system/services``),
and the workflow's record (the services it owns, with the digest and the field names of what was last applied).
A service counts as unchanged when every field the FDL gives has the value OSCAR has, and the FDL gives no
fewer fields than last time: fields OSCAR fills in itself (its token, owner, defaults) are never compared.
Values of secret fields are shown masked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Action", "Change", "ServicePlan", "WorkflowPlan", "definition_digest", "plan_services"]

SECRET_KEYS = frozenset(
    {"access_key", "secret_key", "token", "password", "auth_password", "refresh_token", "oidc_token"}
)
MASK = "********"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REMOVE = "remove"  # owned by the workflow, no longer in its FDL (sent only with --prune)
    CONFLICT = "conflict"  # the name is taken by another workflow's service: left alone, refused


@dataclass(frozen=True)
class Change:
    """One field of an OSCAR service that applying would change: what OSCAR has and what the FDL gives (secrets
    masked, a script only named)."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ServicePlan:
    """What applying the workflow would do to one service on one cluster; for one it sends, the digest and field
    names its record keeps."""

    cluster: str
    service: str
    action: Action
    changes: tuple[Change, ...] = ()
    digest: str = ""
    keys: tuple[str, ...] = ()  # the top-level fields sent (recorded: no values)
    note: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.cluster, self.service)

    @property
    def writes(self) -> bool:
        return self.action in (Action.CREATE, Action.UPDATE)


@dataclass(frozen=True)
class WorkflowPlan:
    """What applying a workflow would change (:func:`plan_services`): each service's plan, and whether removals
    are sent (``--prune``)."""

    name: str
    services: tuple[ServicePlan, ...]
    prune: bool = False
    notes: tuple[str, ...] = field(default=())

    def of(self, action: Action) -> list[ServicePlan]:
        return [item for item in self.services if item.action is action]

    @property
    def changes_anything(self) -> bool:
        return any(item.writes for item in self.services) or (self.prune and bool(self.of(Action.REMOVE)))


def definition_digest(definition: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a service definition (what is recorded: never the definition)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _normal(value: Any) -> Any:
    """Values as compared: empty containers, empty texts and None are all "not given"."""
    if isinstance(value, dict):
        out = {str(k): _normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if not _empty(v)}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def masked(value: Any, key: str = "") -> Any:
    """``value`` with every secret field's value replaced by a mask (environment secrets included)."""
    if key in SECRET_KEYS and isinstance(value, str | int) and value != "":
        return MASK
    if isinstance(value, dict):
        if key == "secrets":
            return {str(k): MASK for k in value}
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    return value


def _diff(desired: Mapping[str, Any], current: Mapping[str, Any], removed: Iterable[str]) -> list[Change]:
    changes = []
    for key, value in desired.items():
        if key == "script":
            if _normal(value) != _normal(current.get(key)):
                changes.append(Change("script", "(another script)", "(the FDL's script)"))
            continue
        if _normal(value) != _normal(current.get(key)):
            changes.append(Change(key, masked(current.get(key), key), masked(value, key)))
    for key in sorted(removed):
        if key not in desired and not _empty(current.get(key)):
            changes.append(Change(key, masked(current.get(key), key), None))
    return changes


def plan_services(
    name: str,
    desired: Mapping[tuple[str, str], Mapping[str, Any]],
    current: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    owned: Mapping[tuple[str, str], Mapping[str, Any]],
    others: Mapping[tuple[str, str], str] | None = None,
    prune: bool = False,
) -> WorkflowPlan:
    """The plan of workflow ``name``.

    ``desired``: (cluster, service) -> the definition to send; ``current``: cluster -> service name -> what OSCAR
    has (a cluster that could not be read is absent); ``owned``: what the workflow's record says it owns
    ((cluster, service) -> {"digest", "keys"}); ``others``: services owned by other workflows -> their name."""
    others = others or {}
    plans: list[ServicePlan] = []
    for key, definition in desired.items():
        cluster, service = key
        digest = definition_digest(definition)
        keys = tuple(sorted(definition))
        have = current.get(cluster, {}).get(service)
        owner = others.get(key)
        if owner is not None:
            plans.append(
                ServicePlan(cluster, service, Action.CONFLICT, note=f"service {service} belongs to workflow {owner}")
            )
            continue
        if have is None:
            plans.append(ServicePlan(cluster, service, Action.CREATE, digest=digest, keys=keys))
            continue
        before = owned.get(key) or {}
        removed = set(before.get("keys") or ()) - set(definition)
        changes = _diff(definition, have, removed)
        note = "" if key in owned else "exists on the cluster and is not owned by a workflow: adopted"
        if changes or (removed and not changes and before.get("digest") != digest):
            plans.append(ServicePlan(cluster, service, Action.UPDATE, tuple(changes), digest, keys, note))
        else:
            plans.append(ServicePlan(cluster, service, Action.UNCHANGED, digest=digest, keys=keys, note=note))
    for key in owned:
        if key not in desired:
            cluster, service = key
            present = cluster not in current or service in current[cluster]
            plans.append(
                ServicePlan(
                    cluster,
                    service,
                    Action.REMOVE,
                    note="" if present else "already gone from the cluster",
                )
            )
    return WorkflowPlan(name, tuple(plans), prune=prune)
