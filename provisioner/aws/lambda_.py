"""One AWS Lambda client (boto3) for the AWS stages of a workflow (SCAR's ``functions.aws``), with the functions'
CloudWatch Logs.

Container-image functions only (``PackageType=Image``): create, update only what differs, wait until Active, let
S3 invoke a function, read its logs, invoke it, delete it. The S3 side of a trigger (the bucket's notification
configuration) is :meth:`provisioner.aws.s3.S3Store.set_lambda_trigger`.

Explicit connect/read timeouts, botocore's retries limited to 2 attempts (none for ``Invoke``: a retried invocation
may run twice), TLS verified unless ``verify`` is False (or a CA bundle path). ``endpoint`` None leaves the endpoint
to boto3 (AWS's own for the region, or ``AWS_ENDPOINT_URL``); keys None leave the credentials to boto3's standard
chain (environment, profile, instance role). Failures are raised as :class:`~provisioner.errors.AwsError` (refused
credentials: :class:`~provisioner.errors.AwsAuthRefused`), one line naming the call, the function and AWS's error
code, or the endpoint when there was no answer. The keys are registered for masking and never logged.

Driver layer: imports only the bottom layer (boto3 is imported here, when a client is made).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.aws import session as aws_session
from provisioner.errors import AwsAuthRefused, AwsError, InputError, OperationTimeout
from provisioner.polling import PollSchedule, wait_until
from provisioner.redact import mask, register_secret
from provisioner.text import shorten

__all__ = [
    "AwsAccess",
    "FunctionSpec",
    "LambdaClient",
    "is_ecr_image_uri",
    "is_image_uri",
    "s3_statement_id",
    "spec_changes",
]

# AWS's error codes meaning "these credentials are not accepted" (Lambda and Logs answer JSON codes; an answer without
# a code, e.g. moto's XML error body, leaves the HTTP status as the code).
AUTH_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
    "401",
    "403",
}
MISSING = "ResourceNotFoundException"
AUTH_HINT = "check the AWS access key, secret key (and session token) and the region"

INVOKE_READ_TIMEOUT = 910.0  # a synchronous invocation may run for Lambda's longest timeout, 900 s
LOG_PAGES = 100  # FilterLogEvents may answer empty pages with a nextToken while it searches: a bound on the pages
MEMORY_RANGE = (128, 10240)  # MB
TIMEOUT_RANGE = (1, 900)  # s
ARCHITECTURES = {"x86_64", "arm64"}
WAIT_SCHEDULE = PollSchedule(initial=1.0, growth=0.125, cap=10.0)

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_REGISTRY = rf"(?:{_HOST}(?:\.{_HOST})+(?::[0-9]+)?|{_HOST}:[0-9]+|localhost)"
_IMAGE = re.compile(
    rf"(?P<registry>{_REGISTRY})/(?P<repo>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)
_ECR_REGISTRY = re.compile(r"[0-9]{12}\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def is_image_uri(text: str) -> bool:
    """Whether ``text`` is a container image URI with its registry: ``registry/repo[:tag][@sha256:...]``.

    The registry is a host name with a dot (``123456789012.dkr.ecr.us-east-1.amazonaws.com``, ``ghcr.io``), a host
    with a port, or ``localhost``; ``grycap/cowsay`` (Docker Hub's short form) is not one: Lambda needs the
    registry."""
    return _IMAGE.fullmatch(text) is not None


def is_ecr_image_uri(text: str) -> bool:
    """Whether ``text`` is an Amazon ECR image URI (``123456789012.dkr.ecr.REGION.amazonaws.com/repo:tag``), the
    only kind Lambda deploys."""
    found = _IMAGE.fullmatch(text)
    return found is not None and _ECR_REGISTRY.fullmatch(found["registry"]) is not None


def s3_statement_id(bucket: str) -> str:
    """The Sid of the function-policy statement that lets ``bucket`` invoke a function (:meth:`allow_s3`)."""
    return f"s3-{bucket}"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class AwsAccess:
    """Where AWS answers and with which keys (None: boto3's own resolution and credential chain)."""

    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    endpoint: str | None = None
    verify: bool | str = True
    session_token: str | None = None

    def __repr__(self) -> str:  # never the keys
        return f"AwsAccess(region={self.region!r}, endpoint={self.endpoint!r})"


@dataclass(frozen=True)
class FunctionSpec:
    """A container-image Lambda function as it should be. ``environment`` is copied (a plain dict)."""

    name: str
    image_uri: str
    role: str
    memory: int = 512  # MB
    timeout: int = 300  # s
    environment: Mapping[str, str] = field(default_factory=dict)
    architectures: tuple[str, ...] = ("x86_64",)
    description: str = ""

    def __post_init__(self) -> None:
        where = f"function {self.name}"
        if not _NAME.fullmatch(self.name):
            raise InputError("a Lambda function name is 1-64 letters, digits, '-' or '_'", field=f"{where}: name")
        if not is_image_uri(self.image_uri):
            raise InputError(
                f"{self.image_uri!r} is not an image URI (registry/repository:tag)", field=f"{where}: image"
            )
        if not MEMORY_RANGE[0] <= self.memory <= MEMORY_RANGE[1]:
            raise InputError(
                f"{self.memory} is not in {MEMORY_RANGE[0]}..{MEMORY_RANGE[1]} MB", field=f"{where}: memory"
            )
        if not TIMEOUT_RANGE[0] <= self.timeout <= TIMEOUT_RANGE[1]:
            raise InputError(
                f"{self.timeout} is not in {TIMEOUT_RANGE[0]}..{TIMEOUT_RANGE[1]} s", field=f"{where}: timeout"
            )
        if len(self.architectures) != 1 or self.architectures[0] not in ARCHITECTURES:
            raise InputError(
                f"{list(self.architectures)}: one of {sorted(ARCHITECTURES)}", field=f"{where}: architectures"
            )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.environment.items()):
            raise InputError("variables are names and text values", field=f"{where}: environment")
        object.__setattr__(self, "environment", dict(self.environment))
        object.__setattr__(self, "architectures", tuple(self.architectures))

    def __repr__(self) -> str:  # the environment's names only: its values may be secrets
        return (
            f"FunctionSpec({self.name!r}, image_uri={self.image_uri!r}, memory={self.memory}, timeout={self.timeout}, "
            f"environment={sorted(self.environment)}, architectures={self.architectures!r})"
        )


def spec_changes(spec: FunctionSpec, current: Mapping[str, Any]) -> tuple[str, ...]:
    """What differs between ``spec`` and a function's ``current`` configuration (as :meth:`get_function` answers):
    some of ``image``, ``architectures`` (code) and ``role``, ``memory``, ``timeout``, ``description``,
    ``environment`` (configuration), in that order; empty when nothing does."""
    return tuple(_code_update(spec, current)[0]) + tuple(_config_update(spec, current)[0])


def _code_update(spec: FunctionSpec, current: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    changed = []
    if current.get("ImageUri") != spec.image_uri:
        changed.append("image")
    if tuple(current.get("Architectures") or ("x86_64",)) != spec.architectures:
        changed.append("architectures")
    request = {"ImageUri": spec.image_uri, "Architectures": list(spec.architectures)} if changed else {}
    return changed, request


def _config_update(spec: FunctionSpec, current: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    changed: list[str] = []
    request: dict[str, Any] = {}
    env = dict((current.get("Environment") or {}).get("Variables") or {})
    for what, key, want, have in (
        ("role", "Role", spec.role, current.get("Role")),
        ("memory", "MemorySize", spec.memory, current.get("MemorySize")),
        ("timeout", "Timeout", spec.timeout, current.get("Timeout")),
        ("description", "Description", spec.description, current.get("Description") or ""),
        ("environment", "Environment", {"Variables": dict(spec.environment)}, {"Variables": env}),
    ):
        if want != have:
            changed.append(what)
            request[key] = want
    return changed, request


def _configuration(answer: Mapping[str, Any], image_uri: str | None) -> dict[str, Any]:
    config = {key: value for key, value in answer.items() if key != "ResponseMetadata"}
    if image_uri:
        config["ImageUri"] = image_uri
    return config


class LambdaClient:
    """A client of AWS Lambda (and of CloudWatch Logs, for the functions' logs) in one region."""

    def __init__(
        self,
        access: AwsAccess,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if (access.access_key is None) != (access.secret_key is None):
            raise InputError("give both the AWS access key and the secret key, or neither", field="aws")
        for secret in (access.access_key, access.secret_key, access.session_token):
            if secret:
                register_secret(secret)
        self.access = access
        self._timeout = timeout
        self._clock, self._sleep, self._rand = clock, sleep, rand
        self._lambda: Any = self._client("lambda", read_timeout=timeout, attempts=2)
        self._logs: Any = self._client("logs", read_timeout=timeout, attempts=2)
        self._invoker: Any = None  # made on the first invoke
        self.where = str(self._lambda.meta.endpoint_url)

    def _client(self, service: str, *, read_timeout: float, attempts: int) -> Any:
        from botocore.config import Config

        access = self.access
        return aws_session.client(
            service,
            endpoint_url=access.endpoint,
            aws_access_key_id=access.access_key,
            aws_secret_access_key=access.secret_key,
            aws_session_token=access.session_token,
            region_name=access.region or "us-east-1",
            verify=access.verify,
            config=Config(
                connect_timeout=min(5.0, self._timeout),
                read_timeout=read_timeout,
                retries={"max_attempts": attempts, "mode": "standard"},
            ),
        )

    # --- errors ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _code_and_message(exc: Exception) -> tuple[str, str]:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return "", ""
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message") or "")
        if "<Code>" in message:  # an XML error body where JSON was expected (a proxy, moto): its code is the code
            found_code, found_message = _XML_CODE.search(message), _XML_MESSAGE.search(message)
            code = found_code[1].strip() if found_code else code
            message = found_message[1].strip() if found_message else ""
        return code, message

    def _fail(self, call: str, name: str, exc: Exception, *, where: str | None = None) -> AwsError:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = where or self.where
        what = f"{call} of function {name}" if name else call
        if isinstance(exc, ClientError):
            code, message = self._code_and_message(exc)
            said = shorten(mask(" ".join(message.split())), 200)
            text = f"{what} on {where}: {code}{f' ({said})' if said and said != code else ''}"
            if code in AUTH_CODES:
                return AwsAuthRefused(text, code=code, hint=AUTH_HINT)
            return AwsError(text, code=code)
        if isinstance(exc, NoCredentialsError):
            return AwsAuthRefused(
                f"{what}: no AWS credentials (none given, none in the environment or the AWS profile)",
                hint="give the keys, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            )
        return AwsError(f"{what} on {where}: cannot reach it: {shorten(mask(str(exc)), 200)}")

    def _call(self, client: Any, operation: str, call: str, name: str, **kwargs: Any) -> dict[str, Any]:
        """``client.operation(**kwargs)``; AWS's errors raised as AwsError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = getattr(client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(call, name, exc, where=str(client.meta.endpoint_url)) from exc
        return answer

    # --- functions --------------------------------------------------------------------------------------------------

    def get_function(self, name: str) -> dict[str, Any] | None:
        """The function's configuration, with ``ImageUri`` (from its code) for an image function; None if absent."""
        try:
            answer = self._call(self._lambda, "get_function", "Lambda GetFunction", name, FunctionName=name)
        except AwsError as exc:
            if exc.code == MISSING:
                return None
            raise
        return _configuration(answer.get("Configuration") or {}, (answer.get("Code") or {}).get("ImageUri"))

    def create_function(self, spec: FunctionSpec) -> dict[str, Any]:
        """Create ``spec`` as a container-image function; its configuration (State is Pending at first on AWS)."""
        answer = self._call(
            self._lambda,
            "create_function",
            "Lambda CreateFunction",
            spec.name,
            FunctionName=spec.name,
            PackageType="Image",
            Code={"ImageUri": spec.image_uri},
            Role=spec.role,
            MemorySize=spec.memory,
            Timeout=spec.timeout,
            Description=spec.description,
            Architectures=list(spec.architectures),
            Environment={"Variables": dict(spec.environment)},
        )
        return _configuration(answer, spec.image_uri)

    def update_function(
        self, spec: FunctionSpec, current: Mapping[str, Any], *, timeout: float = 300.0
    ) -> dict[str, Any]:
        """Bring the function to ``spec``, sending only what differs from ``current`` (:func:`spec_changes`): its code
        (image, architectures) and/or its configuration (only the fields that differ), waiting for the first update
        to finish before the second. Nothing is sent when nothing differs. The configuration last answered."""
        if current.get("PackageType", "Image") != "Image":
            raise AwsError(
                f"Lambda function {spec.name} on {self.where} is a {current.get('PackageType')} package, and Lambda "
                "cannot turn it into a container image",
                hint="delete the function, and deploy again",
            )
        code_changed, code_request = _code_update(spec, current)
        config_changed, config_request = _config_update(spec, current)
        result = dict(current)
        if not code_changed and not config_changed:
            return result
        if current.get("State") == "Pending" or current.get("LastUpdateStatus") == "InProgress":
            self.wait_active(spec.name, timeout=timeout)
        if code_changed:
            answer = self._call(
                self._lambda,
                "update_function_code",
                "Lambda UpdateFunctionCode",
                spec.name,
                FunctionName=spec.name,
                **code_request,
            )
            result = _configuration(answer, spec.image_uri)
        if config_changed:
            if code_changed:
                self.wait_active(spec.name, timeout=timeout)
            answer = self._call(
                self._lambda,
                "update_function_configuration",
                "Lambda UpdateFunctionConfiguration",
                spec.name,
                FunctionName=spec.name,
                **config_request,
            )
            result = _configuration(answer, spec.image_uri)
        return result

    def wait_active(self, name: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until the function is Active and no update is in progress; its configuration (as
        :meth:`get_function`). A Failed state or a Failed last update raises :class:`AwsError` with AWS's reason;
        an absent function raises too; ``timeout`` s without that raises :class:`OperationTimeout`."""
        seen: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            config = self.get_function(name)
            if config is None:
                raise AwsError(
                    f"Lambda GetFunction of function {name} on {self.where}: {MISSING} (it is gone)", code=MISSING
                )
            seen.clear()
            seen.update(config)
            state, update = config.get("State"), config.get("LastUpdateStatus")
            if state == "Failed":
                code = str(config.get("StateReasonCode") or "Failed")
                reason = shorten(mask(str(config.get("StateReason") or "")), 300)
                raise AwsError(f"Lambda function {name} on {self.where} failed: {code} ({reason})", code=code)
            if update == "Failed":
                code = str(config.get("LastUpdateStatusReasonCode") or "Failed")
                reason = shorten(mask(str(config.get("LastUpdateStatusReason") or "")), 300)
                raise AwsError(
                    f"Lambda function {name} on {self.where}: its last update failed: {code} ({reason})", code=code
                )
            return config if state == "Active" and update != "InProgress" else None

        try:
            return wait_until(
                check,
                timeout=timeout,
                clock=self._clock,
                sleep=self._sleep,
                rand=self._rand,
                schedule=WAIT_SCHEDULE,
                what=f"Lambda function {name} to be Active",
            )
        except OperationTimeout as exc:
            raise OperationTimeout(
                f"timed out after {timeout:g} s waiting for Lambda function {name} on {self.where} to be Active: "
                f"State {seen.get('State')}, LastUpdateStatus {seen.get('LastUpdateStatus')}",
                hint="wait longer, or look at the function in the AWS console",
            ) from exc

    def allow_s3(self, name: str, bucket: str, *, source_account: str | None = None) -> None:
        """Let S3 invoke the function for ``bucket``'s events (a function-policy statement, Sid
        :func:`s3_statement_id`); nothing is sent when that statement is already there. ``source_account``: only
        when the bucket belongs to that account (AWS's advice against a bucket re-created by someone else)."""
        sid = s3_statement_id(bucket)
        try:
            policy = self._call(self._lambda, "get_policy", "Lambda GetPolicy", name, FunctionName=name)
        except AwsError as exc:
            if exc.code != MISSING:  # no policy yet (or no function: AddPermission says which)
                raise
            policy = {}
        statements = json.loads(policy.get("Policy") or "{}").get("Statement") or []
        if any(isinstance(s, dict) and s.get("Sid") == sid for s in statements):
            return
        request: dict[str, Any] = {
            "FunctionName": name,
            "StatementId": sid,
            "Action": "lambda:InvokeFunction",
            "Principal": "s3.amazonaws.com",
            "SourceArn": f"arn:{_partition(self.access.region)}:s3:::{bucket}",
        }
        if source_account:
            request["SourceAccount"] = source_account
        try:
            self._call(self._lambda, "add_permission", "Lambda AddPermission", name, **request)
        except AwsError as exc:
            if exc.code == "ResourceConflictException" and "already exists" in str(exc):
                return  # added meanwhile by someone else
            raise

    def disallow_s3(self, name: str, bucket: str) -> bool:
        """Remove the statement :meth:`allow_s3` added; False if there was none (or no function)."""
        try:
            self._call(
                self._lambda,
                "remove_permission",
                "Lambda RemovePermission",
                name,
                FunctionName=name,
                StatementId=s3_statement_id(bucket),
            )
        except AwsError as exc:
            if exc.code == MISSING:
                return False
            raise
        return True

    def delete_function(self, name: str) -> bool:
        """Delete the function (every version); False if there was none."""
        try:
            self._call(self._lambda, "delete_function", "Lambda DeleteFunction", name, FunctionName=name)
        except AwsError as exc:
            if exc.code == MISSING:
                return False
            raise
        return True

    def logs(self, name: str, *, since_ms: int | None = None, limit: int = 200) -> list[str]:
        """The first ``limit`` lines of the function's CloudWatch Logs (``/aws/lambda/<name>``, every stream) at or
        after ``since_ms`` (ms since the epoch; None: from the start), oldest first; [] when there is no log group.
        Secrets registered for masking are masked."""
        if limit <= 0:
            return []
        group = f"/aws/lambda/{name}"
        request: dict[str, Any] = {"logGroupName": group}
        if since_ms is not None:
            request["startTime"] = int(since_ms)
        events: list[dict[str, Any]] = []
        for _ in range(LOG_PAGES):
            request["limit"] = min(limit - len(events), 10000)
            try:
                page = self._call(
                    self._logs, "filter_log_events", f"CloudWatch Logs FilterLogEvents of {group}", "", **request
                )
            except AwsError as exc:
                if exc.code == MISSING:
                    break
                raise
            events.extend(page.get("events") or [])
            request["nextToken"] = page.get("nextToken")
            if not request["nextToken"] or len(events) >= limit:
                break
        events.sort(key=lambda e: (e.get("timestamp") or 0, e.get("ingestionTime") or 0))
        return [mask(str(e.get("message") or "").rstrip("\r\n")) for e in events[:limit]]

    def invoke(self, name: str, payload: bytes) -> bytes:
        """Invoke the function synchronously (``RequestResponse``) and return its answer. Not retried (an invocation
        may run twice otherwise); read timeout 910 s. A function that raised is an :class:`AwsError` (``code`` is
        Lambda's ``FunctionError``: Unhandled, Handled) with the error it answered."""
        if self._invoker is None:
            self._invoker = self._client("lambda", read_timeout=max(self._timeout, INVOKE_READ_TIMEOUT), attempts=1)
        answer = self._call(
            self._invoker,
            "invoke",
            "Lambda Invoke",
            name,
            FunctionName=name,
            InvocationType="RequestResponse",
            Payload=payload,
        )
        from botocore.exceptions import BotoCoreError

        try:
            body = answer["Payload"].read() if answer.get("Payload") is not None else b""
        except BotoCoreError as exc:
            raise self._fail("Lambda Invoke (reading the answer)", name, exc) from exc
        if answer.get("FunctionError"):
            kind = str(answer["FunctionError"])
            said = shorten(mask(" ".join(body.decode("utf-8", "replace").split())), 300)
            raise AwsError(
                f"Lambda Invoke of function {name} on {self.where}: the function failed: {kind} ({said})", code=kind
            )
        return bytes(body)

    def close(self) -> None:
        for client in (self._lambda, self._logs, self._invoker):
            if client is not None:
                client.close()
