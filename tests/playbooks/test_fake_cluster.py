"""site.yml for real on this machine against stand-in kubectl and helm (tests/playbooks/fakekube.py): every
add-on role runs end to end; a second run with one more bucket changes exactly MinIO's values file and release
(everything else reports unchanged); secret-bearing files are 0600; no secret reaches a command line or the log.

Nothing is downloaded: kube_common installs "Helm" (the stand-in) from a local archive whose SHA-256 replaces the
pinned one, and the Knative release manifests come from local files. The roles chown their files to root, so
this runs as root only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import stat
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.playbooks.conftest import (
    PLAYBOOKS,
    RECAP,
    SCENARIOS,
    SECRETS,
    VERSIONS,
    ansible_playbook,
    local_inventory,
    write_yaml,
)

FAKEKUBE = Path(__file__).with_name("fakekube.py")
COMPONENTS = ["knative", "yunikorn", "minio", "onedata", "oscar", "registry"]

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the roles chown their files to root"
)


class FakeCluster:
    def __init__(self, base: Path) -> None:
        versions = yaml.safe_load(VERSIONS.read_text())
        self.base = base
        self.state = base / "fake-state"
        self.state.mkdir()
        bin_dir = base / "fake-bin"
        bin_dir.mkdir()
        for tool in ("kubectl", "helm"):
            script = bin_dir / tool
            script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKEKUBE}" {tool} "$@"\n')
            script.chmod(0o755)
        # kube_common installs Helm here from a local tarball laid out like get.helm.sh's.
        self.helm = base / "installed" / "helm"
        self.helm.parent.mkdir()
        arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}[platform.machine()]
        downloads = base / "helm-downloads"
        downloads.mkdir()
        archive = downloads / f"helm-v{versions['helm_version']}-linux-{arch}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(bin_dir / "helm", arcname=f"linux-{arch}/helm")
        self.helm_download = {
            "kube_common_helm_download_url": downloads.as_uri(),
            "helm_sha256": {arch: hashlib.sha256(archive.read_bytes()).hexdigest()},
        }
        releases = base / "knative-release"
        releases.mkdir()
        for name, namespace in (
            ("serving-crds.yaml", None),
            ("serving-core.yaml", "knative-serving"),
            ("kourier.yaml", "kourier-system"),
        ):
            doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace or "crds-stand-in"}}
            write_yaml(releases / name, doc)
        self.release_url = releases.as_uri()
        # The role verifies each release file against its digest, as it would the real release's.
        self.knative_sha256 = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in releases.iterdir()}
        self.kubeconfig = base / "admin.conf"
        self.kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
        self.env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKEKUBE_STATE": str(self.state),
            "FAKEKUBE_HELM_VERSION": versions["helm_version"],
        }

    def variables(self, **changes: Any) -> dict[str, Any]:
        return {
            **SCENARIOS["full"],
            **SECRETS,
            "provision_components": COMPONENTS,
            "onedata_host": "",  # the onedata role would call the Oneprovider over the network
            "provision_workdir": str(self.base / "workdir"),
            "provision_kubeconfig": str(self.kubeconfig),
            "minio_disk_check_path": str(self.base),
            "kube_common_helm_bin": str(self.helm),
            **self.helm_download,
            "knative_serving_release_url": self.release_url,
            "knative_kourier_release_url": self.release_url,
            "knative_sha256": self.knative_sha256,
            **changes,
        }

    def run(
        self, variables: dict[str, Any], fail: str | None = None, tags: list[str] | None = None
    ) -> tuple[int, str, tuple[int, ...]]:
        inventory = local_inventory(self.base / "hosts.yml")
        vars_file = write_yaml(self.base / "vars.yml", variables)
        vars_file.chmod(0o600)
        result = ansible_playbook(
            ["-i", str(inventory), str(PLAYBOOKS / "site.yml"), "-e", f"@{vars_file}"]
            + (["--tags", ",".join(tags)] if tags else []),
            self.base,
            env={**self.env, **({"FAKEKUBE_FAIL": fail} if fail else {})},
            timeout=300,
        )
        match = RECAP.search(result.stdout)
        assert match, result.output
        return result.rc, result.output, tuple(int(g) for g in match.groups())

    def json(self, name: str) -> dict[str, Any]:
        return json.loads((self.state / f"{name}.json").read_text())

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in (self.state / "calls.log").read_text().splitlines()]


def test_site_against_stand_in_tools(ansible_base: Path) -> None:
    cluster = FakeCluster(ansible_base)
    versions = yaml.safe_load(VERSIONS.read_text())

    rc, output, (_, changed, _, failed) = cluster.run(cluster.variables())
    assert rc == 0 and failed == 0, output
    assert changed > 10
    assert "kube_common : Install the Helm binary" in changed_tasks(output)
    assert stat.S_IMODE(cluster.helm.stat().st_mode) == 0o755
    releases = cluster.json("releases")
    assert {k: v["info"]["chart"] for k, v in releases.items()} == {
        "yunikorn/yunikorn": f"yunikorn-{versions['yunikorn_chart_version']}",
        "minio/minio": f"minio-{versions['minio_chart_version']}",
        "oscar/oscar": f"oscar-{versions['oscar_chart_version']}",
    }
    assert releases["minio/minio"]["values"]["rootPassword"] == SECRETS["minio_password"]
    assert releases["oscar/oscar"]["values"]["authPass"] == SECRETS["oscar_password"]
    assert "--wait" in releases["minio/minio"]["argv"] and "--wait" not in releases["oscar/oscar"]["argv"]
    objects = cluster.json("objects")
    for name in (
        "configmap/config-network@knative-serving",
        "configmap/config-domain@knative-serving",
        "configmap/provision-knative-release@knative-serving",
        "configmap/yunikorn-configs@yunikorn",
        "namespace/oscar-svc@",
        "ingress/oscar@oscar",
        "secret/provision-registry@oscar-svc",
        "serviceaccount/default@oscar",
    ):
        assert name in objects, name
    workdir = cluster.base / "workdir"
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    for role in ("knative", "yunikorn", "minio", "oscar", "registry"):
        assert stat.S_IMODE((workdir / role).stat().st_mode) == 0o700
        for path in (workdir / role).rglob("*"):
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is mode {oct(path.stat().st_mode)}"
    for call in cluster.calls():
        for secret in SECRETS.values():
            assert secret not in " ".join(call), f"a secret was on the command line: {call[:3]}"
    for secret in SECRETS.values():
        assert secret not in output

    # Second run, with one more bucket, after OSCAR rewrote yunikorn-configs: the only changes are the MinIO values
    # file and its helm upgrade; everything else reports unchanged (idempotent) and yunikorn-configs is kept.
    objects = cluster.json("objects")
    objects["configmap/yunikorn-configs@yunikorn"]["digest"] = "changed by OSCAR"
    (cluster.state / "objects.json").write_text(json.dumps(objects))
    calls_before = len(cluster.calls())
    rc, output, (_, changed, _, failed) = cluster.run(cluster.variables(minio_buckets=["inputs", "outputs.v2", "more"]))
    assert (rc, failed) == (0, 0), output
    assert changed_tasks(output) == [
        "minio : Render the MinIO Helm values (holds minio_password)",
        "kube_common : Run helm upgrade --install minio",
    ], output
    assert changed == 2, output
    new_calls = cluster.calls()[calls_before:]
    upgrades = [c[3] for c in new_calls if c[:3] == ["helm", "upgrade", "--install"]]
    assert upgrades == ["minio"]
    assert not [c for c in new_calls if "serving-core.yaml" in " ".join(c)]  # Knative release not re-applied
    releases = cluster.json("releases")
    assert [b["name"] for b in releases["minio/minio"]["values"]["buckets"]] == ["inputs", "outputs.v2", "more"]
    assert {k: v["info"]["revision"] for k, v in releases.items()} == {
        "yunikorn/yunikorn": "1",
        "minio/minio": "2",
        "oscar/oscar": "1",
    }
    assert cluster.json("objects")["configmap/yunikorn-configs@yunikorn"]["digest"] == "changed by OSCAR"

    # Failures whose tool output quotes a secret-bearing file: the run fails naming the step, with the tool's
    # message, and every secret value in it replaced by ***. (Only the role concerned runs: its tag, which brings
    # kube_common along.)
    rc, output, (_, _, _, failed) = cluster.run(
        cluster.variables(minio_buckets=["other"]), fail="helm-upgrade", tags=["minio"]
    )
    assert rc != 0 and failed == 1, output
    assert "helm upgrade --install minio failed (rc 1): Error: values don't meet" in output
    assert "rootPassword: '***'" in output or 'rootPassword: "***"' in output, output
    rc, output, (_, _, _, failed) = cluster.run(
        cluster.variables(registry_user="robot2"), fail="apply-secret", tags=["registry"]
    )
    assert rc != 0 and failed == 1, output
    assert "kubectl apply of the registry pull Secrets failed: The Secret" in output
    assert "***" in output
    auth = base64.b64encode(f"robot2:{SECRETS['registry_password']}".encode()).decode()
    for secret in [*SECRETS.values(), auth]:
        assert secret not in output


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported a change, in order ("role : name")."""
    names, task = [], None
    for line in output.splitlines():
        match = re.match(r"^TASK \[(.*)\] \**$", line)
        if match:
            task = match.group(1)
        elif line.startswith("changed: ") and task is not None and task not in names:
            names.append(task)
    return names


def test_knative_refuses_release_files_without_a_pinned_digest(ansible_base: Path) -> None:
    cluster = FakeCluster(ansible_base)
    # As vars/versions.yml ships them until the digests are filled in: empty.
    empty = dict.fromkeys(cluster.knative_sha256, "")
    rc, output, (_, _, _, failed) = cluster.run(cluster.variables(knative_sha256=empty), tags=["knative"])
    assert rc != 0 and failed == 1, output
    assert "knative_sha256['serving-crds.yaml'] in vars/versions.yml is empty" in output
    assert "not installed unverified" in output
    # Refused before anything was created, downloaded or applied.
    assert not (ansible_base / "workdir" / "knative").exists()
    assert not [c for c in cluster.calls() if c[:2] == ["kubectl", "apply"]]
    # A digest that does not match the file is refused by the download itself.
    wrong = {**cluster.knative_sha256, "kourier.yaml": "0" * 64}
    rc, output, _ = cluster.run(cluster.variables(knative_sha256=wrong), tags=["knative"])
    assert rc != 0 and "kourier.yaml" in output and "checksum" in output.lower(), output
