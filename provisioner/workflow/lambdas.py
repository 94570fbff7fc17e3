"""The AWS Lambda stages of a workflow (``functions.aws``, SCAR's format), handled like OSCAR services.

A Lambda stage's definition is a plain mapping compared field by field like a service's (:mod:`.plan`):
``name, image, role, memory, timeout, architectures, description, environment.variables, input, output`` and the
``storage_providers`` its inputs and outputs name (credentials masked in plans, never recorded).
:class:`LambdaBackend` is the engine's client for the pseudo-cluster ``aws``: it lists the functions the
workflow names (``services``), and creates, updates and deletes them (``create_service``...) with boto3
(:mod:`provisioner.aws.lambda_`): the function (``PackageType=Image``), waited for until Active; S3's permission
to invoke it; and each input bucket (made when missing, as OSCAR makes a service's) given its notification
(``s3:ObjectCreated:*`` with the path's prefix), every other notification configuration of the bucket kept.
Where each output goes reaches the function as SCAR passes it:
``FUNCTION_CONFIG`` (base64 of the YAML ``{name, input, output, storage_providers}``) and ``OUTPUT_<N>``
variables (``provider:path``).

Credentials: the standard AWS chain (environment, profile), or the keys of the ``storage_providers.s3.<id>`` of
the function's first input; the region from ``lambda.region``, that provider, or ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from provisioner.workflow.fdl import Stage

if TYPE_CHECKING:  # boto3 is imported only when AWS is spoken to
    from provisioner.aws.lambda_ import AwsAccess, FunctionSpec, LambdaClient
    from provisioner.aws.s3 import S3Store

__all__ = ["CONFIG_VARIABLE", "LambdaBackend", "aws_access", "lambda_definition"]

CONFIG_VARIABLE = "FUNCTION_CONFIG"
TRIGGER_PREFIX = "provision-"
DEFAULT_MEMORY = 512
DEFAULT_TIMEOUT = 300


def _region(stage_or_definition: Mapping[str, Any], provider: Mapping[str, Any] | None) -> str:
    return str(
        stage_or_definition.get("region")
        or (provider or {}).get("region")
        or os.environ.get("AWS_DEFAULT_REGION")
        or os.environ.get("AWS_REGION")
        or "us-east-1"
    )


def lambda_definition(stage: Stage, providers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What a Lambda stage should be (no network or disk; the region falls back to ``AWS_DEFAULT_REGION`` /
    ``AWS_REGION`` from the environment): ``providers`` are the storage providers its inputs and outputs name,
    credentials filled in (kind -> id -> settings)."""
    given = stage.definition
    body: dict[str, Any] = {
        "name": stage.name,
        "image": given["container"]["image"],
        "role": given["iam"]["role"],
        "memory": int(given.get("memory") or DEFAULT_MEMORY),
        "timeout": int(given.get("timeout") or DEFAULT_TIMEOUT),
        "architectures": list(given.get("architectures") or ["x86_64"]),
        "environment": {"variables": dict((given.get("environment") or {}).get("variables") or {})},
        "input": [_io(spec) for spec in stage.inputs],
        "output": [_io(spec) for spec in stage.outputs],
    }
    if given.get("description"):
        body["description"] = given["description"]
    first = stage.inputs[0] if stage.inputs else None
    provider = providers.get("s3", {}).get(first.ref) if first is not None and first.kind == "s3" else None
    body["region"] = _region(given, provider)
    if providers:
        body["storage_providers"] = {kind: {i: dict(v) for i, v in ids.items()} for kind, ids in providers.items()}
    # The bucket notifications that invoke it are part of what it should be: one missing (a kill between the
    # function's creation and its trigger) is planned as a change, and set again.
    body["triggers"] = sorted(_trigger_label(t, b, p, x) for t, (_i, b, p, x) in _wanted(body).items())
    return body


def _io(spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"storage_provider": spec.provider, "path": spec.path}
    if spec.suffix:
        out["suffix"] = list(spec.suffix)
    if spec.prefix:
        out["prefix"] = list(spec.prefix)
    return out


def _wanted(definition: Mapping[str, Any]) -> dict[str, tuple[str, str, str, str]]:
    """trigger id -> (provider id, bucket, prefix, suffix) for each s3 input of a function's definition."""
    out: dict[str, tuple[str, str, str, str]] = {}
    for n, entry in enumerate(definition.get("input") or []):
        kind, _, ident = str(entry.get("storage_provider") or "").partition(".")
        if kind != "s3":
            continue
        bucket, _, rest = str(entry["path"]).strip("/").partition("/")
        prefix = f"{rest.strip('/')}/" if rest.strip("/") else ""
        suffixes = list(entry.get("suffix") or [])
        out[f"{TRIGGER_PREFIX}{definition['name']}-{n}"] = (ident, bucket, prefix, suffixes[0] if suffixes else "")
    return out


