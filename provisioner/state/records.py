"""What the state holds, whichever database holds it: the records, the journal's phases, and the pure rules every
backend applies before writing (no secrets, typed cluster fields, canonical JSON, UTC timestamps).

Shared by the embedded SQLite store (:mod:`provisioner.state.store`) and the PostgreSQL one
(:mod:`provisioner.state.pg`), so that both refuse the same things in the same words.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from provisioner.model import ClusterKind

# The schema version of every backend: the same tables, the same migrations (each backend has its own DDL for
# them, keyed by these numbers). Bump it for a new table or column, and for a new Phase (see store.py).
SCHEMA_VERSION = 6

# Compared with keys lower-cased and stripped of "_", "-", " " and ".": "Private-Key" matches "privatekey".
SECRET_NAME_FRAGMENTS = ("password", "passwd", "token", "secret", "privatekey")


class Phase(StrEnum):
    """What the tool did or saw, as recorded in the journal."""

    RENDERED = "rendered"  # the TOSCA template was rendered from the inputs
    SUBMITTING = "submitting"  # about to POST it to IM (an infrastructure may exist from here on)
    INFRA_ID_KNOWN = "infra_id_known"  # IM answered with the infrastructure id
    WAITING = "waiting"  # waiting for IM to finish configuring
    CONFIGURED = "configured"
    FAILED = "failed"
    UNCONFIGURED = "unconfigured"
    TIMED_OUT = "timed_out"  # the wait ran out of time; IM may still be working on it
    INTERRUPTED = "interrupted"  # the command was interrupted (Ctrl-C, SIGTERM) mid-operation
    SCALING = "scaling"
    SCALED = "scaled"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    ADOPTED = "adopted"  # an existing IM infrastructure was taken under management
    FORGOTTEN = "forgotten"  # the local record was removed without destroying the infrastructure
    # schema 2:
    REGISTERED = "registered"  # an edge cluster (K3s on the user's hosts, no IM) was recorded
    INSTALLING = "installing"  # the add-on playbooks started (components, run id)
    INSTALLED = "installed"
    INSTALL_FAILED = "install_failed"  # with the failing task and host
    AUTH_PUSHED = "auth_pushed"  # a fresh IM credential was pushed to the infrastructure (no secret recorded)
    # schema 4 (journal name "workflow:<name>"):
    WORKFLOW_APPLYING = "workflow_applying"  # the plan about to be sent (what each service will get)
    SERVICE_SENDING = "service_sending"  # about to POST/PUT/DELETE one service (it may exist from here on)
    SERVICE_DONE = "service_done"  # OSCAR answered that call
    SERVICE_FAILED = "service_failed"  # OSCAR refused it, or could not be reached
    WORKFLOW_APPLIED = "workflow_applied"
    WORKFLOW_DELETED = "workflow_deleted"
    # schema 5 (journal name "continuum:<name>"):
    CONTINUUM_UP = "continuum_up"  # an up started: the file, its clusters (id, kind) and its workflow
    CONTINUUM_STEP = "continuum_step"  # about to run one step of one cluster (create, install...) or the workflow
    CONTINUUM_STEP_DONE = "continuum_step_done"
    CONTINUUM_STEP_FAILED = "continuum_step_failed"  # with the error, its triage cause and the runbook to open
    CONTINUUM_UP_ENDED = "continuum_up_ended"  # the up's outcome: ok, the clusters that failed, the workflow's
    CONTINUUM_DOWN = "continuum_down"  # a down started (the workflow deleted, then the clusters)
    CONTINUUM_DELETED = "continuum_deleted"  # everything of the continuum gone, checked


@dataclass(frozen=True)
class ClusterRecord:
    """One cluster in the registry: where it lives in IM, how it was made (template, site, public inputs) and
    its last known state; never a secret."""

    name: str
    im_url: str
    infra_id: str | None
    template: str
    site: str
    inputs: dict[str, Any]
    inputs_hash: str
    deployment_id: str
    state: str | None
    workers: int | None
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any]
    kind: ClusterKind = ClusterKind.IM  # EDGE: K3s on the user's hosts, no IM (im_url and infra_id are empty)


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow applied by this tool: the FDL file it came from and the services it owns."""

    name: str
    source: str
    services: list[dict[str, Any]]  # {"cluster", "service", "digest"}: never a secret
    created_at: datetime
    updated_at: datetime

    def owns(self) -> set[tuple[str, str]]:
        return {(str(s["cluster"]), str(s["service"])) for s in self.services}


