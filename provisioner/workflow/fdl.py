"""OSCAR's Functions Definition Language (FDL, OSCAR v4.1): read, checked field by field, normalized (pure).

:func:`parse_fdl` takes the file's text (no disk, no network) and gives an :class:`Fdl`: one :class:`Stage` per
entry of ``functions.oscar`` with the service definition OSCAR will be sent (without the script's text, which the
caller reads), the storage providers and clusters the file defines, and the warnings. Every refusal is a
:class:`Problem` rendered ``FILE:LINE: path.to.field: rule``; all of them are raised together as
:class:`~provisioner.errors.FdlInvalid` (exit 2).

What OSCAR accepts is accepted: ``environment.Variables`` (SCAR's spelling) is read as ``variables``, numbers
and booleans where OSCAR's types want text (``cpu: 1.0``, an environment value ``false``) become text, CRLF line
ends, tabs after values. An unknown key close to a known one is a typo and refused, with the known name
suggested; one close to none is ignored by OSCAR, so it is left out with a warning. The service-level
``replicas``, ``rescheduler_threshold`` and ``delegation`` (moved into ``federation`` in 2026) are accepted with a
warning naming the replacement, and sent where OSCAR v4.1 reads them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import FdlInvalid, InputError
from provisioner.yamlfile import YamlPath, dotted, parse_yaml_located
from provisioner.yamlfile import type_name as _type_name

__all__ = [
    "AWS",
    "MAX_SERVICE_NAME",
    "STORAGE_KINDS",
    "Fdl",
    "IOSpec",
    "Problem",
    "Stage",
    "parse_fdl",
]

AWS = "aws"  # the cluster id of AWS Lambda stages (an OSCAR cluster may not be called so when there are any)
MAX_SERVICE_NAME = 39  # OSCAR: binding:"required,max=39,min=1" (a Kubernetes name with suffixes added)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Kubernetes resource quantity (k8s.io/apimachinery resource.Quantity): a decimal with an optional exponent or
# a binary/decimal suffix.
QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3 bucket naming rules, as MinIO applies them
STORAGE_KINDS = ("minio", "s3", "onedata", "webdav", "rucio")
OWN_MINIO = ("minio", "minio.default")
DELEGATIONS = ("static", "random", "load-based", "topsis")
TYPO_CUTOFF = 0.75  # difflib ratio: "memroy" -> "memory" is a typo; "colour" next to nothing known is not


@dataclass(frozen=True)
class Problem:
    """One refusal or warning, where it is: ``line`` is 1-based (None when the file gives none)."""

    line: int | None
    field: str
    rule: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line if self.line is not None else '?'}: {self.field}: {self.rule}"


@dataclass(frozen=True)
class IOSpec:
    """An ``input``/``output``/``mount`` entry: ``provider`` as written, resolved to (kind, id)."""

    provider: str
    kind: str  # minio, s3, onedata, webdav, rucio
    ref: str  # the provider id; for the cluster's own MinIO, "default"
    path: str
    suffix: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    line: int | None = None

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def key_prefix(self) -> str:
        """The object key prefix under the bucket ("" for the whole bucket)."""
        rest = self.path.split("/", 1)[1] if "/" in self.path else ""
        return rest.strip("/")

    @property
    def own(self) -> bool:
        return self.kind == "minio" and self.ref == "default"

    def target(self, cluster: str) -> tuple[str, str]:
        """The store this entry reads or writes, as (kind, id): the cluster's own MinIO is (minio, <cluster>)."""
        return (self.kind, cluster if self.own else self.ref)