def _trigger_label(trigger: str, bucket: str, prefix: str, suffix: str) -> str:
    return f"{trigger}: s3://{bucket}/{prefix}*{suffix}"


def aws_access(definition: Mapping[str, Any], *, verify: bool | str) -> AwsAccess:
    """The credentials a function is deployed with: its first input's s3 provider's keys, else the AWS chain."""
    from provisioner.aws.lambda_ import AwsAccess

    provider: Mapping[str, Any] = {}
    for entry in definition.get("input") or []:
        kind, _, ident = str(entry.get("storage_provider") or "").partition(".")
        if kind == "s3":
            provider = ((definition.get("storage_providers") or {}).get("s3") or {}).get(ident) or {}
            break
    return AwsAccess(
        region=str(definition.get("region") or _region(definition, provider)),
        access_key=str(provider["access_key"]) if provider.get("access_key") else None,
        secret_key=str(provider["secret_key"]) if provider.get("secret_key") else None,
        verify=verify,
    )


def _environment(definition: Mapping[str, Any]) -> dict[str, str]:
    """The function's environment: the FDL's variables, then where its outputs go (as SCAR passes them)."""
    env = {str(k): str(v) for k, v in ((definition.get("environment") or {}).get("variables") or {}).items()}
    config = {
        "name": definition["name"],
        "input": definition.get("input") or [],
        "output": definition.get("output") or [],
        "storage_providers": definition.get("storage_providers") or {},
    }
    env[CONFIG_VARIABLE] = base64.b64encode(yaml.safe_dump(config, sort_keys=True).encode()).decode()
    for n, entry in enumerate(definition.get("output") or []):
        env[f"OUTPUT_{n}"] = f"{entry['storage_provider']}:{entry['path']}"
    return env


def _spec(definition: Mapping[str, Any]) -> FunctionSpec:
    from provisioner.aws.lambda_ import FunctionSpec

    return FunctionSpec(
        name=str(definition["name"]),
        image_uri=str(definition["image"]),
        role=str(definition["role"]),
        memory=int(definition["memory"]),
        timeout=int(definition["timeout"]),
        environment=_environment(definition),
        architectures=tuple(definition.get("architectures") or ("x86_64",)),
        description=str(definition.get("description") or ""),
    )


def definition_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """A function as AWS describes it (``get_function``), in the shape of :func:`lambda_definition`."""
    env = dict((config.get("Environment") or {}).get("Variables") or {})
    stored: dict[str, Any] = {}
    raw = env.pop(CONFIG_VARIABLE, None)
    if raw:
        try:
            loaded = yaml.safe_load(base64.b64decode(raw))
            stored = loaded if isinstance(loaded, dict) else {}
        except (ValueError, yaml.YAMLError):
            stored = {}
    for key in [k for k in env if k.startswith("OUTPUT_") and k[7:].isdigit()]:
        env.pop(key)
    arn = str(config.get("FunctionArn") or "")
    body: dict[str, Any] = {
        "name": config.get("FunctionName"),
        "image": config.get("ImageUri"),
        "role": config.get("Role"),
        "memory": config.get("MemorySize"),
        "timeout": config.get("Timeout"),
        "architectures": list(config.get("Architectures") or ["x86_64"]),
        "environment": {"variables": env},
        "input": stored.get("input") or [],
        "output": stored.get("output") or [],
        "region": arn.split(":")[3] if arn.count(":") >= 4 else None,
        "arn": arn,
        "state": config.get("State"),
    }
    if config.get("Description"):
        body["description"] = config["Description"]
    if stored.get("storage_providers"):
        body["storage_providers"] = stored["storage_providers"]
    return body