@dataclass(frozen=True)
class JournalEntry:
    """One step of a multi-step change, written before the step is sent (the cluster, the phase, the details)."""

    seq: int
    cluster: str
    phase: Phase
    ts: datetime
    detail: dict[str, Any]


@dataclass(frozen=True)
class DecisionEntry:
    """One scaling decision the autoscaler made for a cluster, and why."""

    seq: int
    cluster: str
    ts: datetime
    action: str
    detail: dict[str, Any]


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``inputs``: sorted keys, no whitespace, UTF-8."""
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def new_deployment_id() -> str:
    """A fresh deployment id (random UUID, 32 hex digits)."""
    return uuid.uuid4().hex


def check_no_secrets(value: Any, *, secret_keys: Collection[str] = (), what: str = "value") -> None:
    """Raise ``ValueError`` if ``value`` has, at any depth, a key in ``secret_keys`` or named like a secret."""
    banned = {key.casefold() for key in secret_keys}
    _check_no_secrets(value, banned, what, path="")


# --- reading ---------------------------------------------------------------------------------------------------------

# The columns every backend selects, in this order, for the readers below.
CLUSTER_COLUMNS = (
    "name, im_url, infra_id, template, site, inputs, inputs_hash, deployment_id, state, workers, created_at, "
    "updated_at, extra, kind"
)
WORKFLOW_COLUMNS = "name, source, services, created_at, updated_at"
JOURNAL_COLUMNS = "seq, cluster, phase, ts, detail"
DECISION_COLUMNS = "seq, cluster, ts, action, detail"


@dataclass(frozen=True)
class RowReader:
    """A backend's rows (the columns above, JSON as text) into records; ``when`` reads a stored timestamp into an
    aware datetime, ``error`` is raised for JSON of the wrong shape."""

    when: Callable[[Any], datetime]
    error: type[Exception]

    def obj(self, text: str) -> dict[str, Any]:
        return decode_object(text, self.error)

    def cluster(self, row: Sequence[Any]) -> ClusterRecord:
        name, im_url, infra_id, template, site, inputs, digest, deployment_id, state, workers = row[:10]
        created, updated, extra, kind = row[10:]
        return ClusterRecord(
            name=name,
            im_url=im_url,
            infra_id=infra_id,
            template=template,
            site=site,
            inputs=self.obj(inputs),
            inputs_hash=digest,
            deployment_id=deployment_id,
            state=state,
            workers=workers,
            created_at=self.when(created),
            updated_at=self.when(updated),
            extra=self.obj(extra),
            kind=ClusterKind(kind),
        )

    def workflow(self, row: Sequence[Any]) -> WorkflowRecord:
        name, source, services, created, updated = row
        listed = json.loads(services)
        if not isinstance(listed, list):
            raise self.error("expected a JSON list of services in the state database")
        return WorkflowRecord(
            name=name,
            source=source,
            services=[dict(item) for item in listed],
            created_at=self.when(created),
            updated_at=self.when(updated),
        )

    def entry(self, row: Sequence[Any]) -> JournalEntry:
        seq, cluster, phase, ts, detail = row
        return JournalEntry(
            seq=int(seq), cluster=cluster, phase=Phase(phase), ts=self.when(ts), detail=self.obj(detail)
        )

    def decision(self, row: Sequence[Any]) -> DecisionEntry:
        seq, cluster, ts, action, detail = row
        return DecisionEntry(int(seq), str(cluster), self.when(ts), str(action), self.obj(detail))


# --- writing ---------------------------------------------------------------------------------------------------------

# Columns update_cluster may set, with the Python types they accept.
UPDATABLE: dict[str, tuple[type, ...]] = {
    "im_url": (str,),
    "infra_id": (str, type(None)),
    "template": (str,),
    "site": (str,),
    "inputs": (Mapping,),
    "inputs_hash": (str,),
    "deployment_id": (str,),
    "state": (str, type(None)),
    "workers": (int, type(None)),
    "kind": (str,),
    "extra": (Mapping,),
}
JSON_COLUMNS = frozenset({"inputs", "extra"})


def require_name(name: object, what: str = "cluster") -> str:
    """``name`` if it is a non-empty string (``ValueError`` otherwise: a programming error)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string, not {name!r}")
    return name


