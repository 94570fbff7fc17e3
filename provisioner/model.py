"""What every layer may know about a cluster: its name rule, its kinds and its VMs' roles.

Bottom layer: no network, disk or clock; imports nothing of the project but ``errors``.
"""

from __future__ import annotations

import re
from enum import StrEnum

from provisioner.errors import InputError

__all__ = ["NAME_RULE", "ClusterKind", "Role", "check_name", "is_cluster_name"]

# A cluster name is also a DNS label, a file name under PROVISION_HOME and IM metadata: one rule for all of them.
_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
NAME_RULE = "must start with a lowercase letter and have at most 63 lowercase letters, digits or '-'"


def is_cluster_name(name: object) -> bool:
    """Whether ``name`` follows the cluster-name rule (:data:`NAME_RULE`)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    """``name`` itself when it follows the cluster-name rule, else :class:`InputError` on field NAME."""
    if not is_cluster_name(name):
        raise InputError(NAME_RULE, field="NAME")
    return name


class ClusterKind(StrEnum):
    """Who runs the cluster's machines: IM (a TOSCA infrastructure) or the user (edge: K3s on their own hosts)."""

    IM = "im"
    EDGE = "edge"


class Role(StrEnum):
    """A VM's role, which is also its TOSCA node name and its Ansible group: the front-end or a worker."""

    FRONT = "front"
    WORKER = "wn"

    @classmethod
    def of(cls, vm_name: str | None) -> Role:
        """The role of a VM from the node name IM reports for it (anything but the front-end is a worker)."""
        return cls.FRONT if vm_name == cls.FRONT.value else cls.WORKER