class LambdaBackend:
    """The engine's client for the pseudo-cluster ``aws``: the workflow's Lambda functions."""

    def __init__(
        self,
        names: tuple[str, ...],
        definitions: Mapping[str, Mapping[str, Any]],
        *,
        verify: bool | str,
        timeout: float,
        active_timeout: float = 300.0,
    ) -> None:
        self.names = names  # what to list: the FDL's functions and those the workflow owns
        self.definitions = definitions  # name -> desired definition (for credentials and region)
        self.verify = verify
        self.timeout = timeout
        self.active_timeout = active_timeout
        self._clients: dict[AwsAccess, LambdaClient] = {}

    def __enter__(self) -> LambdaBackend:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _client(self, definition: Mapping[str, Any] | None) -> LambdaClient:
        from provisioner.aws.lambda_ import LambdaClient

        access = aws_access(definition or {}, verify=self.verify)
        if access not in self._clients:
            self._clients[access] = LambdaClient(access, timeout=self.timeout)
        return self._clients[access]

    # --- what the engine asks of a cluster ------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {}  # no MinIO of its own

    def services(self) -> list[dict[str, Any]]:
        found = []
        for name in self.names:
            current = self.get_service(name)
            if current is not None:
                found.append(current)
        return found

    def get_service(self, name: str) -> dict[str, Any] | None:
        """The function as AWS has it, with the triggers of its desired inputs that are in place."""
        desired = self.definitions.get(name)
        config = self._client(desired).get_function(name)
        if config is None:
            return None
        current = definition_of(config)
        if desired is not None:
            current["triggers"] = self._present(desired, str(config.get("FunctionArn") or ""))
        return current

    def _present(self, desired: Mapping[str, Any], arn: str) -> list[str]:
        present = []
        for trigger, (ident, bucket, prefix, suffix) in _wanted(desired).items():
            store = self._store(desired, ident)
            try:
                found = [c for c in store.lambda_triggers(bucket) if c.get("Id") == trigger]
            finally:
                store.close()
            if any(str(c.get("LambdaFunctionArn")) == arn for c in found):
                present.append(_trigger_label(trigger, bucket, prefix, suffix))
        return sorted(present)

    def create_service(self, definition: Mapping[str, Any]) -> None:
        client = self._client(definition)
        client.create_function(_spec(definition))
        active = client.wait_active(str(definition["name"]), timeout=self.active_timeout)
        self._triggers(definition, str(active.get("FunctionArn") or ""), previous=None)

    def update_service(self, definition: Mapping[str, Any]) -> None:
        client = self._client(definition)
        name = str(definition["name"])
        current = client.get_function(name)
        if current is None:
            self.create_service(definition)
            return
        client.update_function(_spec(definition), current)
        active = client.wait_active(name, timeout=self.active_timeout)
        self._triggers(definition, str(active.get("FunctionArn") or ""), previous=definition_of(current))

    def delete_service(self, name: str) -> bool:
        client = self._client(self.definitions.get(name))
        current = client.get_function(name)
        if current is None:
            return False
        self._untrigger(definition_of(current), keep=set())
        return client.delete_function(name)

    def service_logs(self, name: str) -> dict[str, Any]:
        return {}  # Lambda keeps no jobs: its invocations are in CloudWatch (see logs())

    def logs(self, name: str, *, since_ms: int | None = None) -> list[str]:
        return self._client(self.definitions.get(name)).logs(name, since_ms=since_ms)

    # --- bucket notifications -------------------------------------------------------------------------------------

    def _store(self, definition: Mapping[str, Any], ident: str) -> S3Store:
        from provisioner.aws.s3 import S3Access, S3Store

        provider = ((definition.get("storage_providers") or {}).get("s3") or {}).get(ident) or {}
        access = S3Access(
            None,
            str(provider["access_key"]) if provider.get("access_key") else None,
            str(provider["secret_key"]) if provider.get("secret_key") else None,
            str(provider.get("region") or definition.get("region") or "us-east-1"),
            self.verify,
        )
        return S3Store(access, timeout=self.timeout)

    def _triggers(self, definition: Mapping[str, Any], arn: str, previous: Mapping[str, Any] | None) -> None:
        client = self._client(definition)
        wanted = _wanted(definition)
        for trigger, (ident, bucket, prefix, suffix) in wanted.items():
            client.allow_s3(str(definition["name"]), bucket)
            store = self._store(definition, ident)
            try:
                store.ensure_bucket(bucket)  # as OSCAR makes a service's input bucket (and SCAR a function's)
                store.set_lambda_trigger(bucket, trigger_id=trigger, function_arn=arn, prefix=prefix, suffix=suffix)
            finally:
                store.close()
        if previous is not None:
            self._untrigger(previous, keep={(b, t) for t, (_i, b, _p, _s) in wanted.items()})

    def _untrigger(self, definition: Mapping[str, Any], *, keep: set[tuple[str, str]]) -> None:
        for trigger, (ident, bucket, _prefix, _suffix) in _wanted(definition).items():
            if (bucket, trigger) in keep:
                continue
            store = self._store(definition, ident)
            try:
                store.remove_lambda_trigger(bucket, trigger)
            finally:
                store.close()
