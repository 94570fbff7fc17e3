"""A small AWS on loopback for tests: moto's server (every service on one port) set up for Lambda without Docker.

``moto_aws()`` starts ``python -m moto.server`` on a free 127.0.0.1 port with

* ``MOTO_LAMBDA_STUB_ECR=false``: a function's ImageUri must name an image pushed to moto's ECR (:func:`push_image`),
  as on AWS, and its CodeSha256 is that image's digest;
* Lambda's Docker-less backend (``POST /moto-api/config {"lambda": {"use_docker": false}}``): ``Invoke`` answers the
  payload it was given;
* moto's request recorder writing to a file of ours, so a test can see what a client really sent
  (:meth:`MotoAws.sent`).

What moto does with an S3 notification to a function: it calls the function model's Docker invocation directly
(not the Docker-less backend). For a Zip function that writes one CloudWatch Logs line to ``/aws/lambda/<name>``
("error running docker: ..."), for an Image function it fails before that, after creating the log group (see
:func:`log_group_exists`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import requests

from provisioner.aws.lambda_ import AwsAccess
from provisioner.aws.s3 import S3Access
from standin.oscar import moto_server

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
KEY_ID = "AKIAMOTOLABKEY000001"
SECRET = "moto-lab-secret-key-0000000000000000000"


@dataclass(frozen=True)
class Sent:
    """One request a client sent to moto: the method, the path (no query), the query and the body (JSON decoded
    when it is JSON)."""

    method: str
    path: str
    query: str
    body: Any


@dataclass
class MotoAws:
    url: str
    recording: Path

    @property
    def access(self) -> AwsAccess:
        return AwsAccess(region=REGION, access_key=KEY_ID, secret_key=SECRET, endpoint=self.url)

    @property
    def s3_access(self) -> S3Access:
        return S3Access(self.url, access_key=KEY_ID, secret_key=SECRET, region=REGION)

    def client(self, service: str) -> Any:
        """A plain boto3 client of ``service`` on this moto (for setting things up and looking at them)."""
        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def api(self, path: str, *, data: bytes | None = None, json_body: Any = None) -> requests.Response:
        answer = requests.post(f"{self.url}/moto-api/{path}", data=data, json=json_body, timeout=10)
        answer.raise_for_status()
        return answer

    @contextmanager
    def sent(self) -> Iterator[list[Sent]]:
        """Every AWS request made inside the block (filled in when the block ends)."""
        found: list[Sent] = []
        self.api("recorder/reset-recording")
        self.api("recorder/start-recording")
        try:
            yield found
        finally:
            self.api("recorder/stop-recording")
            for line in self.recording.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                raw = entry.get("body") or ""
                body: Any = base64.b64decode(raw) if entry.get("body_encoded") else raw.encode()
                try:
                    body = json.loads(body) if body else None
                except ValueError:
                    body = body.decode("utf-8", "replace")
                url = urlsplit(entry["url"])
                found.append(Sent(entry["method"], url.path, url.query, body))

    @contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """moto checks every request's credentials against its IAM inside the block (our keys are unknown there)."""
        self.api("reset-auth", data=b"0")
        try:
            yield
        finally:
            self.api("reset-auth", data=b"inf")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_aws() -> Iterator[MotoAws]:
    """moto's server in a process of its own on a free loopback port, set up as described above."""
    with tempfile.TemporaryDirectory(prefix="awslab-") as tmp:
        recording = Path(tmp, "recording.jsonl")
        recording.touch()
        env = {
            **os.environ,
            "MOTO_LAMBDA_STUB_ECR": "false",
            "MOTO_RECORDER_FILEPATH": str(recording),
        }
        env.pop("MOTO_ENABLE_RECORDING", None)
        with moto_server(env=env, log=Path(tmp, "moto.log")) as url:
            lab = MotoAws(url, recording)
            lab.api("config", json_body={"lambda": {"use_docker": False}})
            yield lab


# --- things to set up in moto ---------------------------------------------------------------------------------------


def make_role(lab: MotoAws, name: str) -> str:
    """An IAM role Lambda may assume (moto checks that a function's role exists); its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    answer = lab.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return str(answer["Role"]["Arn"])


def push_image(lab: MotoAws, repository: str, tag: str) -> str:
    """An image in moto's ECR (the repository made if needed; each tag its own manifest, so its own digest); its
    URI ``ACCOUNT.dkr.ecr.REGION.amazonaws.com/repository:tag``."""
    ecr = lab.client("ecr")
    try:
        uri = ecr.create_repository(repositoryName=repository)["repository"]["repositoryUri"]
    except ecr.exceptions.RepositoryAlreadyExistsException:
        uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
    layer = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()  # moto's digest: of the layers'
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}],
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return f"{uri}:{tag}"


def make_queue(lab: MotoAws, name: str) -> tuple[str, str]:
    """An SQS queue: its URL and ARN."""
    sqs = lab.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(url), str(arn)


def queue_events(lab: MotoAws, queue_url: str) -> list[dict[str, Any]]:
    """The S3 event records waiting in a queue (S3's test events skipped), taken off the queue."""
    sqs = lab.client("sqs")
    records: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return records
        for message in messages:
            records.extend(json.loads(message["Body"]).get("Records", []))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def make_zip_function(lab: MotoAws, name: str, role: str) -> str:
    """A Zip-package Python function (moto records its S3-triggered invocations in its logs); its ARN."""
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    answer = lab.client("lambda").create_function(
        FunctionName=name, Runtime="python3.11", Handler="handler.handler", Code={"ZipFile": code.getvalue()}, Role=role
    )
    return str(answer["FunctionArn"])


def log_group_exists(lab: MotoAws, name: str) -> bool:
    groups = lab.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return any(group["logGroupName"] == name for group in groups)
