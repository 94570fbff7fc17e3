"""Failure triage: why a cluster or a command failed, in one line, and the runbook to open.

Pure: it reads text (IM's error answers, its contextualization log, a VM's error message) and the tool's own
exceptions, and takes no network, disk or clock. The classes and their runbooks:

======================  ==========================================================================================
cause                   typical evidence
======================  ==========================================================================================
quota                   the cloud refused the VMs for lack of quota (Kubernetes ResourceQuota, OpenStack, EC2...)
image-not-found         no site serves the image (IM's "No VMI obtained", "no concrete system", cloud 404 on image)
ssh-unreachable         IM (or Ansible, or our SSH wait) could not reach a node over SSH
ansible-task-failed     a contextualization or add-on Ansible task failed (``fatal: [host]: FAILED!``)
timeout                 a wait ran out of time (ours or IM's maximum contextualization time)
auth                    IM refused the credentials, or an OIDC / EGI Check-in token expired
im-unreachable          no answer from the IM endpoint (refused, reset, DNS, TLS)
oscar-unreachable       OSCAR on a cluster did not answer its health check from this machine (cluster verify)
state-unreachable       the shared state database (PostgreSQL) refused or did not answer, or a lock held in it was
                        lost with its connection (a restart)
======================  ==========================================================================================

Specific evidence wins over generic: a quota message inside a failed launch is "quota", not "timeout". What failed
decides before any text: IM refusing a request (400) is bad input, never an outage, whatever its traceback says; a
node not answering SSH and OSCAR not answering are told by their own exceptions, and so is the state database
(its "connection refused" is not IM's).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

from provisioner.errors import (
    HostKeyChanged,
    IMAuthError,
    IMBadRequest,
    IMForbidden,
    IMTimeout,
    IMUnreachable,
    InputError,
    OperationTimeout,
    OSCARUnreachable,
    PlaybookFailed,
    ProvisionError,
    SSHUnreachable,
    StateUnreachable,
)

__all__ = [
    "RUNBOOKS",
    "RUNBOOK_DIR",
    "Cause",
    "FailedTask",
    "Triage",
    "analyse_contmsg",
    "classify_error",
    "classify_text",
    "evidence_line",
    "failed_task",
    "runbook_file",
    "see_runbook",
]

#: Where the runbooks are in the repository (they ship in the package too: ``provision runbook NAME`` prints one).
RUNBOOK_DIR = "provisioner/data/runbooks"


class Cause(StrEnum):
    QUOTA = "quota"
    IMAGE_NOT_FOUND = "image-not-found"
    SSH_UNREACHABLE = "ssh-unreachable"
    ANSIBLE_TASK_FAILED = "ansible-task-failed"
    TIMEOUT = "timeout"
    AUTH = "auth"
    IM_UNREACHABLE = "im-unreachable"
    OSCAR_UNREACHABLE = "oscar-unreachable"
    STATE_UNREACHABLE = "state-unreachable"


# Where an on-call person goes next, per cause (runbook names: ``provision runbook NAME``, RUNBOOK_DIR/NAME.md).
RUNBOOKS: dict[Cause, str] = {
    Cause.QUOTA: "cloud-refused",
    Cause.IMAGE_NOT_FOUND: "cloud-refused",
    Cause.SSH_UNREACHABLE: "stuck-or-unconfigured",
    Cause.ANSIBLE_TASK_FAILED: "stuck-or-unconfigured",
    Cause.TIMEOUT: "stuck-or-unconfigured",
    Cause.AUTH: "token-expired",
    Cause.IM_UNREACHABLE: "im-down",
    Cause.OSCAR_UNREACHABLE: "oscar-down",
    Cause.STATE_UNREACHABLE: "state-down",
}

SUMMARIES: dict[Cause, str] = {
    Cause.QUOTA: "the cloud refused the VMs: quota exceeded",
    Cause.IMAGE_NOT_FOUND: "the cloud has no such image",
    Cause.SSH_UNREACHABLE: "a node could not be reached over SSH",
    Cause.ANSIBLE_TASK_FAILED: "an Ansible task failed",
    Cause.TIMEOUT: "it ran out of time",
    Cause.AUTH: "the credentials were refused or the token expired",
    Cause.IM_UNREACHABLE: "the IM endpoint did not answer",
    Cause.OSCAR_UNREACHABLE: "OSCAR on the cluster did not answer",
    Cause.STATE_UNREACHABLE: "the state database did not answer or refused the connection",
}


@dataclass(frozen=True)
class Triage:
    """Why something failed: the class of its cause and the line of text that decided it, with the runbook to open."""

    cause: Cause
    evidence: str  # the line of IM's (or our) text that decided it

    @property
    def runbook(self) -> str:
        """The runbook's name (``provision runbook NAME`` prints it)."""
        return RUNBOOKS[self.cause]

    @property
    def see(self) -> str:
        """The line that sends a person to the runbook."""
        return see_runbook(self.runbook)

    @property
    def short(self) -> str:
        """The class and what it means."""
        return f"{self.cause.value}: {SUMMARIES[self.cause]}"

    @property
    def line(self) -> str:
        """One line for a person: the class, what it means, and the evidence."""
        return f"{self.short} ({self.evidence})"

    def as_dict(self) -> dict[str, str]:
        return {"cause": self.cause.value, "summary": SUMMARIES[self.cause], "evidence": self.evidence,
                "runbook": self.runbook, "runbook_file": runbook_file(self.runbook)}  # fmt: skip


