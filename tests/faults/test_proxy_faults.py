"""create / status / scale / destroy through a fault-injecting proxy between the CLI and the real IM.

Every fault (refused connection, connection reset half-way through IM's answer, delay, delay past the CLI's read
timeout, 502, 503) is put on the request that matters most (the POST of a create or a scale, the DELETE of a
destroy, the first reads of a status) and on the polls of a wait. Each case checks the outcome against IM itself:
the command (or a re-run of it) ends correctly, IM holds exactly the infrastructures it should (never a duplicate),
and the journal holds the expected phases in order.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from provisioner.state import Phase
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import HTML_TITLE, FaultProxy
from tests.faults.conftest import (
    CREATE_PHASES,
    FAST,
    forwarded_posts,
    in_order,
    infras,
    phases,
    record,
    workers_in_im,
)

pytestmark = pytest.mark.im

SHORT_READ = {"PROVISION_READ_TIMEOUT": "1"}
LATE = "delay:2.5"  # past the short read timeout: the CLI gives up, then the proxy delivers the request to IM
# name -> (fault, extra env for the faulted command)
FAULTS: dict[str, tuple[str, dict[str, str]]] = {
    "refuse": ("refuse", {}),
    "reset": ("reset", {}),
    "delay": ("delay:1", {}),
    "delay-past-read-timeout": (LATE, SHORT_READ),
    "502": ("status:502", {}),
    "503": ("status:503", {}),
    "5xx": ("status:502,status:503", {}),  # two faults in a row: the call and its first retry
}


def faults_of(kind: str) -> list[str]:
    return FAULTS[kind][0].split(",")


POST_KINDS = ["refuse", "reset", "delay-past-read-timeout", "502", "503"]  # faults put on a create's/scale's POST
READ_KINDS = ["refuse", "reset", "delay-past-read-timeout", "5xx"]  # faults put on idempotent calls (retried)
# The exit code of a create / scale whose POST met the fault (absent: the command succeeds). A reset create succeeds:
# IM did create it and the CLI finds it by its deployment id. A scale cannot tell, and fails.
CREATE_FAILS = {"refuse": 3, "delay-past-read-timeout": 4, "502": 1, "503": 1}
SCALE_FAILS = {**CREATE_FAILS, "reset": 3}


def settle(fault: str) -> None:
    """Let a request delayed past the CLI's read timeout reach IM before the next command (as a user re-running it
    later would: re-running while the lost request is still on its way is a race no client can win)."""
    if fault == LATE:
        time.sleep(float(fault.split(":", 1)[1]) + 0.5)


def create_args(name: str) -> tuple[str, ...]:
    return ("cluster", "create", name, "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1")


def check_clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")


def destroy(cli: CLI, name: str) -> None:
    done = cli("cluster", "destroy", name, "--yes")
    assert done.returncode == 0, done.stderr


# --- create -----------------------------------------------------------------------------------------------------------


# (A create POST delayed past the read timeout: test_create_answer_lost_then_status_adopts_it.)
@pytest.mark.parametrize("kind", ["refuse", "reset", "502", "503"])
def test_create_with_fault_on_the_post(kind: str, pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    fault, env = FAULTS[kind]
    name = f"pc-{kind}"
    before = infras(local_im)
    proxy.add(fault)  # the POST /infrastructures is the create's first request
    first = pcli(*create_args(name), "-o", "json", env=env)
    assert proxy.seen[0].method == "POST" and proxy.seen[0].fault == fault
    if first.returncode != 0:
        # The POST's answer was lost or refused: a failure is allowed, a silent duplicate is not.
        check_clean_failure(first, CREATE_FAILS[kind])
        assert "run the same command again" in first.stderr
        settle(fault)
        again = pcli(*create_args(name), "-o", "json")
        assert again.returncode == 0, again.stderr
        view = json.loads(again.stdout)
    else:
        assert kind not in CREATE_FAILS, f"{kind}: expected exit {CREATE_FAILS[kind]}"
        view = json.loads(first.stdout)
    assert view["state"] == "configured" and view["workers"] == 1
    created = infras(local_im) - before
    assert created == {view["infra_id"]}, "exactly one infrastructure in IM"
    assert forwarded_posts(proxy) == 1, [(s.method, s.fault) for s in proxy.seen]
    journal = phases(pcli.home, name)
    assert in_order(CREATE_PHASES, journal), journal
    if kind == "reset":
        assert Phase.ADOPTED in journal  # IM got the POST: it was found by its deployment id, not sent again
    assert record(pcli.home, name).infra_id == view["infra_id"]
    destroy(pcli, name)
    assert not infras(local_im) - before


def test_create_answer_lost_then_status_adopts_it(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    """The POST outlives the CLI's read timeout; `status` (not create) finds it by deployment id; create resumes it."""
    name = "pc-status-adopts"
    before = infras(local_im)
    proxy.add(LATE)
    first = pcli(*create_args(name), env=SHORT_READ)
    check_clean_failure(first, 4)
    settle(LATE)
    assert len(infras(local_im) - before) == 1  # IM created it after the CLI gave up
    status = pcli("cluster", "status", name, "--wait", "-o", "json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert infras(local_im) - before == {view["infra_id"]}
    again = pcli(*create_args(name), "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["infra_id"] == view["infra_id"]
    assert infras(local_im) - before == {view["infra_id"]}
    assert forwarded_posts(proxy) == 1
    journal = phases(pcli.home, name)
    assert in_order(
        [Phase.RENDERED, Phase.SUBMITTING, Phase.ADOPTED, Phase.INFRA_ID_KNOWN, Phase.WAITING, Phase.CONFIGURED],
        journal,
    ), journal
    destroy(pcli, name)


def test_create_rides_out_faults_while_waiting(pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    """Every poll of the wait broken one way or another: the create still ends configured, exit 0."""
    name = "pc-wait"
    before = infras(local_im)
    proxy.add("pass", "refuse", "reset", "status:502", "status:503", "delay:1")
    result = pcli(*create_args(name), "-o", "json")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["state"] == "configured"
    assert infras(local_im) - before == {view["infra_id"]}
    assert not proxy.plan, "every planned fault was met"
    assert forwarded_posts(proxy) == 1
    assert in_order(CREATE_PHASES, phases(pcli.home, name))
    destroy(pcli, name)


# --- status -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def status_cluster(local_im: RunningIM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CLI, FaultProxy]]:
    """One cluster, created through its own proxy, that every status case reads."""
    proxy = FaultProxy(local_im.url).start()
    cli = CLI(tmp_path_factory.mktemp("status") / "home", proxy.url, local_im.auth_file)
    cli.env.update(FAST)
    created = cli(*create_args("ps"), "-o", "json")
    assert created.returncode == 0, created.stderr
    yield cli, proxy
    destroy(cli, "ps")
    proxy.stop()


@pytest.mark.parametrize("kind", READ_KINDS)
def test_status_with_faults_on_its_reads(kind: str, status_cluster: tuple[CLI, FaultProxy]) -> None:
    pcli, proxy = status_cluster
    env = FAULTS[kind][1]
    faults = faults_of(kind)
    infra = record(pcli.home, "ps").infra_id
    journal_before = phases(pcli.home, "ps")
    proxy.seen.clear()
    proxy.add(*faults)  # on the state read (and its retry)
    status = pcli("cluster", "status", "ps", "-o", "json", env=env)
    assert status.returncode == 0, status.stderr  # reads are retried
    assert [s.fault for s in proxy.seen[: len(faults)]] == faults
    view = json.loads(status.stdout)
    assert (view["infra_id"], view["state"], view["workers"]) == (infra, "configured", 1)
    proxy.add(*faults)
    waited = pcli("cluster", "status", "ps", "--wait", "-o", "json", env=env)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["state"] == "configured"
    journal = phases(pcli.home, "ps")
    assert journal[: len(journal_before)] == journal_before  # nothing lost
    assert journal[-2:] == [Phase.WAITING, Phase.CONFIGURED]
    assert record(pcli.home, "ps").workers == 1


# --- scale ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scale_cluster(local_im: RunningIM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CLI, FaultProxy]]:
    """One cluster, created through its own proxy, that every scale case grows by one worker."""
    proxy = FaultProxy(local_im.url).start()
    cli = CLI(tmp_path_factory.mktemp("scale") / "home", proxy.url, local_im.auth_file)
    cli.env.update(FAST)
    created = cli(*create_args("pk"), "-o", "json")
    assert created.returncode == 0, created.stderr
    yield cli, proxy
    destroy(cli, "pk")
    proxy.stop()


@pytest.mark.parametrize("kind", POST_KINDS)
def test_scale_with_fault_on_the_post(kind: str, scale_cluster: tuple[CLI, FaultProxy], local_im: RunningIM) -> None:
    pcli, proxy = scale_cluster
    fault, env = FAULTS[kind]
    infra = record(pcli.home, "pk").infra_id
    current = workers_in_im(local_im, infra)
    target = current + 1
    before = infras(local_im)
    # A scale reads the state, then each VM it names (the front-end and the workers), then POSTs the template: the
    # fault goes on that POST.
    reads = 1 + 1 + current
    proxy.seen.clear()
    proxy.add(*(["pass"] * reads), fault)
    first = pcli("cluster", "scale", "pk", "--workers", str(target), "-o", "json", env=env)
    faulted = proxy.seen[reads]
    assert (faulted.method, faulted.path, faulted.fault) == ("POST", f"/infrastructures/{infra}", fault)
    if first.returncode != 0:
        check_clean_failure(first, SCALE_FAILS[kind])
        settle(fault)
        again = pcli("cluster", "scale", "pk", "--workers", str(target), "-o", "json")
        assert again.returncode == 0, again.stderr
        scaled = json.loads(again.stdout)
    else:
        assert kind not in SCALE_FAILS, f"{kind}: expected exit {SCALE_FAILS[kind]}"
        scaled = json.loads(first.stdout)
    assert scaled["workers"] == target
    assert workers_in_im(local_im, infra) == target
    assert infras(local_im) == before  # scaling never makes another infrastructure
    # The template POST reached IM exactly once: a scale whose answer was lost is not sent twice.
    assert forwarded_posts(proxy, f"/infrastructures/{infra}") == 1
    assert record(pcli.home, "pk").workers == target
    journal = phases(pcli.home, "pk")
    assert in_order([*CREATE_PHASES, Phase.SCALING], journal), journal
    assert journal[-1] in (Phase.CONFIGURED, Phase.SCALED), journal
    assert record(pcli.home, "pk").inputs["wn_num"] == target


@pytest.mark.parametrize("kind", ["reset", "delay-past-read-timeout"])
def test_scale_answer_lost_rerun_completes_journal_and_registry(
    kind: str, pcli: CLI, proxy: FaultProxy, local_im: RunningIM
) -> None:
    fault, env = FAULTS[kind]
    name = f"pj-{kind}"
    created = pcli(*create_args(name), "-o", "json")
    assert created.returncode == 0, created.stderr
    view = json.loads(created.stdout)
    proxy.add(*(["pass"] * (1 + len(view["vms"]))), fault)  # the state, each VM, then the POST
    first = pcli("cluster", "scale", name, "--workers", "2", env=env)
    check_clean_failure(first, SCALE_FAILS[kind])
    assert "run the same command again" in first.stderr  # the hint says how to finish
    settle(fault)
    again = pcli("cluster", "scale", name, "--workers", "2", "-o", "json")
    assert again.returncode == 0, again.stderr
    try:
        assert json.loads(again.stdout)["workers"] == 2
        journal = phases(pcli.home, name)
        assert journal[-1] != Phase.SCALING, journal
        assert in_order([Phase.SCALING, Phase.SCALED], journal), journal
        assert record(pcli.home, name).inputs["wn_num"] == 2
        assert forwarded_posts(proxy, f"/infrastructures/{view['infra_id']}") == 1  # not sent twice
    finally:
        destroy(pcli, name)


# --- destroy ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", READ_KINDS)
def test_destroy_with_fault_on_the_delete(kind: str, pcli: CLI, proxy: FaultProxy, local_im: RunningIM) -> None:
    fault, env = FAULTS[kind]
    faults = faults_of(kind)
    name = f"pd-{kind}"
    created = pcli(*create_args(name), "-o", "json")
    assert created.returncode == 0, created.stderr
    infra = json.loads(created.stdout)["infra_id"]
    proxy.seen.clear()
    proxy.add(*faults)
    result = pcli("cluster", "destroy", name, "--yes", env=env)
    assert [(s.method, s.fault) for s in proxy.seen[: len(faults)]] == [("DELETE", f) for f in faults]
    if result.returncode != 0:
        assert "Traceback" not in result.stderr
        settle(fault)
        result = pcli("cluster", "destroy", name, "--yes")
    assert result.returncode == 0, result.stderr  # DELETE is idempotent: retried, then verified
    settle(fault)  # a late DELETE still in the proxy must not bring anything back either
    assert infra not in infras(local_im)
    assert record(pcli.home, name) is None
    journal = phases(pcli.home, name)
    assert in_order([*CREATE_PHASES, Phase.DESTROYING, Phase.DESTROYED], journal), journal
    assert journal[-1] == Phase.DESTROYED
    assert pcli.json("cluster", "list") == []


# --- what IM answers, when it is not what a client expects ----------------------------------------------------------

# Every command that reads IM, each answered (on every request) with a web server's HTML error page.
PAGE_COMMANDS = {
    "infra-version": ("infra", "version"),
    "infra-list": ("infra", "list"),
    "status": ("cluster", "status", "ps"),
    "outputs": ("cluster", "outputs", "ps"),
    "scale": ("cluster", "scale", "ps", "--workers", "2"),
    "destroy": ("cluster", "destroy", "ps", "--yes"),
    "sync": ("cluster", "sync"),
}


@pytest.mark.parametrize("command", sorted(PAGE_COMMANDS))
def test_an_html_error_page_is_one_line(command: str, status_cluster: tuple[CLI, FaultProxy]) -> None:
    pcli, proxy = status_cluster
    args = PAGE_COMMANDS[command]
    proxy.plan.clear()
    proxy.add(*["html:500"] * 100)
    try:
        result = pcli(*args)
        debug = pcli("--debug", *args)
    finally:
        proxy.plan.clear()
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ")
    first = result.stderr.splitlines()[0]
    assert f"(500): {HTML_TITLE}" in first, result.stderr
    assert "<" not in result.stderr and "Traceback" not in result.stderr and "REST.py" not in result.stderr
    assert "cause: im-unreachable" not in result.stderr
    # The page itself only with --debug.
    assert debug.returncode == 1
    assert "Traceback (most recent call last):" in debug.stderr and "<title>" in debug.stderr
    assert pcli.json("cluster", "status", "ps")["state"] == "configured"  # nothing was changed


def test_garbage_to_every_poll_is_said_when_the_wait_times_out(status_cluster: tuple[CLI, FaultProxy]) -> None:
    pcli, proxy = status_cluster
    proxy.plan.clear()
    proxy.add(*["garbage"] * 1000)
    try:
        result = pcli("cluster", "status", "ps", "--wait", "--timeout", "3")
    finally:
        proxy.plan.clear()
    assert result.returncode == 4, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: cluster 'ps' was not configured within 3 s; the last poll failed: ")
    assert "with a body that is not JSON: <<< ~~ upstream sent something that is not JSON ~~ >>>" in first
    assert "second line" not in result.stderr and "\x1b" not in result.stderr
    assert "cause: timeout" in result.stderr


def test_version_checks_the_credentials(status_cluster: tuple[CLI, FaultProxy]) -> None:
    pcli, proxy = status_cluster
    accepted = pcli("infra", "version")
    assert accepted.returncode == 0, accepted.stderr
    assert "credentials accepted (" in accepted.stdout
    # IM answers /version (no credentials needed) and refuses them on the authenticated call.
    proxy.plan.clear()
    proxy.seen.clear()
    proxy.add("pass", "status:401", "status:401")
    refused = pcli("infra", "version")
    proxy.plan.clear()
    assert [(s.path, s.fault) for s in proxy.seen[:2]] == [("/version", "pass"), ("/infrastructures", "status:401")]
    assert refused.returncode == 3, refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.startswith("error: IM refused the credentials (401): injected by the fault proxy")
    assert "cause: auth" in refused.stderr


def test_contmsg_has_json_output(status_cluster: tuple[CLI, FaultProxy]) -> None:
    pcli, _ = status_cluster
    infra = record(pcli.home, "ps").infra_id
    text = pcli("infra", "contmsg", infra)
    assert text.returncode == 0, text.stderr
    data = pcli.json("infra", "contmsg", infra)
    assert set(data) == {"infra_id", "contmsg"} and data["infra_id"] == infra
    assert "Contextualization disabled" in data["contmsg"]
    assert data["contmsg"].rstrip("\n") == text.stdout.rstrip("\n")
