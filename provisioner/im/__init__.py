"""The Infrastructure Manager REST client.

The models are imported at once; the client (and with it the HTTP stack) on first use of one of its names,
so that what only reads the models, such as ``provision cluster list``, does not import an HTTP stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.im.models import CloudImage, CreateResult, DryRunCloud, InfraState, Quota, VMCredentials, VMInfo

if TYPE_CHECKING:
    from provisioner.im.client import AuthProvider, IMClient, RetryPolicy, StaticAuth, Timeouts

_CLIENT_NAMES = frozenset({"AuthProvider", "IMClient", "RetryPolicy", "StaticAuth", "Timeouts"})

__all__ = [
    "AuthProvider",
    "CloudImage",
    "CreateResult",
    "DryRunCloud",
    "IMClient",
    "InfraState",
    "Quota",
    "RetryPolicy",
    "StaticAuth",
    "Timeouts",
    "VMCredentials",
    "VMInfo",
]


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from provisioner.im import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
