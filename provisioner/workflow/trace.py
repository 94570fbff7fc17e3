"""Following one file through a workflow (pure: no network, disk or clock; the caller reads and passes in).

``workflow run`` uploads a file where the entry stage reads, then watches. OSCAR does not say which object a job
took, so the trace reasons from what is new: the first job of a stage that was not there before the upload is the
one that took the object expected there, and the objects that appear afterwards at the stage's outputs are what
it wrote. Each object written is matched against the stages' inputs (the same store and a path that holds it,
and the input's suffix/prefix filters), which says which stage must run next and how many times; an object no
stage reads is a final output. The trace ends when every expected job has finished and every written object is
accounted for, or as soon as a job fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioner.workflow.fdl import Fdl, IOSpec, Stage

__all__ = ["Arrival", "Step", "Trace", "job_seconds", "lambda_invocations", "new_jobs", "readers_of"]

DONE_STATES = frozenset({"Succeeded", "Failed"})
FAILED_STATES = frozenset({"Failed"})


@dataclass(frozen=True)
class Arrival:
    """An object that landed where a stage reads: the stage is expected to run one job for it."""

    stage: tuple[str, str]
    store: tuple[str, str]  # (kind, id) of the store: ("minio", "cloud")
    bucket: str
    key: str

    @property
    def label(self) -> str:
        return f"{self.store[0]}.{self.store[1]}:{self.bucket}/{self.key}"


@dataclass
class Step:
    """One job of one stage, as the trace saw it."""

    stage: tuple[str, str]
    arrival: Arrival
    job: str | None = None
    state: str = "waiting"  # until a job is seen: waiting; then OSCAR's status (Pending, Running, Succeeded, Failed)
    queued: str | None = None  # OSCAR's times (ISO 8601)
    started: str | None = None
    finished: str | None = None
    seen_at: float | None = None  # seconds after the upload when the job was first seen
    done_at: float | None = None  # ... and seen finished
    outputs: list[str] = field(default_factory=list)  # labels of the objects it wrote

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def seconds(self) -> float | None:
        return job_seconds(self.started, self.finished)

    def doc(self) -> dict[str, Any]:
        return {
            "stage": f"{self.stage[0]}/{self.stage[1]}",
            "input": self.arrival.label,
            "job": self.job,
            "state": self.state,
            "queued": self.queued,
            "started": self.started,
            "finished": self.finished,
            "seconds": self.seconds,
            "seen_at": None if self.seen_at is None else round(self.seen_at, 2),
            "done_at": None if self.done_at is None else round(self.done_at, 2),
            "outputs": list(self.outputs),
        }


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def job_seconds(started: str | None, finished: str | None) -> float | None:
    """Seconds from OSCAR's start to finish time (None when either is missing or unreadable)."""
    begin, end = _parse(started), _parse(finished)
    if begin is None or end is None:
        return None
    return max(0.0, (end - begin).total_seconds())


