"""``provision workflow apply`` SIGKILLed at every journal phase of apply; the same command again converges.

A three-stage workflow over two stand-in OSCAR clusters (the shape of ``tests/integration/test_workflow_cli.py``):
``cloud/tag`` is sent first, then ``cloud/upper``, then ``edge/reverse`` (downstream first, one stage at a time). The
apply is killed the instant the journal has recorded a phase (``tests/faults/killat.py``), or in the window the
journal cannot see: right after OSCAR answered a POST, before ``service_done`` is recorded (this module's own
wrapper, ``python -m tests.faults.test_workflow_killed N provision-args...``). Then the same apply is run again
and must converge: every service exactly once on its cluster, exactly one POST per service over both runs (none
refused with 409, no PUT, no DELETE), a third apply sends nothing, the workflow owns its three services, and the
filled-in MinIO credentials are nowhere in the state database.

The two clusters are shared by the module's cases; each case starts with no service on them and a home of its own.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from provisioner.state import Phase, Store
from standin.oscar import Refused, StandInOscar
from tests.clihelper import CLI
from tests.workflowlab import two_clusters, write_chain

REPO = Path(__file__).resolve().parents[2]
EDGE_PASSWORD = "edge-oscar-password-k1"
CLOUD_PASSWORD = "cloud-oscar-password-k2"
CLOUD_MINIO_SECRET = "cloud-minio-secret-key-k3"
WORKFLOW = "masks"
JOURNAL = f"workflow:{WORKFLOW}"
ORDER = [("cloud", "tag"), ("cloud", "upper"), ("edge", "reverse")]  # the order apply sends them in
FAST = {"PROVISION_CONNECT_TIMEOUT": "2", "PROVISION_READ_TIMEOUT": "20", "PROVISION_LOCK_TIMEOUT": "30"}


class CountingOscar(StandInOscar):
    """A stand-in that also keeps, for every POST of a service, when it came (a sequence shared by all the
    stand-ins of the process), the service's name and the status it was answered."""

    sequence = itertools.count()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posts: list[tuple[int, str, int]] = []

    def create(self, body: object) -> None:
        name = str(body.get("name")) if isinstance(body, dict) else "?"
        try:
            super().create(body)
        except Refused as exc:
            self.posts.append((next(self.sequence), name, exc.status))
            raise
        self.posts.append((next(self.sequence), name, 201))

    def reset(self) -> None:
        """No service, nothing seen: a case's starting point."""
        for name in list(self.services):
            self.delete(name)
        self.requests.clear()
        self.posts.clear()


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, CountingOscar]]:
    slow = {"poll": 1.0}
    with two_clusters(
        EDGE_PASSWORD, CLOUD_PASSWORD, CLOUD_MINIO_SECRET, cls=CountingOscar, edge=slow, cloud=slow
    ) as made:
        yield made


@pytest.fixture
def oscars(clusters: dict[str, CountingOscar]) -> dict[str, CountingOscar]:
    for oscar in clusters.values():
        oscar.reset()
    return clusters


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    made = CLI(tmp_path / "home", "http://127.0.0.1:9/", tmp_path / "no-auth")
    made.env.update(FAST)
    return made


def write_fdl(path: Path, clusters: Mapping[str, StandInOscar]) -> Path:
    return write_chain(
        path,
        clusters,
        edge_auth=f"auth_user: oscar, auth_password: {EDGE_PASSWORD}",
        cloud_auth=f"auth_user: oscar, auth_password: {CLOUD_PASSWORD}",
    )


