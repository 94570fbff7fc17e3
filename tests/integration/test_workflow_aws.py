"""A workflow from the edge's OSCAR to AWS Lambda (functions.aws) and on to the cloud's MinIO, against two stand-in
OSCARs and moto's server as AWS (tests/awslab.py): the function created from an ECR image and waited for, S3's
permission and the bucket's trigger set beside the bucket's other notifications, the outputs passed in the
function's environment (the cloud's MinIO credentials filled in), a file written by the OSCAR stage reaching the
function, a re-apply sending nothing, a change sending one update, and delete removing the function and its
trigger only."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from standin.oscar import StandInOscar
from tests import awslab
from tests.awslab import MotoAws
from tests.clihelper import CLI
from tests.workflowlab import REVERSE, two_clusters

EDGE_PASSWORD = "edge-oscar-password-a1"
CLOUD_PASSWORD = "cloud-oscar-password-a2"
CLOUD_MINIO_SECRET = "cloud-minio-secret-key-a3"


@pytest.fixture(scope="module")
def lab() -> Iterator[MotoAws]:
    with awslab.moto_aws() as made:
        yield made


@pytest.fixture(scope="module")
def clusters(lab: MotoAws) -> Iterator[dict[str, StandInOscar]]:
    endpoint = {"aws_endpoint": lab.url}
    with two_clusters(EDGE_PASSWORD, CLOUD_PASSWORD, CLOUD_MINIO_SECRET, edge=endpoint, cloud=endpoint) as made:
        yield made


@pytest.fixture
def cli(tmp_path: Path, lab: MotoAws) -> CLI:
    made = CLI(tmp_path / "home", "http://127.0.0.1:9/", tmp_path / "no-auth")
    made.env.update({"AWS_ENDPOINT_URL": lab.url, "AWS_DEFAULT_REGION": awslab.REGION})
    return made


def write_fdl(folder: Path, clusters: dict[str, StandInOscar], image: str, role: str, *, memory: int = 512) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reverse.sh").write_text(REVERSE)
    fdl = folder / "burst.yaml"
    fdl.write_text(
        f"""functions:
  oscar:
  - edge:
      name: reverse
      image: alpine
      script: reverse.sh
      input: [{{storage_provider: minio, path: faces/in}}]
      output: [{{storage_provider: s3.aws1, path: scar-in/in}}]
  aws:
  - lambda:
      name: scar-fn
      memory: {memory}
      timeout: 60
      container: {{image: '{image}'}}
      environment: {{Variables: {{MODE: detect}}}}
      input: [{{storage_provider: s3.aws1, path: scar-in/in}}]
      output: [{{storage_provider: minio.cloud, path: results/out}}]
    iam: {{role: '{role}'}}
storage_providers:
  s3:
    aws1: {{access_key: {awslab.KEY_ID}, secret_key: {awslab.SECRET}, region: {awslab.REGION}}}
clusters:
  edge: {{endpoint: '{clusters["edge"].url}', auth_password: {EDGE_PASSWORD}}}
  cloud: {{endpoint: '{clusters["cloud"].url}', auth_password: {CLOUD_PASSWORD}}}
