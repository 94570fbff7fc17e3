"""A small AWS on loopback for the demo: moto's server (every AWS service on one port) set up for a Lambda stage.

``python -m standin.aws --ready-file F`` starts ``python -m moto.server`` on a free loopback port, turns Lambda's
Docker off (``POST /moto-api/config {"lambda": {"use_docker": false}}``: no function code runs here), pushes an
image to moto's ECR (``MOTO_LAMBDA_STUB_ECR=false``: a function's ImageUri must name a pushed image, as on AWS),
creates an IAM role Lambda may assume and the S3 buckets asked for (``--bucket``), then writes to F, as JSON::

    {"url": "http://127.0.0.1:PORT", "image": "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG",
     "role": "arn:aws:iam::ACCOUNT:role/NAME", "region": "us-east-1", "buckets": [...]}

and serves until SIGTERM (or Ctrl-C), when moto's server is stopped. Point a client at it with
``AWS_ENDPOINT_URL=<url>`` and any keys (moto takes any): see ``.ci/demo-continuum.sh``. The tests have their own
richer lab (``tests/awslab.py``: request recording, queues, credentials checking).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import boto3
import requests

from standin.oscar import moto_server

REGION = "us-east-1"
KEY_ID = "AKIASTANDINAWS000001"  # moto takes any keys
SECRET = "standin-aws-secret-key-000000000000000"  # noqa: S105 - a fake key for moto


def client(url: str, service: str, region: str = REGION) -> Any:
    return boto3.session.Session().client(
        service, endpoint_url=url, region_name=region, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )


def push_image(url: str, repository: str, tag: str, region: str = REGION) -> str:
    """An image in moto's ECR (the repository made if needed); its URI ``ACCOUNT.dkr.ecr.REGION.amazonaws.com/
    repository:tag``. Only its manifest is pushed: moto keeps no layers (and runs no image)."""
    ecr = client(url, "ecr", region)
    try:
        uri = ecr.create_repository(repositoryName=repository)["repository"]["repositoryUri"]
    except ecr.exceptions.RepositoryAlreadyExistsException:
        uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
    layer = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}],
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return f"{uri}:{tag}"


def make_role(url: str, name: str) -> str:
    """An IAM role Lambda may assume (moto checks that a function's role exists); its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam = client(url, "iam")
    try:
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
    except iam.exceptions.EntityAlreadyExistsException:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])


def set_up(url: str, *, repository: str, tag: str, role: str, buckets: list[str], region: str) -> dict[str, Any]:
    """Lambda without Docker, the image, the role and the buckets: what the ready file says."""
    answer = requests.post(f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10)
    answer.raise_for_status()
    s3 = client(url, "s3", region)
    for bucket in buckets:
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=bucket)
    return {
        "url": url,
        "image": push_image(url, repository, tag, region),
        "role": make_role(url, role),
        "region": region,
        "buckets": buckets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="moto's server on loopback as AWS, set up for a Lambda stage.")
    parser.add_argument("--address", default="127.0.0.1", help="a loopback address to listen on")
    parser.add_argument("--ready-file", type=Path, required=True, help="write the URL, image and role here (JSON)")
    parser.add_argument("--repository", default="demo-fn", help="the ECR repository of the pushed image")
    parser.add_argument("--tag", default="v1", help="the pushed image's tag")
    parser.add_argument("--role", default="demo-lambda-role", help="the IAM role to create")
    parser.add_argument("--bucket", action="append", default=[], help="an S3 bucket to create (repeatable)")
    args = parser.parse_args()
    if not args.address.startswith("127."):
        parser.error("--address must be a loopback address (127.x.y.z)")
    os.environ["MOTO_LAMBDA_STUB_ECR"] = "false"  # inherited by moto's server: images must be pushed to its ECR
    region = os.environ.get("AWS_DEFAULT_REGION") or REGION
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with moto_server(args.address) as url:
        ready = set_up(
            url, repository=args.repository, tag=args.tag, role=args.role, buckets=args.bucket, region=region
        )
        partial = args.ready_file.with_name(args.ready_file.name + ".part")
        partial.write_text(json.dumps(ready) + "\n")
        partial.replace(args.ready_file)  # whole or absent: a reader polling for it never sees half of it
        with contextlib.suppress(KeyboardInterrupt):
            while not stopped.wait(0.5):
                pass


if __name__ == "__main__":
    main()