@dataclass(frozen=True)
class Stage:
    """One entry of ``functions.oscar`` (the service ``name`` on cluster ``cluster``) or of ``functions.aws`` (the
    Lambda function ``name``; its ``cluster`` is :data:`AWS`)."""

    index: int
    cluster: str
    name: str
    definition: dict[str, Any]  # what OSCAR is sent, normalized (no script text yet; no cluster_id); for a
    # Lambda function: the lambda: mapping, normalized, with iam: under "iam"
    script: str | None  # the script's path as written (relative to the FDL); a Lambda's init_script
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    line: int | None
    where: str  # functions.oscar[0].edge, functions.aws[0].lambda

    @property
    def is_lambda(self) -> bool:
        return self.cluster == AWS

    @property
    def key(self) -> tuple[str, str]:
        return (self.cluster, self.name)

    @property
    def label(self) -> str:
        return f"{self.cluster}/{self.name}"

    def field_line(self, lines: Mapping[YamlPath, int], *names: str) -> int | None:
        return lines.get((*self.path, *names), self.line)

    @property
    def path(self) -> YamlPath:
        if self.is_lambda:
            return ("functions", "aws", self.index, "lambda")
        return ("functions", "oscar", self.index, self.cluster)


@dataclass(frozen=True)
class Fdl:
    """A checked FDL."""

    filename: str
    stages: tuple[Stage, ...]
    storage_providers: dict[str, dict[str, dict[str, Any]]]  # kind -> id -> settings (credentials inside)
    clusters: dict[str, dict[str, Any]]  # id -> {endpoint, auth_user, auth_password, ssl_verify}
    aws: tuple[dict[str, Any], ...]
    warnings: tuple[Problem, ...]
    lines: dict[YamlPath, int] = field(repr=False)

    @property
    def cluster_ids(self) -> tuple[str, ...]:
        """The clusters the stages run on, in first-use order."""
        return tuple(dict.fromkeys(stage.cluster for stage in self.stages))

    def secrets(self) -> list[str]:
        """Every credential the file holds (to register for masking before anything is shown)."""
        found: list[str] = []
        for providers in self.storage_providers.values():
            for settings in providers.values():
                found += [str(v) for k, v in settings.items() if _secret_field(k) and v]
        for cluster in self.clusters.values():
            found += [str(v) for k, v in cluster.items() if _secret_field(k) and v]
        for stage in self.stages:
            found += [str(v) for v in stage.definition.get("environment", {}).get("secrets", {}).values() if v]
        return found


def _secret_field(key: str) -> bool:
    return key in ("access_key", "secret_key", "token", "password", "auth_password", "refresh_token", "oidc_token")


# --- the schema ---------------------------------------------------------------------------------------------------

Check = Callable[["_Walk", YamlPath, Any], Any]  # returns the normalized value, or _BAD after noting a problem
_BAD = object()


class _Walk:
    """One pass over a document: problems and warnings, with the line of each path."""

    def __init__(self, filename: str, lines: dict[YamlPath, int]) -> None:
        self.filename = filename
        self.lines = lines
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.stage_clusters: set[str] = set()  # every entry's cluster id, its service valid or not

    def line(self, path: YamlPath) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)  # the whole document (an empty one too) starts at line 1

    def bad(self, path: YamlPath, rule: str) -> object:
        self.problems.append(Problem(self.line(path), dotted(path) or "(top)", rule))
        return _BAD

    def warn(self, path: YamlPath, rule: str) -> None:
        self.warnings.append(Problem(self.line(path), dotted(path) or "(top)", rule))


def text(*, pattern: re.Pattern[str] | None = None, rule: str = "", scalar: bool = False) -> Check:
    """A text (``scalar``: numbers and booleans become text too, as Go's YAML reader does)."""

    def check(walk: _Walk, path: YamlPath, value: Any) -> Any:
        if scalar and isinstance(value, bool):
            value = "true" if value else "false"
        elif scalar and isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            return walk.bad(path, f"must be a text, got {_type_name(value)}")
        if pattern is not None and not pattern.match(value):
            return walk.bad(path, rule)
        return value

    return check


