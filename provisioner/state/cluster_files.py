"""One owner for the files a cluster leaves under ``PROVISION_HOME`` beside its registry record.

``ClusterFiles(home, name)`` knows where the cluster's autoscale policy (``policies/<name>.yaml``) and its cached
kubeconfig (``kube/<name>.conf``, 0600) live, and :meth:`ClusterFiles.forget` removes them when the cluster is
destroyed, so that a new cluster given the same name is neither autoscaled by the old policy nor asked with the old
credentials. The decision log and the journal stay (they are history). Both the lifecycle (destroy) and the
autoscaler (enable, disable, the kubeconfig cache) take the paths from here, so neither imports the other for them.

Files owned by a driver stay with it: the secrets file (:class:`provisioner.tosca.SecretStore`), the known-hosts
pins and SSH keys (:mod:`provisioner.ansible.inventory`), the ansible run artifacts.

Paths only: nothing here reads a file except :meth:`forget`, which removes two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioner.model import check_name

POLICY_DIR = "policies"
KUBE_CACHE_DIR = "kube"


@dataclass(frozen=True)
class ClusterFiles:
    """Where this home keeps one cluster's autoscale policy and cached kubeconfig, and their removal."""

    home: Path
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))
        check_name(self.name)

    @property
    def policy(self) -> Path:
        """The autoscale policy (a copy of the file given to ``autoscale enable``)."""
        return self.home / POLICY_DIR / f"{self.name}.yaml"

    @property
    def kube_cache(self) -> Path:
        """The kubeconfig fetched from the cluster's front-end, cached 0600 by the autoscaler's Kubernetes source."""
        return self.home / KUBE_CACHE_DIR / f"{self.name}.conf"

    def forget(self) -> list[str]:
        """Remove the policy and the cached kubeconfig; the paths of those that were there, in that order."""
        removed = []
        for path in (self.policy, self.kube_cache):
            try:
                path.unlink()
            except OSError:  # not there (or not removable: the cluster is gone all the same; not listed as removed)
                continue
            removed.append(str(path))
        return removed
