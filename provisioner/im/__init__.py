"""The Infrastructure Manager REST client."""

from provisioner.im.client import AuthProvider, IMClient, RetryPolicy, StaticAuth, Timeouts
from provisioner.im.models import CloudImage, CreateResult, DryRunCloud, InfraState, Quota, VMCredentials, VMInfo

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