def new_jobs(before: Iterable[str], now: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The jobs in ``now`` that were not in ``before``, oldest first (by creation time, then name)."""
    known = set(before)
    fresh = [(name, dict(info)) for name, info in now.items() if name not in known]
    return sorted(fresh, key=lambda item: (str(item[1].get("creation_time") or ""), item[0]))


_LAMBDA_LINE = re.compile(r"^(START|END|REPORT) RequestId: ([0-9a-fA-F-]+)")
_LAMBDA_ERRORS = ("errorMessage", "Task timed out", "Runtime.ExitError", "Runtime.", "[ERROR]")


def lambda_invocations(lines: Iterable[str]) -> dict[str, dict[str, Any]]:
    """A Lambda function's invocations read from its CloudWatch log lines, as OSCAR's jobs are given (request id
    -> {"status"}): ``START RequestId: ID`` begins one (Running), ``REPORT RequestId: ID`` ends it (Succeeded, or
    Failed when a line between them reports an error: ``errorMessage``, ``Task timed out``, a runtime error)."""
    found: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in lines:
        match = _LAMBDA_LINE.match(line.strip())
        if match is not None:
            kind, request = match.groups()
            info = found.setdefault(request, {"status": "Running", "errors": 0})
            if kind == "START":
                current = request
            elif kind == "REPORT":
                info["status"] = "Failed" if info["errors"] else "Succeeded"
                duration = re.search(r"Duration: ([0-9.]+) ms", line)
                if duration:
                    info["seconds"] = float(duration.group(1)) / 1000
                current = None
            continue
        if current is not None and any(mark in line for mark in _LAMBDA_ERRORS):
            found[current]["errors"] += 1
    return {request: {k: v for k, v in info.items() if k != "errors"} for request, info in found.items()}


def _holds(spec: IOSpec, key: str) -> bool:
    prefix = spec.key_prefix
    if prefix and not key.startswith(prefix.rstrip("/") + "/"):
        return False
    name = key.rsplit("/", 1)[-1]
    if spec.suffix and not any(key.endswith(s) for s in spec.suffix):
        return False
    return not (spec.prefix and not any(name.startswith(p) for p in spec.prefix))


def readers_of(fdl: Fdl, store: tuple[str, str], bucket: str, key: str) -> list[Stage]:
    """The stages that get a job for an object ``bucket/key`` written to ``store`` (file order)."""
    found = []
    for stage in fdl.stages:
        for spec in stage.inputs:
            if spec.target(stage.cluster) == store and spec.bucket == bucket and _holds(spec, key):
                found.append(stage)
                break
    return found


@dataclass
class Trace:
    """The state of one file's journey: the steps (jobs) expected and seen, and the final outputs."""

    fdl: Fdl
    steps: list[Step] = field(default_factory=list)
    finals: list[tuple[tuple[str, str], str, str]] = field(default_factory=list)  # (store, bucket, key)

    def arrive(self, store: tuple[str, str], bucket: str, key: str) -> list[Step]:
        """An object appeared at ``store``: the steps it starts (none: it is a final output)."""
        readers = readers_of(self.fdl, store, bucket, key)
        if not readers:
            self.finals.append((store, bucket, key))
            return []
        made = [Step(stage.key, Arrival(stage.key, store, bucket, key)) for stage in readers]
        self.steps.extend(made)
        return made

    def waiting(self) -> list[Step]:
        """Steps whose job has not finished yet."""
        return [step for step in self.steps if not step.done]

    def unmatched(self, stage: tuple[str, str]) -> list[Step]:
        """Steps of ``stage`` still without a job, in the order their objects arrived."""
        return [step for step in self.steps if step.stage == stage and step.job is None]

    def see_jobs(self, stage: tuple[str, str], fresh: list[tuple[str, dict[str, Any]]], at: float) -> list[Step]:
        """Match the new jobs of ``stage`` (oldest first) to its steps; update known ones. Returns the steps that
        have just finished."""
        finished: list[Step] = []
        by_job = {step.job: step for step in self.steps if step.stage == stage and step.job is not None}
        waiting = self.unmatched(stage)
        for name, info in fresh:
            step = by_job.get(name)
            if step is None:
                if not waiting:
                    continue  # a job for another file (or another user): not this trace's
                step = waiting.pop(0)
                step.job, step.seen_at = name, at
            was_done = step.done
            step.state = str(info.get("status") or "Pending")
            step.queued = info.get("creation_time") or step.queued
            step.started = info.get("start_time") or step.started
            step.finished = info.get("finish_time") or step.finished
            if step.done and not was_done:
                step.done_at = at
                finished.append(step)
        return finished

    def failed(self) -> list[Step]:
        return [step for step in self.steps if step.failed]

    def doc(self) -> dict[str, Any]:
        return {
            "steps": [step.doc() for step in self.steps],
            "final_outputs": [f"{s[0]}.{s[1]}:{b}/{k}" for s, b, k in self.finals],
        }