def boolean(walk: _Walk, path: YamlPath, value: Any) -> Any:
    if not isinstance(value, bool):
        return walk.bad(path, f"must be true or false, got {_type_name(value)}")
    return value


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(walk: _Walk, path: YamlPath, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return walk.bad(path, f"must be a whole number, got {_type_name(value)}")
        if minimum is not None and value < minimum:
            return walk.bad(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            return walk.bad(path, f"must be at most {maximum}, got {value}")
        return value

    return check


def quantity(example: str) -> Check:
    def check(walk: _Walk, path: YamlPath, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not QUANTITY.match(value.strip()):
            shown = value if isinstance(value, str) else _type_name(value)
            return walk.bad(path, f"must be a Kubernetes quantity such as {example}, got {shown!r}")
        return value.strip()

    return check


def one_of(*choices: str, fold: bool = False) -> Check:
    def check(walk: _Walk, path: YamlPath, value: Any) -> Any:
        if isinstance(value, str):
            for choice in choices:
                if value == choice or (fold and value.lower() == choice.lower()):
                    return choice
        shown = value if isinstance(value, str) else _type_name(value)
        return walk.bad(path, f"must be one of {', '.join(choices)}, got {shown!r}")

    return check


def list_of(item: Check) -> Check:
    def check(walk: _Walk, path: YamlPath, value: Any) -> Any:
        if not isinstance(value, list):
            return walk.bad(path, f"must be a list, got {_type_name(value)}")
        out = [item(walk, (*path, index), entry) for index, entry in enumerate(value)]
        return _BAD if any(entry is _BAD for entry in out) else out

    return check


def texts_or_one(walk: _Walk, path: YamlPath, value: Any) -> Any:
    """A list of texts; one text alone is taken as a list of one."""
    if isinstance(value, str):
        value = [value]
    return list_of(text(scalar=True))(walk, path, value)


def mapping_of(value_check: Check) -> Check:
    """A mapping with keys of the user's choosing (labels, environment variables)."""

    def check(walk: _Walk, path: YamlPath, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            return walk.bad(path, f"must be a mapping, got {_type_name(value)}")
        out = {str(k): value_check(walk, (*path, str(k)), v) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in out.values()) else out

    return check


def anything(walk: _Walk, path: YamlPath, value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Obj:
    """A mapping with known keys. ``aliases``: other spellings accepted (``Variables``); ``moved``: deprecated
    keys, with the replacement named in the warning; ``required``: keys that must be given."""

    fields: dict[str, Check]
    required: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    moved: dict[str, tuple[str, Check]] = field(default_factory=dict)
    nullable: bool = True

    def __call__(self, walk: _Walk, path: YamlPath, value: Any) -> Any:
        if value is None and self.nullable:
            value = {}
        if not isinstance(value, dict):
            return walk.bad(path, f"must be a mapping, got {_type_name(value)}")
        out: dict[str, Any] = {}
        failed = False
        suggested: set[str] = set()  # known keys a typo was taken for: not also reported missing
        for raw_key, item in value.items():
            key = str(raw_key)
            where = (*path, key)
            name = self.aliases.get(key, key)
            if name in self.moved:
                replacement, moved_check = self.moved[name]
                walk.warn(where, f"deprecated: write it as {replacement} (OSCAR v4.1 reads it there)")
                result = moved_check(walk, where, item)
                failed = failed or result is _BAD
                out[name] = result
                continue
            check = self.fields.get(name)
            if check is None:
                close = difflib.get_close_matches(key, [*self.fields, *self.moved], n=1, cutoff=TYPO_CUTOFF)
                if close:
                    walk.bad(where, f"unknown key; did you mean {close[0]}?")
                    suggested.add(close[0])
                    failed = True
                else:
                    walk.warn(where, "unknown key, ignored by OSCAR (left out)")
                continue
            if name in out:
                walk.bad(where, f"given twice (also as {name})")
                failed = True
                continue
            if item is None and name not in self.required:
                continue  # an empty value: the default, as OSCAR reads it
            result = check(walk, where, item)
            if result is _BAD:
                failed = True
            else:
                out[name] = result
        for name in self.required:
            if name in suggested:
                continue
            if value.get(name) is None and not any(self.aliases.get(str(k)) == name for k in value):
                walk.bad((*path, name) if name in value else path, f"{name} is required")
                failed = True
        return _BAD if failed else out


def _replica(walk: _Walk, path: YamlPath, value: Any) -> Any:
    return Obj(
        {
            "type": one_of("oscar", "endpoint"),
            "cluster_id": text(),
            "service_name": text(),
            "url": text(),
            "ssl_verify": boolean,
            "priority": integer(0),
            "headers": mapping_of(text(scalar=True)),
        }
    )(walk, path, value)


def _storage_ref(walk: _Walk, path: YamlPath, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        return walk.bad(path, f"must be a storage provider such as minio or minio.<id>, got {_type_name(value)}")
    kind = value.split(".", 1)[0]
    if kind not in STORAGE_KINDS:
        close = difflib.get_close_matches(kind, STORAGE_KINDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return walk.bad(path, f"unknown storage provider type {kind!r} (one of {', '.join(STORAGE_KINDS)}){hint}")
    if "." not in value and kind != "minio":
        return walk.bad(path, f"{kind} needs the provider's id: {kind}.<id> (from storage_providers.{kind})")
    return value


def _io_path(walk: _Walk, path: YamlPath, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip("/ "):
        return walk.bad(path, f"must be a path such as bucket/folder, got {_type_name(value)}")
    bucket = value.strip("/").split("/", 1)[0]
    if not BUCKET.match(bucket) or ".." in bucket:
        return walk.bad(
            path, f"bucket {bucket!r} breaks the bucket naming rules (3-63 lowercase letters, digits, '.', '-')"
        )
    return value.strip("/")


IO = Obj(
    {
        "storage_provider": _storage_ref,
        "path": _io_path,
        "suffix": texts_or_one,
        "prefix": texts_or_one,
        "options": text(),
    },
    required=("storage_provider", "path"),
)

SERVICE = Obj(
    {
        "name": text(
            pattern=re.compile(rf"^(?=.{{1,{MAX_SERVICE_NAME}}}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
            rule=(
                f"must be a DNS-1123 label of at most {MAX_SERVICE_NAME} characters "
                "(lowercase letters, digits and '-', starting and ending with a letter or digit)"
            ),
        ),
        "cluster_id": text(),
        "image": text(pattern=re.compile(r"^\S+$"), rule="must be a container image reference (no spaces)"),
        "script": text(),
        "memory": quantity("256Mi or 1Gi"),
        "cpu": quantity("0.5 or 500m"),
        "total_memory": quantity("4Gi"),
        "total_cpu": quantity("2"),
        "ephemeral_storage_request": quantity("1Gi"),
        "enable_gpu": boolean,
        "enable_sgx": boolean,
        "image_prefetch": boolean,
        "synchronous": Obj({"min_scale": integer(0), "max_scale": integer(0)}),
        "expose": Obj(
            {
                "min_scale": integer(0),
                "max_scale": integer(0),
                "api_port": list_of(integer(1, 65535)),
                "cpu_threshold": integer(1, 100),
                "nodePort": list_of(integer(30000, 32767)),
                "set_auth": boolean,
                "auth_type": one_of("basic", "token", "oidc"),
                "rewrite_target": boolean,
                "default_command": boolean,
                "health_path": text(),
                "probe_mode": one_of("legacy", "http", "tcp", "none"),
            }
        ),
        "federation": Obj(
            {
                "group_id": text(),
                "topology": one_of("none", "star", "mesh"),
                "delegation": one_of(*DELEGATIONS),
                "rescheduler_threshold": integer(0),
                "members": list_of(_replica),
            }
        ),
        "log_level": one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", fold=True),
        "alpine": boolean,
        "token": text(),
        "file_stage_in": boolean,
        "image_pull_secrets": texts_or_one,
        "environment": Obj(
            {"variables": mapping_of(text(scalar=True)), "secrets": mapping_of(text(scalar=True))},
            aliases={"Variables": "variables", "Secrets": "secrets"},
        ),
        "annotations": mapping_of(text(scalar=True)),
        "labels": mapping_of(text(scalar=True)),
        "input": list_of(IO),
        "output": list_of(IO),
        "vo": text(),
        "visibility": one_of("private", "restricted", "public"),
        "allowed_users": texts_or_one,
        "isolation_level": one_of("SERVICE", "USER", fold=True),
        "mount": Obj({"storage_provider": _storage_ref, "path": text(), "options": text()}),
        "volume": Obj(
            {"name": text(), "size": quantity("1Gi"), "mount_path": text(), "lifecycle_policy": text()},
        ),
        "kserve": mapping_of(anything),
        "interlink_node_name": text(),
        "storage_providers": mapping_of(anything),
        "clusters": mapping_of(anything),
    },
    required=("name", "image"),
    moved={
        "replicas": ("federation.members", list_of(_replica)),
        "rescheduler_threshold": ("federation.rescheduler_threshold", integer(0)),
        "delegation": ("federation.delegation", one_of(*DELEGATIONS)),
    },
)

_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
PROVIDERS: dict[str, Obj] = {
    "minio": Obj(
        {
            "endpoint": text(pattern=_URL, rule="must be an http(s) URL"),
            "verify": boolean,
            "access_key": text(scalar=True),
            "secret_key": text(scalar=True),
            "region": text(),
        }
    ),
    "s3": Obj({"access_key": text(scalar=True), "secret_key": text(scalar=True), "region": text()}),
    "onedata": Obj({"oneprovider_host": text(), "token": text(), "space": text()}),
    "webdav": Obj({"hostname": text(), "login": text(), "password": text(scalar=True)}),
    "rucio": Obj(
        {
            "host": text(),
            "account": text(),
            "rse": text(),
            "refresh_token": text(),
            "auth_host": text(),
            "oidc_audience": text(),
            "token_endpoint": text(),
        }
    ),
}
CLUSTER = Obj(
    {
        "endpoint": text(pattern=_URL, rule="must be an http(s) URL"),
        "auth_user": text(),
        "auth_password": text(scalar=True),
        "oidc_token": text(),
        "ssl_verify": boolean,
    }
)
ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")


# --- the document -------------------------------------------------------------------------------------------------


def parse_fdl(text_: str, filename: str, *, known_clusters: frozenset[str] = frozenset()) -> Fdl:
    """The FDL in ``text_`` checked; ``known_clusters``: ids usable as ``minio.<id>`` besides the file's own.

    Raises :class:`~provisioner.errors.FdlInvalid` with every problem found (each a ``FILE:LINE`` line)."""
    # Go's YAML reader takes a tab after a value; PyYAML does not. Tabs at line ends carry nothing: dropped.
    cleaned = re.sub(r"[ \t]*\t[ \t]*(?=\r?$)", "", text_, flags=re.MULTILINE)
    try:
        data, lines = parse_yaml_located(cleaned, label=filename, field="(file)")
    except InputError as exc:
        raise FdlInvalid([exc.message]) from None
    walk = _Walk(filename, lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        walk.bad((), f"an FDL must be a mapping with functions:, got {_type_name(data)}")
        raise FdlInvalid([p.render(filename) for p in walk.problems])
    top = Obj(
        {"functions": anything, "storage_providers": anything, "clusters": anything},
        required=("functions",),
    )
    top(walk, (), data)
    providers = _providers(walk, data.get("storage_providers"))
    clusters = _clusters(walk, data.get("clusters"))
    stages, aws = _functions(walk, data.get("functions"))
    if stages is not None:
        _check_references(walk, stages, providers, clusters, known_clusters)
        _check_names(walk, stages)
    if walk.problems:
        ordered = sorted(walk.problems, key=lambda p: (p.line or 0, p.field))
        raise FdlInvalid([p.render(filename) for p in ordered])
    return Fdl(
        filename=filename,
        stages=tuple(stages or ()),
        storage_providers=providers,
        clusters=clusters,
        aws=tuple(aws),
        warnings=tuple(sorted(walk.warnings, key=lambda p: (p.line or 0, p.field))),
        lines=lines,
    )


def _providers(walk: _Walk, value: Any) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if value is None:
        return out
    path: YamlPath = ("storage_providers",)
    if not isinstance(value, dict):
        walk.bad(path, f"must be a mapping of provider types ({', '.join(STORAGE_KINDS)}), got {_type_name(value)}")
        return out
    for kind, entries in value.items():
        kind = str(kind)
        if kind not in PROVIDERS:
            close = difflib.get_close_matches(kind, STORAGE_KINDS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            walk.bad((*path, kind), f"unknown storage provider type (one of {', '.join(STORAGE_KINDS)}){hint}")
            continue
        if entries is None:
            continue
        if not isinstance(entries, dict):
            walk.bad((*path, kind), f"must be a mapping of provider ids, got {_type_name(entries)}")
            continue
        for ident, settings in entries.items():
            ident = str(ident)
            where = (*path, kind, ident)
            if not ID.match(ident):
                walk.bad(where, "a provider id is letters, digits, '_', '.' and '-'")
                continue
            result = PROVIDERS[kind](walk, where, settings)
            if result is not _BAD:
                out.setdefault(kind, {})[ident] = result
    return out


def _clusters(walk: _Walk, value: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if value is None:
        return out
    path: YamlPath = ("clusters",)
    if not isinstance(value, dict):
        walk.bad(path, f"must be a mapping of cluster ids, got {_type_name(value)}")
        return out
    for ident, settings in value.items():
        ident = str(ident)
        if not ID.match(ident):
            walk.bad((*path, ident), "a cluster id is letters, digits, '_', '.' and '-'")
            continue
        result = CLUSTER(walk, (*path, ident), settings)
        if result is not _BAD:
            out[ident] = result
    return out


def _functions(walk: _Walk, value: Any) -> tuple[list[Stage] | None, list[dict[str, Any]]]:
    path: YamlPath = ("functions",)
    if value is None:
        return None, []  # "functions is required" was said by the top level
    if not isinstance(value, dict):
        walk.bad(path, f"must be a mapping with oscar: (and aws:), got {_type_name(value)}")
        return None, []
    Obj({"oscar": anything, "aws": anything})(walk, path, value)
    aws = value.get("aws") or []
    lambdas: list[Stage] = []
    if not isinstance(aws, list):
        walk.bad((*path, "aws"), f"must be a list of {{lambda: ..., iam: ...}} entries, got {_type_name(aws)}")
        aws = []
    for index, entry in enumerate(aws):
        made = _lambda(walk, index, entry)
        if made is not None:
            lambdas.append(made)
    entries = value.get("oscar")
    if entries is None:
        if not aws:
            walk.bad((*path, "oscar"), "no services: functions.oscar lists {CLUSTER_ID: service} entries")
        return lambdas, list(aws)
    if not isinstance(entries, list):
        walk.bad((*path, "oscar"), f"must be a list of {{CLUSTER_ID: service}} entries, got {_type_name(entries)}")
        return None, list(aws)
    stages: list[Stage] = []
    for index, entry in enumerate(entries):
        where: YamlPath = (*path, "oscar", index)
        if not isinstance(entry, dict) or len(entry) != 1:
            got = f"{len(entry)} keys" if isinstance(entry, dict) else _type_name(entry)
            walk.bad(where, f"each entry is one {{CLUSTER_ID: service}} mapping, got {got}")
            continue
        ((cluster, body),) = entry.items()
        cluster = str(cluster)
        walk.stage_clusters.add(cluster)
        if not ID.match(cluster):
            walk.bad((*where, cluster), "a cluster id is letters, digits, '_', '.' and '-'")
            continue
        if cluster == AWS and aws:
            walk.bad((*where, cluster), f"cluster id {AWS!r} names the AWS Lambda functions of this file: rename it")
            continue
        stage = _stage(walk, index, cluster, body)
        if stage is not None:
            stages.append(stage)
    return stages + lambdas, list(aws)


def _stage(walk: _Walk, index: int, cluster: str, body: Any) -> Stage | None:
    where: YamlPath = ("functions", "oscar", index, cluster)
    if body is None:
        walk.bad(where, "the service definition is empty (name and image are required)")
        return None
    result = SERVICE(walk, where, body)
    if result is _BAD:
        return None
    definition: dict[str, Any] = dict(result)
    given_id = definition.pop("cluster_id", None)
    if given_id is not None and given_id != cluster:
        walk.warn((*where, "cluster_id"), f"OSCAR is told cluster_id {cluster} (the entry's key), not {given_id}")
    if "token" in definition:
        definition.pop("token")
        walk.warn((*where, "token"), "OSCAR makes the service's token itself (left out)")
    _move_deprecated(definition)
    script = definition.pop("script", None)
    inputs = tuple(_io(walk, (*where, "input", i), e) for i, e in enumerate(definition.get("input", [])))
    outputs = tuple(_io(walk, (*where, "output", i), e) for i, e in enumerate(definition.get("output", [])))
    return Stage(
        index=index,
        cluster=cluster,
        name=definition["name"],
        definition=definition,
        script=script,
        inputs=inputs,
        outputs=outputs,
        line=walk.lines.get(where),
        where=dotted(where),
    )


# SCAR's function definition (scar/parser/cfgfile.py and its examples): what provision deploys with boto3.
IMAGE_URI = re.compile(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$")
LAMBDA = Obj(
    {
        "name": text(pattern=re.compile(r"^[A-Za-z0-9_-]{1,64}$"), rule="must be 1-64 letters, digits, '-' or '_'"),
        "memory": integer(128, 10240),
        "timeout": integer(1, 900),
        "description": text(),
        "environment": Obj({"variables": mapping_of(text(scalar=True))}, aliases={"Variables": "variables"}),
        "container": Obj(
            {
                "image": text(
                    pattern=IMAGE_URI,
                    rule="must be an image URI such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag "
                    "(building or pushing images is out of scope: push it first)",
                ),
                "create_image": boolean,
                "platform": text(),
                "environment": anything,
            },
            required=("image",),
        ),
        "init_script": text(),
        "input": list_of(IO),
        "output": list_of(IO),
        "architectures": list_of(one_of("x86_64", "arm64")),
        "file_system": anything,
        "vpc": anything,
        "execution_mode": one_of("lambda", "lambda-batch", "batch"),
        "runtime": text(),
        "log_level": text(),
        "log_type": text(),
        "invocation_type": text(),
        "layers": anything,
        "supervisor": anything,
        "tags": mapping_of(text(scalar=True)),
        "ephemeral_storage": integer(512, 10240),
        "region": text(),
    },
    required=("name", "container"),
)
LAMBDA_ENTRY = Obj(
    {
        "lambda": LAMBDA,
        "iam": Obj(
            {
                "role": text(
                    pattern=re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/\S+$"),
                    rule="must be an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
                ),
                "boundary_policy": text(),
            },
            required=("role",),
        ),
        "api_gateway": anything,
        "batch": anything,
        "cloudwatch": anything,
        "ecr": anything,
    },
    required=("lambda", "iam"),
)


def _lambda(walk: _Walk, index: int, entry: Any) -> Stage | None:
    where: YamlPath = ("functions", "aws", index)
    result = LAMBDA_ENTRY(walk, where, entry)
    if result is _BAD:
        return None
    definition: dict[str, Any] = dict(result["lambda"])
    definition["iam"] = dict(result["iam"])
    if definition.get("execution_mode", "lambda") != "lambda":
        walk.bad((*where, "lambda", "execution_mode"), "only lambda is deployed by provision (not AWS Batch)")
        return None
    here = (*where, "lambda")
    inputs = tuple(_io(walk, (*here, "input", i), e) for i, e in enumerate(definition.get("input", [])))
    outputs = tuple(_io(walk, (*here, "output", i), e) for i, e in enumerate(definition.get("output", [])))
    for i, spec in enumerate(inputs):
        if spec.kind != "s3":
            walk.bad((*here, "input", i, "storage_provider"), "a Lambda function is triggered by s3.<id> only")
    for i, spec in enumerate(outputs):
        if spec.own:
            walk.bad(
                (*here, "output", i, "storage_provider"),
                "a Lambda function has no MinIO of its own: name a cluster's, minio.<cluster-id>",
            )
    return Stage(
        index=index,
        cluster=AWS,
        name=definition["name"],
        definition=definition,
        script=definition.pop("init_script", None),
        inputs=inputs,
        outputs=outputs,
        line=walk.lines.get(here),
        where=dotted(here),
    )


def _move_deprecated(definition: dict[str, Any]) -> None:
    """The service-level keys of OSCAR before 2026, moved where v4.1 reads them (the given federation wins)."""
    replicas = definition.pop("replicas", None)
    threshold = definition.pop("rescheduler_threshold", None)
    delegation = definition.pop("delegation", None)
    if replicas is None and threshold is None and delegation is None:
        return
    federation = dict(definition.get("federation") or {})
    if replicas is not None:
        federation.setdefault("members", replicas)
    if threshold is not None:
        federation.setdefault("rescheduler_threshold", threshold)
    if delegation is not None:
        federation.setdefault("delegation", delegation)
    federation.setdefault("topology", "star")
    definition["federation"] = federation


def _io(walk: _Walk, path: YamlPath, entry: Mapping[str, Any]) -> IOSpec:
    provider = str(entry["storage_provider"])
    if provider in OWN_MINIO:
        kind, ref = "minio", "default"
    else:
        kind, _, ref = provider.partition(".")
    return IOSpec(
        provider=provider,
        kind=kind,
        ref=ref,
        path=str(entry["path"]),
        suffix=tuple(entry.get("suffix") or ()),
        prefix=tuple(entry.get("prefix") or ()),
        line=walk.lines.get(path),
    )


def _check_references(
    walk: _Walk,
    stages: list[Stage],
    providers: Mapping[str, Mapping[str, Any]],
    clusters: Mapping[str, Any],
    known: frozenset[str],
) -> None:
    """Every ``TYPE.ID`` resolves: to ``storage_providers.TYPE.ID``, or (MinIO) to a cluster the tool can reach."""
    reachable = set(known) | set(clusters) | walk.stage_clusters
    for stage in stages:
        for direction, specs in (("input", stage.inputs), ("output", stage.outputs)):
            for i, spec in enumerate(specs):
                if spec.own or spec.ref in providers.get(spec.kind, {}):
                    continue
                if spec.kind == "minio" and spec.ref in reachable:
                    continue
                path: YamlPath = (*stage.path, direction, i, "storage_provider")
                if spec.kind == "minio":
                    walk.bad(
                        path,
                        f"{spec.provider} resolves to nothing: no storage_providers.minio.{spec.ref} and no "
                        f"cluster {spec.ref!r} (in this file's stages or clusters:, or managed by provision)",
                    )
                else:
                    walk.bad(path, f"{spec.provider} resolves to nothing: no storage_providers.{spec.kind}.{spec.ref}")


def _check_names(walk: _Walk, stages: list[Stage]) -> None:
    seen: dict[tuple[str, str], Stage] = {}
    for stage in stages:
        first = seen.get(stage.key)
        if first is not None:
            walk.bad(
                (*stage.path, "name"),
                f"service {stage.name!r} is already defined on cluster {stage.cluster} "
                f"(line {first.line}); names are unique per cluster",
            )
        else:
            seen[stage.key] = stage
