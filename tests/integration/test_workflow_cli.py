"""``provision workflow`` against two stand-in OSCAR clusters, each with a real S3 server as its MinIO.

A three-stage workflow over two clusters: applied (downstream first, the cloud's MinIO credentials filled in
for the edge stage), a real file run through it and its final output checked byte for byte, re-applied (no
write), changed (one PUT), pruned (one DELETE), deleted. One cluster down mid-apply: the other is applied, the
command exits 1 naming the cluster, and the rerun completes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.aws.s3 import S3Access, S3Store
from standin.oscar import StandInOscar
from tests.clihelper import CLI
from tests.workflowlab import two_clusters, write_chain

EDGE_PASSWORD = "edge-oscar-password-1"
CLOUD_PASSWORD = "cloud-oscar-password-2"
CLOUD_MINIO_SECRET = "cloud-minio-secret-key-3"


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, StandInOscar]]:
    with two_clusters(EDGE_PASSWORD, CLOUD_PASSWORD, CLOUD_MINIO_SECRET) as made:
        yield made


def s3(oscar: StandInOscar) -> S3Store:
    return S3Store(S3Access(oscar.minio.endpoint, oscar.minio.access_key, oscar.minio.secret_key))


def write_fdl(path: Path, clusters: dict[str, StandInOscar], *, upper: str = "tr a-z A-Z", tag: bool = True) -> Path:
    return write_chain(
        path,
        clusters,
        edge_auth=f"auth_user: oscar, auth_password: {EDGE_PASSWORD}",
        cloud_auth=f"auth_user: oscar, auth_password: {CLOUD_PASSWORD}",
        upper=upper,
        tag=tag,
    )


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path / "home", "http://127.0.0.1:9/", tmp_path / "no-auth")


def writes(clusters: dict[str, StandInOscar]) -> int:
    return sum(len(c.writes()) for c in clusters.values())


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_workflow_over_two_clusters(clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    edge, cloud = clusters["edge"], clusters["cloud"]
    fdl = write_fdl(tmp_path / "wf" / "masks.yaml", clusters)

    planned = cli("workflow", "plan", str(fdl), "-o", "json")
    assert planned.returncode == 0, planned.stderr
    assert [s["action"] for s in json.loads(planned.stdout)["services"]] == ["create"] * 3

    before = writes(clusters)
    applied = cli("workflow", "apply", str(fdl), "-o", "json")
    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    assert doc["ok"] and len(doc["sent"]) == 3
    assert writes(clusters) - before == 3
    # Downstream first: the cloud's two services exist before the edge's stage that writes into the cloud.
    assert cloud.writes()[-2:] == [("POST", "/system/services")] * 2 and list(cloud.services)[-2:] == ["tag", "upper"]
    filled = edge.services["reverse"]["storage_providers"]["minio"]["cloud"]
    assert filled["endpoint"] == cloud.minio.endpoint and filled["secret_key"] == CLOUD_MINIO_SECRET
    assert cloud.services["tag"]["environment"] == {"variables": {"STAGE": "three"}}

    # A real file through the three stages.
    source = tmp_path / "face.txt"
    source.write_bytes(b"abc\n")
    s3(edge).upload(source, "faces", "in/face.txt")
    wait_for(lambda: list(s3(cloud).objects("results", "out")))
    got = tmp_path / "got.txt"
    s3(cloud).download("results", "out/out.txt", got)
    assert got.read_bytes() == b"CBA\n[three]\n"

    # Again: nothing to send.
    before = writes(clusters)
    again = cli("workflow", "apply", str(fdl), "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sent"] == [] and writes(clusters) == before

    # One script changed: one PUT, the token kept.
    token = cloud.services["upper"]["token"]
    write_fdl(fdl, clusters, upper="tr a-z A-Z | tr -d x")
    changed = cli("workflow", "apply", str(fdl), "-o", "json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["sent"] == ["update cloud/upper"]
    assert writes(clusters) - before == 1 and cloud.services["upper"]["token"] == token

    # A stage leaves the FDL: kept without --prune, removed with it.
    write_fdl(fdl, clusters, tag=False)
    shown = cli("workflow", "plan", str(fdl))
    assert "remove (with --prune)" in shown.stdout and "cloud/tag" in shown.stdout
    pruned = cli("workflow", "apply", str(fdl), "--prune", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    assert "tag" not in cloud.services and "remove cloud/tag" in json.loads(pruned.stdout)["sent"]

    listed = json.loads(cli("workflow", "list", "-o", "json").stdout)
    assert [(w["name"], w["services"]) for w in listed] == [("masks", ["cloud/upper", "edge/reverse"])]

    deleted = cli("workflow", "delete", "masks")
    assert deleted.returncode == 0, deleted.stderr
    assert "reverse" not in edge.services and "upper" not in cloud.services
    assert json.loads(cli("workflow", "list", "-o", "json").stdout) == []

    # The filled-in credentials went to OSCAR only.
    outputs = planned.stdout + applied.stdout + applied.stderr + again.stdout + changed.stdout + pruned.stdout
    assert CLOUD_MINIO_SECRET not in outputs
    with sqlite3.connect(cli.home / "state.db") as db:
        dump = "\n".join(db.iterdump())
    assert CLOUD_MINIO_SECRET not in dump and CLOUD_PASSWORD not in dump and "workflow:masks" in dump


def test_one_cluster_down_mid_apply(clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    edge, cloud = clusters["edge"], clusters["cloud"]
    fdl = tmp_path / "wf" / "split.yaml"
    fdl.parent.mkdir()
    (fdl.parent / "noop.sh").write_text("true\n")
    fdl.write_text(
        f"""
functions:
  oscar:
  - edge: {{name: solo, image: alpine, script: noop.sh, input: [{{storage_provider: minio, path: solo/in}}]}}
  - cloud: {{name: far, image: alpine, script: noop.sh, input: [{{storage_provider: minio, path: far/in}}]}}
clusters:
  edge: {{endpoint: '{edge.url}', auth_password: {EDGE_PASSWORD}}}
  cloud: {{endpoint: '{cloud.url}', auth_password: {CLOUD_PASSWORD}}}
"""
    )
    cloud.stop()
    try:
        down = cli("workflow", "apply", str(fdl))
        assert down.returncode == 1, down.stderr
        error = next(line for line in down.stderr.splitlines() if line.startswith("error: "))
        assert "cluster(s) cloud" in error and "solo" in edge.services
    finally:
        cloud.start()
    rerun = cli("workflow", "apply", str(fdl), "-o", "json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["sent"] == ["create cloud/far"]
    assert cli("workflow", "delete", "split").returncode == 0