def runbook_file(name: str) -> str:
    """Where runbook ``name`` is in the repository."""
    return f"{RUNBOOK_DIR}/{name}.md"


def see_runbook(name: str) -> str:
    """``see provision runbook NAME (provisioner/data/runbooks/NAME.md)``: one a user can run, one for readers."""
    return f"see provision runbook {name} ({runbook_file(name)})"


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# Ordered: the first class whose pattern matches wins, so specific causes come before the generic ones they often
# travel with (an unreachable host is also "failed"; a quota refusal ends in a failed launch; IM's timeouts follow
# SSH trouble).
_PATTERNS: list[tuple[Cause, re.Pattern[str]]] = [
    (
        # Our own words about the state database (pg.py), whatever libpq's reason after them says (an
        # authentication refused by PostgreSQL is not IM's credentials; its "connection refused" is not IM down).
        Cause.STATE_UNREACHABLE,
        _rx(
            r"cannot connect to the state database",
            r"the connection to the state database \S+ broke",
            r"the connection holding its lock in the state database",
        ),
    ),
    (
        Cause.AUTH,
        _rx(
            r"token (?:has )?expired",
            r"expired (?:access |oidc |bearer )?token",
            r"invalid infrastructuremanager credentials",
            r"access to this infrastructure not granted",
            r"authentication (?:error|failed|required)",
            r"invalid (?:access |oidc |bearer )?token",
            r"\b401\b.*unauthori[sz]ed",
            r"unauthori[sz]ed.*\b401\b",
            r"the request you have made requires authentication",
            r"AuthFailure",
        ),
    ),
    (
        Cause.QUOTA,
        _rx(
            r"exceeded quota",
            r"quota exceeded",
            r"quota.{0,40}(?:exceeded|reached|insufficient|not enough)",
            r"QuotaExceeded",
            r"OverQuota",
            r"InstanceLimitExceeded",
            r"VcpuLimitExceeded",
            r"insufficient(?:InstanceCapacity| capacity|Quota)",
            r"maximum number of (?:instances|ports|floating ?ips|volumes)",
            r"no (?:more )?(?:floating )?ip addresses? available",
            r"no more (?:free )?(?:resources|ips|addresses)",
            r"limit exceeded for (?:instances|cores|ram)",
        ),
    ),
    (
        Cause.IMAGE_NOT_FOUND,
        _rx(
            r"no VMI obtained",
            r"no concrete system to deploy.*image",
            r"image\b.{0,80}\b(?:not found|could not be found|does not exist|not available|not exist)",
            r"(?:not found|unknown|invalid)\b.{0,20}\bimage",
            r"InvalidAMIID",
            r"ErrImagePull|ImagePullBackOff|manifest unknown",
            r"incorrect image",
        ),
    ),
    (
        Cause.ANSIBLE_TASK_FAILED,
        _rx(
            r"^fatal: \[[^\]]+\]: FAILED!",
            r"task '[^']*' failed on ",
            r"error executing (?:the ansible|playbook)|ansible process (?:failed|returned)",
            r"FAILED! => ",
        ),
    ),
    (
        Cause.SSH_UNREACHABLE,
        _rx(
            r"could not reach .* over ssh|did not answer ssh|not reachable over ssh|waiting (?:for )?ssh",
            r"error waiting .{0,40}ssh",
            r"host key verification failed",
            r"timeout waiting ssh|accessible via ssh",
            r"ssh (?:access|connection).{0,40}(?:error|fail|timeout|refused|timed out)",
            r"check the ssh connection",
            r"error connecting (?:to|with) .{0,60}ssh|ssh.{0,40}(?:connection refused|no route to host)",
            r"no correct master vm found",
            r"error waiting (?:all )?the vms? to have (?:a correct|all the requested) ip",
            r"timeout waiting the vm to get a public ip",
            r"could not reach \S+: ",
            r"UNREACHABLE!",
        ),
    ),
    (
        Cause.OSCAR_UNREACHABLE,
        # cluster verify's failed OSCAR health check (OSCAR is not IM's: IM's texts never say this).
        _rx(r"oscar health: \S+/health(?:: | answered [45][0-9][0-9])"),
    ),
    (
        Cause.TIMEOUT,
        _rx(
            r"max(?:imum)? contextualization time",
            r"contextualization (?:process )?(?:timed out|timeout)",
            r"was not (?:configured|ready) within",
            r"timed? ?out",
            r"did not answer .* within",
        ),
    ),
    (
        Cause.IM_UNREACHABLE,
        _rx(
            r"IM at \S+ (?:is unreachable|refused|did not answer|reset)",
            r"cannot connect to IM at",
            r"connection to IM at \S+ broke",
            r"remote end closed connection",
            r"connection refused",
            r"connection reset",
            r"name or service not known|temporary failure in name resolution",
            r"failed to establish a new connection",
        ),
    ),
]