def upsert_fields(
    *,
    im_url: str,
    template: str,
    site: str,
    inputs: Mapping[str, Any],
    deployment_id: str,
    infra_id: str | None,
    state: str | None,
    workers: int | None,
    extra: Mapping[str, Any] | None,
    inputs_hash: str | None,
    secret_keys: Collection[str],
    kind: ClusterKind,
) -> dict[str, Any]:
    """The checked columns of an upsert (``extra`` is ``None`` when the current one is to be kept)."""
    fields: dict[str, Any] = {
        "im_url": im_url,
        "infra_id": infra_id,
        "template": template,
        "site": site,
        "inputs": inputs,
        "inputs_hash": _digest(inputs) if inputs_hash is None else inputs_hash,
        "deployment_id": deployment_id,
        "state": state,
        "workers": workers,
        "kind": ClusterKind(kind).value,
    }
    if extra is not None:
        fields["extra"] = extra
    params = encode_cluster_fields(fields, secret_keys)
    params.setdefault("extra", None)
    return params


def update_fields(fields: dict[str, Any], secret_keys: Collection[str]) -> dict[str, Any]:
    """The checked columns of an update_cluster: known, writable, typed; new inputs get their hash."""
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise ValueError(f"update_cluster: unknown or read-only field(s): {', '.join(unknown)}")
    if "inputs" in fields and "inputs_hash" not in fields:
        fields["inputs_hash"] = _digest(fields["inputs"])
    return encode_cluster_fields(fields, secret_keys)


def encode_cluster_fields(fields: Mapping[str, Any], secret_keys: Collection[str]) -> dict[str, Any]:
    """Type-check cluster fields, refuse secrets in the JSON ones and turn those into canonical JSON text."""
    params: dict[str, Any] = {}
    for column, given in fields.items():
        value: Any = given
        accepted = UPDATABLE[column]
        if not isinstance(given, accepted) or isinstance(given, bool):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in accepted)
            raise ValueError(f"cluster field {column!r} must be {names}, not {type(value).__name__}")
        if column in JSON_COLUMNS:
            check_no_secrets(value, secret_keys=secret_keys if column == "inputs" else (), what=column)
            value = canonical_json(dict(value))
        elif column == "workers" and value is not None and value < 0:
            raise ValueError(f"workers must be >= 0, not {value}")
        params[column] = value
    return params


def checked_detail(detail: Mapping[str, Any] | None, what: str) -> str:
    """A journal or decision detail as canonical JSON, refused if it holds a secret."""
    checked = dict(detail or {})
    check_no_secrets(checked, what=what)
    return canonical_json(checked)


def checked_services(services: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A workflow's owned services, refused if they hold a secret."""
    listed = [dict(item) for item in services]
    check_no_secrets(listed, what="workflow services")
    return listed


def utc_now(clock: Callable[[], datetime]) -> datetime:
    """The store clock's time in UTC (it must give aware datetimes)."""
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the store's clock must return aware datetimes")
    return now.astimezone(UTC)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_object(text: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The JSON object in ``text``; ``error`` if it is something else."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise error(f"expected a JSON object in the state database, found {type(value).__name__}")
    return value


def _digest(inputs: Mapping[str, Any]) -> str:
    return inputs_hash(inputs)


def _check_no_secrets(value: Any, banned: set[str], what: str, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _looks_secret(key, banned):
                raise ValueError(f"{what} must not hold secrets, but has key {where!r}")
            _check_no_secrets(item, banned, what, where)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_no_secrets(item, banned, what, f"{path}[{index}]")


def _looks_secret(key: str, banned: set[str]) -> bool:
    if key.casefold() in banned:
        return True
    squashed = key.casefold()
    for separator in ("_", "-", " ", "."):
        squashed = squashed.replace(separator, "")
    return any(fragment in squashed for fragment in SECRET_NAME_FRAGMENTS)
