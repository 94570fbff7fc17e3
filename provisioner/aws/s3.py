"""One S3 client (boto3) for every S3 API the tool talks to: a cluster's MinIO, AWS S3; buckets' notifications to
AWS Lambda functions (the S3 side of a Lambda stage's trigger).

Explicit connect/read timeouts, botocore's retries limited to 2 attempts, TLS verified unless ``verify`` is
False (or a CA bundle path); failures raised as :class:`~provisioner.errors.StorageError` naming the endpoint,
the call and S3's error code. The keys are registered for masking and never logged.

Driver layer: imports only the bottom layer (boto3 is imported here, when a client is made).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.aws import session as aws_session
from provisioner.errors import StorageAuthRefused, StorageError
from provisioner.redact import mask, register_secret
from provisioner.text import shorten

__all__ = ["S3Access", "S3Object", "S3Store"]

AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class S3Access:
    """Where an S3 API answers and with which keys (``endpoint`` None: AWS's own, from the region)."""

    endpoint: str | None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    verify: bool | str = True

    def __repr__(self) -> str:  # never the keys
        return f"S3Access({self.endpoint!r}, region={self.region!r})"


@dataclass(frozen=True)
class S3Object:
    """One object a listing found (:meth:`S3Store.objects`); ``workflow run`` compares size, time and ETag to tell
    a stage's new outputs from those already there."""

    key: str
    size: int
    modified: float  # seconds since the epoch
    etag: str = ""


class S3Store:
    """A client of one S3 endpoint."""

    def __init__(self, access: S3Access, *, timeout: float = 30.0) -> None:
        from botocore.config import Config

        for secret in (access.access_key, access.secret_key):
            if secret:
                register_secret(secret)
        self.access = access
        self.where = access.endpoint or f"AWS S3 ({access.region})"
        self._client: Any = aws_session.client(
            "s3",
            endpoint_url=access.endpoint,
            aws_access_key_id=access.access_key,
            aws_secret_access_key=access.secret_key,
            region_name=access.region or "us-east-1",
            verify=access.verify,
            config=Config(
                connect_timeout=min(5.0, timeout),
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def _fail(self, call: str, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            said = shorten(mask(str(error.get("Message") or code)), 200)
            text = f"{call} on {self.where}: {code}{f' ({said})' if said and said != code else ''}"
            if code in AUTH_CODES:
                return StorageAuthRefused(text, hint="check the access key and secret key of this storage")
            return StorageError(text)
        return StorageError(f"{call} on {self.where}: cannot reach it: {shorten(mask(str(exc)), 200)}")

    @staticmethod
    def _code(exc: Exception) -> str:
        from botocore.exceptions import ClientError

        return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""

    def bucket_exists(self, bucket: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            if self._code(exc) in MISSING_CODES:
                return False
            raise self._fail(f"HEAD bucket {bucket}", exc) from exc
        return True

    def ensure_bucket(self, bucket: str) -> bool:
        """Make ``bucket`` unless it exists; True when it was made."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self.bucket_exists(bucket):
            return False
        try:
            region = self.access.region or "us-east-1"
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            self._client.create_bucket(Bucket=bucket, **where)
        except (ClientError, BotoCoreError) as exc:
            if self._code(exc) in ("BucketAlreadyOwnedByYou",):
                return False
            raise self._fail(f"creating bucket {bucket}", exc) from exc
        return True

    def buckets(self) -> set[str] | None:
        """The names of every bucket these keys may list (one ListBuckets); None when listing is refused."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.list_buckets()
        except (ClientError, BotoCoreError) as exc:
            if self._code(exc) in AUTH_CODES:
                return None
            raise self._fail("ListBuckets", exc) from exc
        return {str(item["Name"]) for item in answer.get("Buckets", [])}

    def upload(self, path: Path, bucket: str, key: str) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_file(str(path), bucket, key)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise self._fail(f"upload to {bucket}/{key}", exc) from exc

    def download(self, bucket: str, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.download_file(bucket, key, str(path))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"download of {bucket}/{key}", exc) from exc

    def objects(self, bucket: str, prefix: str = "") -> Iterator[S3Object]:
        """Every object under ``prefix`` (a folder: ``a/b`` lists ``a/b/...``); none when there is no bucket."""
        from botocore.exceptions import BotoCoreError, ClientError

        folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        yield S3Object(
                            item["Key"],
                            int(item.get("Size", 0)),
                            item["LastModified"].timestamp(),
                            str(item.get("ETag") or "").strip('"'),
                        )
        except (ClientError, BotoCoreError) as exc:
            if self._code(exc) in MISSING_CODES:
                return
            raise self._fail(f"listing {bucket}/{folder}", exc) from exc

    def delete_bucket(self, bucket: str) -> bool:
        """Empty and remove ``bucket``; False when there was none."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.bucket_exists(bucket):
            return False
        try:
            keys = [obj.key for obj in self.objects(bucket)]
            for start in range(0, len(keys), 1000):
                chunk = [{"Key": key} for key in keys[start : start + 1000]]
                self._client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
            self._client.delete_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"removing bucket {bucket}", exc) from exc
        return True

    # --- bucket notifications to Lambda ------------------------------------------------------------------------------

    def _notifications(self, bucket: str) -> dict[str, Any] | None:
        """The bucket's whole notification configuration (queues, topics, Lambda functions, EventBridge); None when
        there is no such bucket."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_bucket_notification_configuration(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            if self._code(exc) in MISSING_CODES:
                return None
            raise self._fail(f"reading the notifications of bucket {bucket}", exc) from exc
        return {key: value for key, value in answer.items() if key != "ResponseMetadata"}

    def _put_notifications(self, bucket: str, config: dict[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"writing the notifications of bucket {bucket}", exc) from exc

    def lambda_triggers(self, bucket: str) -> list[dict[str, Any]]:
        """The bucket's ``LambdaFunctionConfigurations`` (Id, LambdaFunctionArn, Events, Filter), as S3 answers;
        none when there is no bucket."""
        return list((self._notifications(bucket) or {}).get("LambdaFunctionConfigurations") or [])

    def set_lambda_trigger(
        self, bucket: str, *, trigger_id: str, function_arn: str, prefix: str = "", suffix: str = ""
    ) -> bool:
        """Make the bucket invoke ``function_arn`` for every object created under ``prefix`` and ending in ``suffix``
        (the notification configuration with Id ``trigger_id``), keeping every other configuration of the bucket
        (queues, topics, other Lambda ids, EventBridge). False when it was already exactly so (nothing sent).

        The function must let S3 invoke it first (``LambdaClient.allow_s3``): S3 checks that when the configuration
        is written. Read-modify-write: a concurrent change by someone else between the two calls is lost."""
        wanted: dict[str, Any] = {
            "Id": trigger_id,
            "LambdaFunctionArn": function_arn,
            "Events": ["s3:ObjectCreated:*"],
        }
        rules = [{"Name": name, "Value": value} for name, value in (("prefix", prefix), ("suffix", suffix)) if value]
        if rules:
            wanted["Filter"] = {"Key": {"FilterRules": rules}}
        config = self._notifications(bucket)
        if config is None:
            raise StorageError(f"setting a Lambda trigger on bucket {bucket} on {self.where}: NoSuchBucket")
        triggers = list(config.get("LambdaFunctionConfigurations") or [])
        mine = [t for t in triggers if t.get("Id") == trigger_id]
        if len(mine) == 1 and _same_trigger(mine[0], wanted):
            return False
        config["LambdaFunctionConfigurations"] = [t for t in triggers if t.get("Id") != trigger_id] + [wanted]
        self._put_notifications(bucket, config)
        return True

    def remove_lambda_trigger(self, bucket: str, trigger_id: str) -> bool:
        """Remove the notification configuration with Id ``trigger_id``, keeping the others; False if there was
        none, or no bucket (nothing sent)."""
        config = self._notifications(bucket)
        if config is None:
            return False
        triggers = list(config.get("LambdaFunctionConfigurations") or [])
        kept = [t for t in triggers if t.get("Id") != trigger_id]
        if len(kept) == len(triggers):
            return False
        config["LambdaFunctionConfigurations"] = kept
        self._put_notifications(bucket, config)
        return True

    def close(self) -> None:
        self._client.close()


def _trigger_key(trigger: dict[str, Any]) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """What a Lambda notification configuration does, whatever the spelling of its filter rules (S3's API reference
    and SCAR write ``prefix``; S3 may answer ``Prefix``)."""
    rules = ((trigger.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    filters = tuple(sorted((str(r.get("Name", "")).lower(), str(r.get("Value", ""))) for r in rules if r.get("Value")))
    return str(trigger.get("LambdaFunctionArn", "")), tuple(sorted(trigger.get("Events") or [])), filters


def _same_trigger(have: dict[str, Any], want: dict[str, Any]) -> bool:
    return _trigger_key(have) == _trigger_key(want)