_TASK_RE = re.compile(r"^TASK \[(?P<task>[^\]]*)\]", re.MULTILINE)
_FATAL_RE = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: (?P<what>[A-Z]+)!? =>(?P<rest>.*)$", re.MULTILINE)
_IGNORED_RE = re.compile(r"\s*\.\.\.ignoring")  # used with .match(text, pos): anchored at pos
_MSG_RE = re.compile(r'"msg":\s*"(?P<msg>(?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class FailedTask:
    """The Ansible task a run stopped at, read from its output (:func:`failed_task`): the task and host, whether it
    FAILED or the host was UNREACHABLE, and Ansible's message."""

    task: str | None
    host: str
    what: str  # FAILED or UNREACHABLE
    reason: str

    @property
    def line(self) -> str:
        return f"task '{self.task}' failed on {self.host}: {self.reason}"


def failed_task(log: str) -> FailedTask | None:
    """The Ansible failure that ended the run: the last ``fatal:`` that Ansible did not ignore (``...ignoring``)."""
    decisive = [m for m in _FATAL_RE.finditer(log) if not _IGNORED_RE.match(log, m.end())]
    if not decisive:
        return None
    fatal = decisive[-1]
    tasks = [m for m in _TASK_RE.finditer(log) if m.start() < fatal.start()]
    msg = _MSG_RE.search(fatal.group("rest"))
    return FailedTask(
        task=tasks[-1].group("task") if tasks else None,
        host=fatal.group("host"),
        what=fatal.group("what"),
        reason=msg.group("msg") if msg else fatal.group("what"),
    )


def analyse_contmsg(log: str) -> tuple[str | None, str | None, str | None]:
    """The failing Ansible task and host, and a one-line reason, out of IM's contextualization log."""
    failed = failed_task(log)
    if failed is not None:
        return failed.task, failed.host, failed.line
    for line in reversed([raw.strip() for raw in _without_ignored(log).splitlines() if raw.strip()]):
        lowered = line.lower()
        if any(word in lowered for word in ("error", "fail", "timeout", "no correct master")):
            return None, None, line[:300]
    return None, None, None


def _without_ignored(text: str) -> str:
    """``text`` without the ``fatal:`` lines Ansible went on after (``...ignoring``): they decided nothing."""
    drop = {m.start() for m in _FATAL_RE.finditer(text) if _IGNORED_RE.match(text, m.end())}
    if not drop:
        return text
    kept, offset = [], 0
    for line in text.splitlines(keepends=True):
        if offset not in drop:
            kept.append(line)
        offset += len(line)
    return "".join(kept)


def evidence_line(text: str, pattern: re.Pattern[str]) -> str:
    """The line of ``text`` where ``pattern`` first matches, cut around the match when it is long."""
    for raw in text.splitlines():
        found = pattern.search(raw)
        if found is None:
            continue
        line = _unwrap_status(raw.strip())
        found = pattern.search(line) or found
        if len(line) <= 220:
            return line
        at = max(line.find(found.group(0)), 0)
        start = max(0, at - 80)
        return _trim(("…" if start else "") + line[start:], 220)
    return _trim(" ".join(text.split()))


_STATUS_RE = re.compile(r'\{[^{}]*(?:\{[^{}]*\}[^{}]*)*"message"\s*:\s*"(?P<msg>(?:[^"\\]|\\.)*)"[^\n]*\}')


def _unwrap_status(line: str) -> str:
    """A cloud API's JSON error body inside IM's line (Kubernetes' Status, OpenStack's faults) -> just its message."""
    found = _STATUS_RE.search(line)
    if found is None:
        return line
    try:
        message = json.loads(f'"{found.group("msg")}"')
    except ValueError:
        return line
    return f"{line[: found.start()]}{message}{line[found.end() :]}"


def _trim(line: str, limit: int = 220) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def classify_text(text: str | None) -> Triage | None:
    """Classify IM's text (an error answer, a contextualization log, a VM's error message). None when unclear."""
    if not text or not text.strip():
        return None
    text = _without_ignored(text)
    for cause, pattern in _PATTERNS:
        if any(pattern.search(line) for line in text.splitlines()):
            if cause in (Cause.ANSIBLE_TASK_FAILED, Cause.SSH_UNREACHABLE):
                # The task Ansible stopped at decides between the two, and says it best.
                failed = failed_task(text)
                if failed is not None:
                    kind = Cause.SSH_UNREACHABLE if failed.what == "UNREACHABLE" else Cause.ANSIBLE_TASK_FAILED
                    return Triage(kind, _trim(failed.line))
            return Triage(cause, evidence_line(text, pattern))
    return None


def classify_error(exc: BaseException, evidence: str | None = None) -> Triage | None:
    """Classify one of the tool's errors (and IM's text that came with it). None for bad input and the unclear."""
    if isinstance(exc, InputError) or not isinstance(exc, ProvisionError):
        return None
    message = str(exc)
    # What kind of answer it was decides first for the endpoint itself: no answer at all, or credentials refused.
    if isinstance(exc, IMUnreachable):
        return Triage(Cause.IM_UNREACHABLE, _trim(message))
    if isinstance(exc, StateUnreachable):
        return Triage(Cause.STATE_UNREACHABLE, _trim(message))
    if isinstance(exc, IMAuthError | IMForbidden):
        return Triage(Cause.AUTH, _trim(message))
    if isinstance(exc, HostKeyChanged | IMBadRequest):
        return None  # not an outage: a security stop with its own hint; IM refusing the request (bad input)
    # What our own checks found unreachable (cluster verify): their exception says it, not words in the details.
    if isinstance(exc, SSHUnreachable):
        return Triage(Cause.SSH_UNREACHABLE, _trim(message))
    if isinstance(exc, OSCARUnreachable):
        return Triage(Cause.OSCAR_UNREACHABLE, _trim(message))
    # Then IM's text, more specific than our exception's kind (a failed launch ended by a quota is "quota").
    for text in (evidence or exc.evidence, message):
        found = classify_text(text)
        if found is not None:
            return found
    if isinstance(exc, PlaybookFailed):
        return Triage(Cause.ANSIBLE_TASK_FAILED, _trim(message))
    if isinstance(exc, OperationTimeout | IMTimeout):
        return Triage(Cause.TIMEOUT, _trim(message))
    return None