"""
    )
    return fdl


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def lambda_writes(sent: list[awslab.Sent]) -> list[str]:
    return [f"{s.method} {s.path}" for s in sent if s.method in ("POST", "PUT", "DELETE") and "/functions" in s.path]


def test_oscar_to_lambda_to_oscar(lab: MotoAws, clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    role = awslab.make_role(lab, "scar-role")
    image = awslab.push_image(lab, "scar-detect", "v1")
    s3 = lab.client("s3")
    s3.create_bucket(Bucket="scar-in")
    queue_url, queue_arn = awslab.make_queue(lab, "others")
    s3.put_bucket_notification_configuration(
        Bucket="scar-in",
        NotificationConfiguration={
            "QueueConfigurations": [{"Id": "others", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    fdl = write_fdl(tmp_path / "wf", clusters, image, role)

    shown = cli("workflow", "validate", str(fdl))
    assert shown.returncode == 0, shown.stderr
    assert "edge/reverse --[s3.aws1:scar-in/in]--> aws/scar-fn" in shown.stdout

    applied = cli("workflow", "apply", str(fdl), "-o", "json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["sent"] == ["create aws/scar-fn", "create edge/reverse"]  # downstream first

    function = lab.client("lambda").get_function(FunctionName="scar-fn")
    config = function["Configuration"]
    assert (config["PackageType"], config["MemorySize"], config["Timeout"], config["Role"]) == ("Image", 512, 60, role)
    assert function["Code"]["ImageUri"] == image
    variables = config["Environment"]["Variables"]
    assert variables["MODE"] == "detect" and variables["OUTPUT_0"] == "minio.cloud:results/out"
    passed = yaml.safe_load(base64.b64decode(variables["FUNCTION_CONFIG"]))
    filled = passed["storage_providers"]["minio"]["cloud"]
    assert filled["endpoint"] == clusters["cloud"].minio.endpoint and filled["secret_key"] == CLOUD_MINIO_SECRET

    notifications = s3.get_bucket_notification_configuration(Bucket="scar-in")
    assert [q["Id"] for q in notifications["QueueConfigurations"]] == ["others"]  # kept
    (trigger,) = notifications["LambdaFunctionConfigurations"]
    assert trigger["Id"] == "provision-scar-fn-0" and trigger["LambdaFunctionArn"] == config["FunctionArn"]
    rules = {r["Name"].lower(): r["Value"] for r in trigger["Filter"]["Key"]["FilterRules"]}
    assert rules["prefix"] == "in/"

    # Again: nothing sent to Lambda, OSCAR or S3's notifications.
    with lab.sent() as sent:
        again = cli("workflow", "apply", str(fdl), "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sent"] == [] and lambda_writes(sent) == []

    # The chain: a file into the edge's MinIO; the edge stage writes it to S3, whose notification calls the function.
    source = tmp_path / "face.txt"
    source.write_bytes(b"abc\n")
    clusters["edge"].minio.client().upload_file(str(source), "faces", "in/face.txt")
    wait_for(lambda: s3.list_objects_v2(Bucket="scar-in", Prefix="in/").get("KeyCount", 0))
    assert s3.get_object(Bucket="scar-in", Key="in/face.txt")["Body"].read() == b"cba\n"
    assert wait_for(lambda: awslab.log_group_exists(lab, "/aws/lambda/scar-fn"))  # moto ran the function's path
    assert [e["s3"]["object"]["key"] for e in awslab.queue_events(lab, queue_url)] == ["in%2Fface.txt"]

    # The trigger removed behind the tool's back (or never set: a kill between the function and its trigger):
    # the plan shows it, and apply sets it again.
    from provisioner.aws.s3 import S3Store

    S3Store(lab.s3_access).remove_lambda_trigger("scar-in", "provision-scar-fn-0")
    drifted = json.loads(cli("workflow", "plan", str(fdl), "-o", "json").stdout)
    (item,) = [s for s in drifted["services"] if s["service"] == "scar-fn"]
    assert item["action"] == "update" and [c["field"] for c in item["changes"]] == ["triggers"]
    mended = cli("workflow", "apply", str(fdl), "-o", "json")
    assert json.loads(mended.stdout)["sent"] == ["update aws/scar-fn"], mended.stderr
    notifications = s3.get_bucket_notification_configuration(Bucket="scar-in")
    assert [t["Id"] for t in notifications["LambdaFunctionConfigurations"]] == ["provision-scar-fn-0"]
    assert [q["Id"] for q in notifications["QueueConfigurations"]] == ["others"]

    # One change: one update of the function, the OSCAR service untouched.
    write_fdl(tmp_path / "wf", clusters, image, role, memory=1024)
    planned = cli("workflow", "plan", str(fdl), "-o", "json")
    changes = {s["service"]: s["changes"] for s in json.loads(planned.stdout)["services"] if s["action"] == "update"}
    assert changes == {"scar-fn": [{"field": "memory", "before": 512, "after": 1024}]}
    changed = cli("workflow", "apply", str(fdl), "-o", "json")
    assert json.loads(changed.stdout)["sent"] == ["update aws/scar-fn"]
    assert lab.client("lambda").get_function(FunctionName="scar-fn")["Configuration"]["MemorySize"] == 1024

    status = json.loads(cli("workflow", "status", "burst", "-o", "json").stdout)
    assert {(s["cluster"], s["service"]): (s["exists"], s["matches"]) for s in status["stages"]} == {
        ("edge", "reverse"): (True, True),
        ("aws", "scar-fn"): (True, True),
    }

    # Followed through the edge stage to the function; moto writes no CloudWatch lines for an image function, so
    # the trace waits there for an invocation and says so when its time is up (exit 4).
    second = tmp_path / "second.txt"
    second.write_bytes(b"xyz\n")
    ran = cli("workflow", "run", "burst", "--input", str(second), "--timeout", "5")
    assert ran.returncode == 4, ran.stderr
    assert "edge/reverse wrote scar-in/in/second.txt -> aws/scar-fn" in ran.stderr
    assert "still waiting for aws/scar-fn (no job yet)" in ran.stderr

    deleted = cli("workflow", "delete", "burst", "-o", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(json.loads(deleted.stdout)["sent"]) == ["remove aws/scar-fn", "remove edge/reverse"]
    functions = lab.client("lambda").list_functions()["Functions"]
    assert "scar-fn" not in [f["FunctionName"] for f in functions]
    notifications = s3.get_bucket_notification_configuration(Bucket="scar-in")
    assert [q["Id"] for q in notifications["QueueConfigurations"]] == ["others"]
    assert not notifications.get("LambdaFunctionConfigurations")

    outputs = "".join(r.stdout + r.stderr for r in (applied, again, planned, changed, deleted))
    assert awslab.SECRET not in outputs and CLOUD_MINIO_SECRET not in outputs
    with sqlite3.connect(cli.home / "state.db") as db:
        dump = "\n".join(db.iterdump())
    assert awslab.SECRET not in dump and CLOUD_MINIO_SECRET not in dump and "scar-fn" in dump


def test_an_image_that_is_not_pushed_is_refused_before_anything_is_sent(
    lab: MotoAws, clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path
) -> None:
    fdl = write_fdl(tmp_path / "wf", clusters, "./Dockerfile", "arn:aws:iam::123456789012:role/x")
    before = len(clusters["edge"].requests)
    refused = cli("workflow", "apply", str(fdl))
    assert refused.returncode == 2
    assert "functions.aws[0].lambda.container.image: must be an image URI" in refused.stderr
    assert "building or pushing images is out of scope" in refused.stderr
    assert len(clusters["edge"].requests) == before
