"""What ``continuum up`` would do to each cluster, from the file, the registry and the continuum's journal (pure).

No network and no disk: the callers read the registry records, the kept secrets and the journal, and these
functions decide. ``plan`` and ``up`` share them, so what ``plan`` shows is what ``up`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from provisioner import tosca
from provisioner.continuum.spec import ContinuumSpec, Leg
from provisioner.errors import InputError
from provisioner.model import ClusterKind
from provisioner.state import ClusterRecord, JournalEntry, Phase

__all__ = [
    "Action",
    "Change",
    "LegPlan",
    "Member",
    "Membership",
    "Step",
    "changed_secret",
    "input_changes",
    "last_outcomes",
    "membership",
    "plan_leg",
    "since_last_down",
    "step_done_before",
]


class Step(StrEnum):
    """One step of a leg (or of the continuum), as journaled."""

    CLUSTER = "cluster"  # create or resume the IM cluster (Lifecycle.create, waiting until configured)
    ENDPOINT = "endpoint"  # record where its OSCAR answers
    INSTALL = "install"  # the add-ons (cluster install)
    PREFLIGHT = "preflight"  # an edge cluster's preflight (edge create --preflight: nothing recorded)
    EDGE = "edge"  # an edge cluster recorded and K3s with its add-ons installed (edge create)
    WORKFLOW = "workflow"  # the workflow applied
    WORKFLOW_DELETE = "workflow-delete"
    DESTROY = "destroy"  # an IM cluster destroyed (checked gone from IM), an edge cluster forgotten


class Action(StrEnum):
    """What up does with a cluster."""

    CREATE = "create"  # not in the registry: created (or IM's infrastructure of that name adopted)
    RESUME = "resume"  # recorded, its create interrupted before IM answered: found by its deployment id
    EXISTS = "exists"  # recorded with the same template, site and inputs: checked in IM, nothing sent
    CHANGED = "changed"  # recorded with other inputs: up refuses (scale or destroy it first)
    CONFLICT = "conflict"  # the name is taken by a cluster of the other kind
    PREFLIGHT = "preflight"  # an edge preflight to run
    PASSED = "preflight-passed"  # passed before with the same inventory, inputs and components: not run again
    INSTALL = "install"  # an edge cluster to record and install (or to install again: something changed)
    INSTALLED = "installed"  # an edge cluster installed before with the same inventory, inputs and components


@dataclass(frozen=True)
class Change:
    """One field on which a recorded cluster differs from the continuum file: its template, site or an input (a
    secret's values shown as ``***``)."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class LegPlan:
    """What ``up`` does to one cluster of the file (:func:`plan_leg`), as ``continuum plan`` shows it; with a
    refusal, ``up`` stops before anything is sent."""

    id: str
    kind: str  # im | edge
    action: Action
    state: str | None = None  # the registry's last known state
    changes: list[Change] = field(default_factory=list)
    install: list[str] = field(default_factory=list)  # the add-ons up installs (with their dependencies)
    installed: list[str] = field(default_factory=list)  # what the record says the cluster has
    endpoint: str | None = None  # the OSCAR URL up records (None: nothing to record)
    note: str = ""
    refusal: str | None = None  # why up refuses to go on (exit 2, nothing sent)

    def doc(self) -> dict[str, Any]:
        out = asdict(self)
        out["action"] = self.action.value
        return out


def input_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], *, template: tuple[str, str], site: tuple[str, str]
) -> list[Change]:
    """Field by field, what differs between a recorded cluster and the file: template, site, each input."""
    changes = []
    if template[0] != template[1]:
        changes.append(Change("template", template[0], template[1]))
    if site[0] != site[1]:
        changes.append(Change("site", site[0], site[1]))
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changes.append(Change(f"inputs.{key}", before.get(key), after.get(key)))
    return changes


def changed_secret(leg: Leg, kept: Mapping[str, str]) -> str | None:
    """The first secret input given with another value than the one kept for the cluster (which IM holds)."""
    if not kept:
        return None
    schema = tosca.load_schema(leg.template)
    for name in sorted(leg.secrets_given):
        if name not in kept or name not in schema.inputs:
            continue
        spec = schema.inputs[name]
        try:
            if spec.parse(leg.inputs[name]) != spec.parse(kept[name]):
                return name
        except InputError:
            continue
    return None


