"""Shared helpers for the playbook tests: where the playbooks are, sample variables, and running Ansible.

Every Ansible run gets its own ANSIBLE_HOME, temp directories and HOME under tmp_path, so nothing is written in
the repository or in the user's home, and nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "provisioner" / "data" / "playbooks"
ROLES = PLAYBOOKS / "roles"
VERSIONS = PLAYBOOKS / "vars" / "versions.yml"
BIN = Path(sys.executable).parent

ROLE_NAMES = ("kube_common", "knative", "yunikorn", "minio", "onedata", "oscar", "registry", "k3s")
ADDONS = ("knative", "yunikorn", "minio", "onedata", "oscar", "registry")

# Fake secrets: distinctive values so a test can tell in which rendered file (or log) each one ends up.
SECRETS: dict[str, str] = {
    "minio_password": "FAKEminioPW-3f9a1c",
    "oscar_password": "FAKEoscarPW-8d2e7b",
    "onedata_token": "FAKEonedataTOKEN-5b7c9d1e2f",
    "registry_password": "FAKEregistryPW-6a4b2c",
    "admin_token": "FAKEadminTOKEN-9e8d7c6b5a",
    "k3s_token": "FAKEk3sTOKEN-1a2b3c4d5e6f",
}

# Two sets of sample variables that together take every branch of the templates: a K3s server with a public
# domain and every component, and a K3s agent without a domain and with the non-default placements.
SCENARIOS: dict[str, dict[str, Any]] = {
    "full": {
        "provision_cluster_name": "demo",
        "provision_components": ["knative", "yunikorn", "minio", "onedata", "oscar", "registry"],
        "provision_insecure": False,
        "cluster_name": "oscar-test",
        "domain_name": "example.org",
        "cert_user_email": "ops@example.org",
        "oscar_serverless_backend": "knative",
        "oscar_yunikorn_enabled": True,
        "minio_buckets": ["inputs", "outputs.v2"],
        "minio_storage_size": "1Gi",
        "onedata_host": "oneprovider.example.org",
        "onedata_space": "my-space",
        "registry_server": "registry.example.org:5000",
        "registry_user": "robot",
        "k3s_is_server": True,
        "k3s_tls_san": ["k3s.example.org"],
        "knative_sslip_address": "10.0.0.1",
    },
    "minimal": {
        "provision_cluster_name": "edge-one",
        "provision_components": ["minio", "oscar"],
        "provision_insecure": True,
        "cluster_name": "",
        "domain_name": "",
        "cert_user_email": "",
        "oscar_serverless_backend": "",
        "oscar_yunikorn_enabled": False,
        "oscar_ingress_class": "traefik",
        "minio_buckets": [],
        "minio_storage_size": "1Gi",
        "onedata_host": "op.example.net:8443",
        "onedata_space": "0123456789abcdef0123456789abcdef",
        "registry_server": "ghcr.io",
        "registry_user": "someone",
        "registry_namespaces": ["oscar-svc"],
        "yunikorn_placement": "any",
        "yunikorn_tolerate_legacy_master_taint": False,
        "yunikorn_extra_tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}],
        "yunikorn_queues": [
            {"name": "oscar-queue", "resources": {"max": {"memory": "8Gi", "vcore": "4000m"}}},
            {"name": "batch"},
        ],
        "k3s_is_server": False,
        "k3s_server_url": "https://10.0.0.1:6443",
        "knative_sslip_address": "10.0.0.9",
    },
}


# The PLAY RECAP line of the only host of a local run: ok, changed, unreachable, failed.
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def ansible_env(base: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ansible-playbook / ansible-lint: every state directory under ``base``."""
    for name in ("home", "ansible-home", "local-tmp", "remote-tmp", "cache"):
        (base / name).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        {
            "HOME": str(base / "home"),
            "XDG_CACHE_HOME": str(base / "cache"),
            "ANSIBLE_HOME": str(base / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(base / "local-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(base / "remote-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "NO_COLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_COLLECTIONS_PATH": str(base / "ansible-home" / "collections"),
            "ANSIBLE_GALAXY_SERVER_LIST": "",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(
    argv: list[str], base: Path, *, cwd: Path | None = None, timeout: int = 120, env: dict[str, str] | None = None
) -> Run:
    proc = subprocess.run(
        argv,
        cwd=cwd or base,
        env=ansible_env(base, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def ansible_playbook(args: list[str], base: Path, *, timeout: int = 120, env: dict[str, str] | None = None) -> Run:
    return run([str(BIN / "ansible-playbook"), *args], base, timeout=timeout, env=env)


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def local_inventory(path: Path, *, front: bool = True) -> Path:
    """An inventory whose only host is this machine, over the local connection and without privilege escalation."""
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    return write_yaml(
        path,
        {"all": {"children": {"front": {"hosts": {"localhost": host} if front else {}}, "wn": {"hosts": {}}}}},
    )


@pytest.fixture
def ansible_base(tmp_path: Path) -> Path:
    base = tmp_path / "ansible"
    base.mkdir()
    return base