def killed(cli: CLI, wrapper: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI under ``wrapper`` (``-m module ...``), which SIGKILLs it; it must have died of that."""
    result = subprocess.run(
        [sys.executable, *wrapper, *args],
        capture_output=True,
        text=True,
        env=cli.env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)
    return result


def phases(home: Path) -> list[Phase]:
    with Store.open(home) as store:
        return [entry.phase for entry in store.journal(JOURNAL)]


def on_clusters(oscars: Mapping[str, CountingOscar]) -> list[tuple[str, str]]:
    return sorted((cluster, name) for cluster, oscar in oscars.items() for name in oscar.services)


def posted(oscars: Mapping[str, CountingOscar]) -> list[tuple[str, str, int]]:
    """Every POST of a service the clusters answered, in the order they were answered."""
    stamped = sorted(
        (seq, cluster, name, status) for cluster, oscar in oscars.items() for seq, name, status in oscar.posts
    )
    return [(cluster, name, status) for _, cluster, name, status in stamped]


def write_count(oscars: Mapping[str, CountingOscar]) -> int:
    return sum(len(oscar.writes()) for oscar in oscars.values())


def apply_json(cli: CLI, fdl: Path) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    done = cli("workflow", "apply", str(fdl), "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"], doc
    return doc, done


def converges(
    cli: CLI, oscars: dict[str, CountingOscar], fdl: Path, landed: int, *, killed_run: subprocess.CompletedProcess[str]
) -> dict[str, Any]:
    """The apply again (not killed) sends what the killed one did not land; then check the end state.

    ``landed``: how many services (of :data:`ORDER`) reached OSCAR before the kill. Returns the rerun's answer."""
    assert on_clusters(oscars) == sorted(ORDER[:landed])
    tokens = {(c, s): oscars[c].services[s]["token"] for c, s in ORDER[:landed]}

    rerun, rerun_run = apply_json(cli, fdl)
    assert rerun["sent"] == [f"create {c}/{s}" for c, s in ORDER[landed:]], rerun
    actions = {(i["cluster"], i["service"]): i["action"] for i in rerun["services"]}
    assert actions == {key: ("unchanged" if n < landed else "create") for n, key in enumerate(ORDER)}

    # Every service exactly once on its cluster, from exactly one POST over both runs, none refused.
    assert on_clusters(oscars) == sorted(ORDER)
    assert posted(oscars) == [(c, s, 201) for c, s in ORDER]
    for cluster, oscar in oscars.items():
        assert oscar.writes() == [("POST", "/system/services")] * sum(1 for c, _ in ORDER if c == cluster)
    # What landed before the kill was left as it was (a second POST or a PUT would show; so would a new token).
    assert {key: oscars[key[0]].services[key[1]]["token"] for key in tokens} == tokens
    filled = oscars["edge"].services["reverse"]["storage_providers"]["minio"]["cloud"]
    assert filled["secret_key"] == CLOUD_MINIO_SECRET  # the rerun filled the credentials in, as a first run does
    journal = phases(cli.home)
    assert journal[-1] == Phase.WORKFLOW_APPLIED, journal

    # A third apply: nothing to send. (In this process: it only reads the clusters, no interpreter start needed.)
    before = write_count(oscars)
    third_run = cli.in_process("workflow", "apply", str(fdl), "-o", "json")
    assert third_run.returncode == 0, third_run.stderr
    third = json.loads(third_run.stdout)
    assert third["sent"] == [] and write_count(oscars) == before
    assert {i["action"] for i in third["services"]} == {"unchanged"}
    assert all(i["note"] == "" for i in third["services"]), third  # owned now, not "adopted" again

    shown = cli.in_process("workflow", "list", "-o", "json")  # reads the state database only: no process needed
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert [(w["name"], w["services"]) for w in listed] == [(WORKFLOW, sorted(f"{c}/{s}" for c, s in ORDER))]

    # The filled-in credentials went to OSCAR only: not to the state database, not to any output.
    with sqlite3.connect(cli.home / "state.db") as db:
        dump = "\n".join(db.iterdump())
    assert JOURNAL in dump
    for secret in (CLOUD_MINIO_SECRET, CLOUD_PASSWORD, EDGE_PASSWORD):
        assert secret not in dump
    outputs = "".join(r.stdout + r.stderr for r in (killed_run, rerun_run, third_run))
    assert CLOUD_MINIO_SECRET not in outputs and CLOUD_PASSWORD not in outputs
    return rerun


KILL_POINTS = [
    (Phase.WORKFLOW_APPLYING, 1),
    (Phase.SERVICE_SENDING, 1),
    (Phase.SERVICE_SENDING, 2),
    (Phase.SERVICE_SENDING, 3),
    (Phase.SERVICE_DONE, 1),
    (Phase.SERVICE_DONE, 2),
    (Phase.SERVICE_DONE, 3),
    (Phase.WORKFLOW_APPLIED, 1),
]


@pytest.mark.parametrize(("phase", "nth"), KILL_POINTS, ids=[f"{p.value}-{n}" for p, n in KILL_POINTS])
def test_apply_killed_at_phase_then_apply_again(
    phase: Phase, nth: int, oscars: dict[str, CountingOscar], cli: CLI, tmp_path: Path
) -> None:
    fdl = write_fdl(tmp_path / "wf" / f"{WORKFLOW}.yaml", oscars)
    run = killed(cli, ["-m", "tests.faults.killat", phase.value, str(nth)], "workflow", "apply", str(fdl))
    journal = phases(cli.home)
    assert journal[-1] == phase and journal.count(phase) == nth, journal
    # service_sending N is recorded before the Nth POST, service_done N after it was answered.
    landed = {Phase.WORKFLOW_APPLYING: 0, Phase.SERVICE_SENDING: nth - 1, Phase.SERVICE_DONE: nth}.get(phase, 3)
    assert posted(oscars) == [(c, s, 201) for c, s in ORDER[:landed]]
    rerun = converges(cli, oscars, fdl, landed, killed_run=run)
    # Killed at service_done N, the Nth is on its cluster but not yet in the workflow's record: the rerun adopts it.
    adopted = {(i["cluster"], i["service"]) for i in rerun["services"] if "adopted" in i["note"]}
    assert adopted == ({ORDER[nth - 1]} if phase is Phase.SERVICE_DONE else set()), rerun


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_apply_killed_after_oscar_answered_the_post(
    nth: int, oscars: dict[str, CountingOscar], cli: CLI, tmp_path: Path
) -> None:
    """The lost answer: the Nth POST landed and was answered, the kill comes before the journal could say so.

    The journal's last word is ``service_sending`` for that service, as if it had never been sent; the rerun must
    find it on its cluster and adopt it as it is, not POST it again (which OSCAR would refuse with 409)."""
    fdl = write_fdl(tmp_path / "wf" / f"{WORKFLOW}.yaml", oscars)
    run = killed(cli, ["-m", "tests.faults.test_workflow_killed", str(nth)], "workflow", "apply", str(fdl))
    journal = phases(cli.home)
    assert journal[-1] == Phase.SERVICE_SENDING and journal.count(Phase.SERVICE_SENDING) == nth, journal
    assert journal.count(Phase.SERVICE_DONE) == nth - 1
    assert posted(oscars) == [(c, s, 201) for c, s in ORDER[:nth]]  # ... yet the Nth is on its cluster
    with Store.open(cli.home) as store:
        record = store.get_workflow(WORKFLOW)
    assert record is not None and ORDER[nth - 1] not in record.owns()

    rerun = converges(cli, oscars, fdl, nth, killed_run=run)
    lost = next(i for i in rerun["services"] if (i["cluster"], i["service"]) == ORDER[nth - 1])
    assert lost["action"] == "unchanged" and "adopted" in lost["note"], lost  # found on the cluster, taken as is


# --- the wrapper that kills in the lost-answer window -----------------------------------------------------------------


def kill_after_create(nth: int, argv: list[str]) -> None:
    """Run ``provision argv`` and SIGKILL it the instant its ``nth`` ``OscarClient.create_service`` has returned
    (OSCAR has the service; the caller has not yet recorded that it does)."""
    from provisioner.oscar.client import OscarClient

    original = OscarClient.create_service
    lock = threading.Lock()
    seen = 0

    def create_service(self: OscarClient, definition: Mapping[str, Any]) -> None:
        nonlocal seen
        original(self, definition)
        with lock:
            seen += 1
            hit = seen == nth
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    OscarClient.create_service = create_service  # type: ignore[method-assign]
    from provisioner.cli.main import run

    run(argv)


if __name__ == "__main__":
    kill_after_create(int(sys.argv[1]), sys.argv[2:])