def step_done_before(entries: Iterable[JournalEntry], cluster: str, step: Step, digest: str) -> JournalEntry | None:
    """The latest ``step`` of ``cluster`` done with ``digest`` among ``entries`` (see :func:`since_last_down`)."""
    found = None
    for entry in entries:
        detail = entry.detail
        if (
            entry.phase == Phase.CONTINUUM_STEP_DONE
            and detail.get("cluster") == cluster
            and detail.get("step") == step.value
            and detail.get("digest") == digest
        ):
            found = entry
    return found


def since_last_down(entries: Sequence[JournalEntry]) -> list[JournalEntry]:
    """The journal entries after the continuum was last taken down (all of them if it never was)."""
    for index in range(len(entries) - 1, -1, -1):
        if entries[index].phase == Phase.CONTINUUM_DELETED:
            return list(entries[index + 1 :])
    return list(entries)


def plan_leg(
    leg: Leg,
    record: ClusterRecord | None,
    *,
    kept_secrets: Mapping[str, str],
    entries: Sequence[JournalEntry],
) -> LegPlan:
    """What up does with ``leg`` given its registry ``record``, the secrets kept for it and the continuum's journal
    since it was last taken down."""
    installed = list(record.extra.get("components") or []) if record is not None else []
    if leg.kind is ClusterKind.IM:
        return _plan_im(leg, record, kept_secrets, installed)
    if record is not None and record.kind is not ClusterKind.EDGE:
        return LegPlan(
            leg.id,
            "edge",
            Action.CONFLICT,
            record.state,
            refusal=f"cluster {leg.id!r} exists and is an IM cluster, not an edge one",
        )
    if leg.preflight:
        passed = step_done_before(entries, leg.id, Step.PREFLIGHT, leg.digest)
        if passed is not None:
            at = passed.ts.strftime("%Y-%m-%d %H:%M:%S")
            return LegPlan(
                leg.id,
                "edge",
                Action.PASSED,
                None,
                install=[],
                note=f"passed at {at} UTC with the same inventory, inputs and components: not run again",
            )
        return LegPlan(
            leg.id,
            "edge",
            Action.PREFLIGHT,
            None,
            install=leg.chosen(),
            note="the roles' checks only: nothing is installed or recorded",
        )
    endpoint = (
        leg.oscar_url if leg.oscar_url and (record is None or record.extra.get("oscar_url") != leg.oscar_url) else None
    )
    done = step_done_before(entries, leg.id, Step.EDGE, leg.digest)
    if record is not None and record.state == "installed" and done is not None:
        return LegPlan(leg.id, "edge", Action.INSTALLED, record.state, installed=installed, endpoint=endpoint)
    note = "K3s, then the add-ons" if leg.components else "K3s only"
    if record is not None:
        note += " (again: the cluster is recorded, its last install did not finish or something changed)"
    return LegPlan(
        leg.id,
        "edge",
        Action.INSTALL,
        record.state if record else None,
        install=leg.chosen(),
        installed=installed,
        endpoint=endpoint,
        note=note,
    )


def _plan_im(leg: Leg, record: ClusterRecord | None, kept: Mapping[str, str], installed: list[str]) -> LegPlan:
    endpoint = (
        leg.oscar_url if leg.oscar_url and (record is None or record.extra.get("oscar_url") != leg.oscar_url) else None
    )
    if record is None:
        note = ""
        if kept:
            note = "its secrets are kept from before: create adopts IM's infrastructure of that name if there is one"
        return LegPlan(leg.id, "im", Action.CREATE, None, install=leg.chosen(), endpoint=endpoint, note=note)
    if record.kind is not ClusterKind.IM:
        return LegPlan(
            leg.id,
            "im",
            Action.CONFLICT,
            record.state,
            refusal=f"cluster {leg.id!r} exists and is an edge cluster, not an IM one",
        )
    if record.inputs_hash != leg.fingerprint:
        changes = input_changes(
            record.inputs, leg.public, template=(record.template, leg.template), site=(record.site, leg.site)
        )
        what = "; ".join(f"{c.field}: {json.dumps(c.before)} -> {json.dumps(c.after)}" for c in changes[:5])
        return LegPlan(
            leg.id,
            "im",
            Action.CHANGED,
            record.state,
            changes=changes,
            installed=installed,
            refusal=f"cluster {leg.id!r} exists with other template, site or inputs ({what or 'inputs'}): "
            f"change it with provision cluster scale {leg.id} --workers N, or remove it first: "
            f"provision cluster destroy {leg.id}",
        )
    secret = changed_secret(leg, kept)
    if secret is not None:
        return LegPlan(
            leg.id,
            "im",
            Action.CHANGED,
            record.state,
            changes=[Change(f"inputs.{secret}", "***", "***")],
            installed=installed,
            refusal=f"cluster {leg.id!r} was created with another {secret} (kept, and held by "
            "IM); it is never overwritten: leave it out of the file, or destroy the cluster and create it again",
        )
    chosen = leg.chosen(record.inputs)
    install = chosen if chosen and not set(chosen) <= set(installed) else []
    action = Action.RESUME if record.infra_id is None else Action.EXISTS
    note = "its create was interrupted: found in IM by its deployment id, or sent" if record.infra_id is None else ""
    return LegPlan(
        leg.id, "im", action, record.state, install=install, installed=installed, endpoint=endpoint, note=note
    )


