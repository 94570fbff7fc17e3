"""The preflight checks for real, on this machine as the only host (local connection, no privilege escalation),
in check mode with --tags preflight --skip-tags kube_tools: they pass with sane variables, change nothing,
write nothing, and fail with a message naming the variable (but never showing a secret) with bad ones."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.playbooks.conftest import PLAYBOOKS, RECAP, SCENARIOS, SECRETS, ansible_playbook, local_inventory, write_yaml


def preflight(playbook: str, variables: dict[str, Any], base: Path) -> tuple[int, str, tuple[int, ...] | None]:
    inventory = local_inventory(base / "hosts.yml")
    vars_file = write_yaml(base / "vars.yml", variables)
    result = ansible_playbook(
        [
            "-i",
            str(inventory),
            str(PLAYBOOKS / playbook),
            "-e",
            f"@{vars_file}",
            "--tags",
            "preflight",
            "--skip-tags",
            "kube_tools",
            "--check",
        ],
        base,
        timeout=180,
    )
    match = RECAP.search(result.stdout)
    return result.rc, result.output, tuple(int(g) for g in match.groups()) if match else None


def sane_variables(base: Path, components: list[str]) -> dict[str, Any]:
    return {
        **SCENARIOS["full"],
        **SECRETS,
        "provision_components": components,
        "oscar_yunikorn_enabled": "yunikorn" in components,
        "provision_workdir": str(base / "workdir"),
        "minio_disk_check_path": str(base),
    }


def test_preflight_passes_and_changes_nothing(ansible_base: Path) -> None:
    # edge.yml = the K3s play + site.yml: every role's preflight but onedata's, which is not selected (its checks
    # run in the failure test below).
    components = ["knative", "yunikorn", "minio", "oscar", "registry"]
    variables = sane_variables(ansible_base, components)
    rc, output, recap = preflight("edge.yml", variables, ansible_base)
    assert rc == 0, output
    assert recap is not None, output
    ok, changed, unreachable, failed = recap
    assert (changed, unreachable, failed) == (0, 0, 0), output
    assert ok > 10
    assert not (ansible_base / "workdir").exists()
    for secret in SECRETS.values():
        assert secret not in output
    # Each selected role ran its checks; the others were skipped by their `when`; kube_tools checks did not run.
    statuses = task_statuses(output)
    for role in [*components, "kube_common", "k3s"]:
        assert "ok" in statuses.get(role, set()), f"no preflight check ran for {role}"
    for role in {"knative", "yunikorn", "minio", "onedata", "oscar", "registry"} - set(components):
        assert statuses.get(role) == {"skipping"}, f"{role} is not selected but ran: {statuses.get(role)}"
    assert "Run kubectl version --client" not in output


def task_statuses(output: str) -> dict[str, set[str]]:
    """{role: statuses of its tasks (ok, skipping, changed...)} from Ansible's default output."""
    statuses: dict[str, set[str]] = {}
    role = None
    for line in output.splitlines():
        header = re.match(r"^TASK \[(\w+) : ", line)
        if header:
            role = header.group(1)
        elif line.startswith("TASK ["):
            role = None
        elif role and (status := re.match(r"^(ok|skipping|changed|fatal): ", line)):
            statuses.setdefault(role, set()).add(status.group(1))
    return statuses


# One host per bad input, all in one run: each is this machine again, with the sane variables as group vars and
# its one bad change as host vars (which take precedence).
BAD_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "short_secret": ({"minio_password": "short"}, "minio_password (secret) must be set"),
    "missing_dependency": ({"provision_components": ["oscar", "knative"]}, "oscar needs minio in provision_components"),
    "bad_bucket": ({"minio_buckets": ["Bad_Bucket"]}, "minio_buckets must be a list of distinct S3 bucket names"),
    "no_room": ({"minio_storage_size": "9999999Ti"}, "less than minio_storage_size=9999999Ti"),
    "bad_token": ({"onedata_token": "has spaces in it, which is bad"}, "onedata_token (secret) must be set"),
}


def test_preflight_fails_with_a_named_variable(ansible_base: Path) -> None:
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False}
    sane = sane_variables(ansible_base, ["knative", "yunikorn", "minio", "onedata", "oscar"])
    inventory = write_yaml(
        ansible_base / "hosts.yml",
        {
            "all": {
                "vars": sane,
                "children": {
                    "front": {"hosts": {name: {**host, **change} for name, (change, _) in BAD_INPUTS.items()}},
                    "wn": {"hosts": {}},
                },
            }
        },
    )
    args = ["-i", str(inventory), str(PLAYBOOKS / "site.yml"), "--tags", "preflight", "--skip-tags", "kube_tools"]
    result = ansible_playbook([*args, "--check"], ansible_base, timeout=180)
    assert result.rc != 0
    fatal = {
        match.group(1): json.loads(match.group(2))
        for match in re.finditer(r"^fatal: \[(\w+)\]: FAILED! => (\{.*\})$", result.stdout, re.MULTILINE)
    }
    assert set(fatal) == set(BAD_INPUTS), result.output
    for name, (_, message) in BAD_INPUTS.items():
        assert message in " ".join(fatal[name]["msg"].split()), (name, fatal[name])
    for secret in [*SECRETS.values(), "has spaces in it"]:
        assert secret not in result.output