@dataclass(frozen=True)
class Member:
    """One cluster of a :class:`Membership`, as an ``up`` journaled it (a preflight-only edge cluster is never
    recorded in the registry)."""

    id: str
    kind: str  # im | edge
    preflight: bool = False

    @property
    def recorded(self) -> bool:
        return not (self.kind == ClusterKind.EDGE.value and self.preflight)


@dataclass(frozen=True)
class Membership:
    """What the latest ``up`` declared: the continuum's clusters and workflow (what status and down act on)."""

    name: str
    source: str
    members: tuple[Member, ...]
    workflow: str | None
    fdl: str | None
    seq: int  # the up's journal entry

    def ids(self) -> list[str]:
        return [m.id for m in self.members]


def membership(name: str, entries: Sequence[JournalEntry]) -> Membership | None:
    """The latest up's declaration, or None when there was none since the continuum was last taken down."""
    for entry in reversed(since_last_down(entries)):
        if entry.phase != Phase.CONTINUUM_UP:
            continue
        detail = entry.detail
        members = tuple(
            Member(str(m["id"]), str(m["kind"]), bool(m.get("preflight"))) for m in detail.get("clusters") or []
        )
        workflow = detail.get("workflow") or None
        fdl = detail.get("fdl") or None
        return Membership(name, str(detail.get("source") or ""), members, workflow, fdl, entry.seq)
    return None


def membership_of(spec: ContinuumSpec) -> list[dict[str, Any]]:
    """The ``clusters`` of an up's journal entry (a list: an id used as a key could look like a secret's name)."""
    out: list[dict[str, Any]] = []
    for leg in spec.legs:
        item: dict[str, Any] = {"id": leg.id, "kind": leg.kind.value}
        if leg.kind is ClusterKind.EDGE:
            item["preflight"] = leg.preflight
        out.append(item)
    return out


def last_outcomes(entries: Sequence[JournalEntry], since: int) -> dict[str, dict[str, Any]]:
    """Per cluster (and ``"workflow"``), the last step done or failed after journal entry ``since``: the step, its
    outcome (``done``/``failed``) and what was journaled with it (error, cause, runbook)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.seq < since or entry.phase not in (Phase.CONTINUUM_STEP_DONE, Phase.CONTINUUM_STEP_FAILED):
            continue
        detail = dict(entry.detail)
        key = str(detail.get("cluster") or detail.get("step") or "")
        outcome = "done" if entry.phase == Phase.CONTINUUM_STEP_DONE else "failed"
        out[key] = {**detail, "outcome": outcome, "at": entry.ts.isoformat(timespec="seconds")}
    return out


def left_behind(previous: Membership | None, spec: ContinuumSpec) -> tuple[list[str], str | None]:
    """The clusters and the workflow an earlier up declared that the file no longer names (left as they are)."""
    if previous is None:
        return [], None
    ids = set(spec.ids)
    clusters = [m.id for m in previous.members if m.id not in ids and m.recorded]
    wanted = spec.workflow.name if spec.workflow is not None else None
    workflow = previous.workflow if previous.workflow and previous.workflow != wanted else None
    return clusters, workflow
