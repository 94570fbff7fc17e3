"""The cluster lifecycle through the real CLI against the real IM (local-sim), checked against IM itself.

The tests marked ``BOTH_BACKENDS`` run twice: on the embedded SQLite state, and on a PostgreSQL database (a real
server, tests/pglab.py: ``PROVISION_STATE_URL``): create/scale/list/outputs/reconfigure/logs/destroy, a rerun that
resumes, a create killed after its POST then resumed, a lost create answer adopted, no secret in the state."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from provisioner.im import IMClient
from provisioner.settings import ENV_STATE_URL
from provisioner.state import Phase
from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.im


@pytest.fixture
def state_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment naming the state backend: none (SQLite, the default), or a fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return {ENV_STATE_URL: request.getfixturevalue("pg_url")}
    return {}


BOTH_BACKENDS = pytest.mark.parametrize("state_env", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def cli(local_im: RunningIM, tmp_path: Path, state_env: dict[str, str]) -> CLI:
    made = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    made.env.update(state_env)
    return made


def im_vms(client: IMClient, infra_id: str) -> dict[str, str]:
    """IM's own view: VM id -> node name."""
    return {vm: str(client.vm_info(infra_id, vm).name) for vm in client.vm_ids(infra_id)}


def workers_in_im(client: IMClient, infra_id: str) -> list[str]:
    return sorted((vm for vm, name in im_vms(client, infra_id).items() if name == "wn"), key=int)


@BOTH_BACKENDS
def test_full_lifecycle(cli: CLI, im_client: IMClient) -> None:
    created = cli.json("cluster", "create", "life", "--template", "oscar", "--site", "local-sim", "--set", "wn_num=2")
    assert isinstance(created, dict)
    infra = created["infra_id"]
    assert created["state"] == "configured"
    assert created["workers"] == 2
    assert {vm["role"] for vm in created["vms"]} == {"front", "wn"}
    assert set(created) >= {"name", "infra_id", "im_url", "template", "site", "state", "workers", "vms"}
    assert im_vms(im_client, infra) == {"0": "front", "1": "wn", "2": "wn"}

    scaled = cli.json("cluster", "scale", "life", "--workers", "4")
    assert isinstance(scaled, dict)
    assert scaled["workers"] == 4
    assert workers_in_im(im_client, infra) == ["1", "2", "3", "4"]

    named = "3"
    shrunk = cli.json("cluster", "scale", "life", "--workers", "1", "--remove", named)
    assert isinstance(shrunk, dict)
    assert shrunk["workers"] == 1
    left = workers_in_im(im_client, infra)
    assert len(left) == 1
    assert named not in left
    assert len(im_client.vm_ids(infra)) == 2

    # The same count again is a no-op: no scaling entry in the journal, same VMs in IM.
    before = im_client.vm_ids(infra)
    again = cli.json("cluster", "scale", "life", "--workers", "1")
    assert isinstance(again, dict)
    assert again["workers"] == 1
    assert im_client.vm_ids(infra) == before
    with cli.store() as store:
        phases = [entry.phase for entry in store.journal("life")]
    assert phases.count(Phase.SCALED) == 2

    listed = cli.json("cluster", "list")
    assert isinstance(listed, list)
    assert [(c["name"], c["infra_id"], c["workers"]) for c in listed] == [("life", infra, 1)]
    outputs = cli.json("cluster", "outputs", "life")
    assert isinstance(outputs, dict)
    assert outputs["kube_api_endpoint"] == "https://10.0.0.1:6443"

    reconfigured = cli.json("cluster", "reconfigure", "life")
    assert isinstance(reconfigured, dict)
    assert reconfigured["state"] == "configured"
    logs = cli.json("cluster", "logs", "life")
    assert isinstance(logs, dict)
    assert "Contextualization disabled" in logs["log"]
    assert logs["failed_task"] is None

    destroyed = cli("cluster", "destroy", "life", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert infra not in im_client.list_infrastructures()
    assert cli.json("cluster", "list") == []
    with cli.store() as store:
        assert [e.phase for e in store.journal("life")][-2:] == [Phase.DESTROYING, Phase.DESTROYED]


@BOTH_BACKENDS
def test_rerun_resumes_and_different_inputs_refused(cli: CLI, im_client: IMClient) -> None:
    args = ("cluster", "create", "again", "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1")
    first = cli.json(*args)
    second = cli.json(*args)
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["infra_id"] == second["infra_id"]
    other = cli(*args[:-1], "wn_num=3")
    assert other.returncode == 2
    assert "already exists with other" in other.stderr
    assert "provision cluster scale again" in other.stderr
    assert cli("cluster", "destroy", "again", "--yes").returncode == 0
    assert first["infra_id"] not in im_client.list_infrastructures()


def test_bad_input_sends_nothing(cli: CLI, im_client: IMClient) -> None:
    before = im_client.list_infrastructures()
    for args, field in [
        (("--set", "wn_nmu=2"), "wn_num"),
        (("--set", "wn_num=-1"), "wn_num"),
        (("--set", "wn_num"), "--set"),
        (("--set", "minio_password=short"), "minio_password"),
    ]:
        result = cli("cluster", "create", "bad", "--template", "oscar", "--site", "local-sim", *args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2
        assert field in result.stderr
        assert "Traceback" not in result.stderr
    result = cli("cluster", "create", "Bad_Name", "--template", "oscar", "--site", "local-sim")
    assert result.returncode == 2
    assert result.stderr.startswith("error: NAME:")
    assert cli("cluster", "create", "x", "--template", "nope", "--site", "local-sim").returncode == 2
    assert cli("cluster", "create", "x", "--template", "oscar", "--site", "mars").returncode == 2
    assert im_client.list_infrastructures() == before
    assert cli.json("cluster", "list") == []


@BOTH_BACKENDS
def test_killed_right_after_post_then_create_again_adopts(
    local_im: RunningIM, proxy: FaultProxy, tmp_path: Path, im_client: IMClient, state_env: dict[str, str]
) -> None:
    cli = CLI(tmp_path / "home", proxy.url, local_im.auth_file)
    cli.env.update(state_env)
    before = set(im_client.list_infrastructures())
    args = ("cluster", "create", "crash", "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1")
    proxy.add("delay:2")  # IM gets the POST after the CLI is gone
    proc = cli.popen(*args)
    deadline = time.monotonic() + 30
    while not any(seen.method == "POST" for seen in proxy.seen) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proxy.wait_answered("POST")  # the proxy has now delivered the POST: IM created it
    assert len(set(im_client.list_infrastructures()) - before) == 1
    with cli.store() as store:
        assert store.last_phase("crash").phase == Phase.SUBMITTING  # type: ignore[union-attr]

    status = cli.json("cluster", "status", "crash")  # status finds it by its deployment id
    assert isinstance(status, dict)
    assert status["infra_id"] in set(im_client.list_infrastructures()) - before
    again = cli.json(*args)  # and create resumes it
    assert isinstance(again, dict)
    assert again["infra_id"] == status["infra_id"]
    created = set(im_client.list_infrastructures()) - before
    assert created == {again["infra_id"]}
    with cli.store() as store:
        assert Phase.ADOPTED in [e.phase for e in store.journal("crash")]
    assert cli("cluster", "destroy", "crash", "--yes").returncode == 0
    assert not set(im_client.list_infrastructures()) - before


@BOTH_BACKENDS
def test_lost_create_answer_is_adopted_not_repeated(
    local_im: RunningIM, proxy: FaultProxy, tmp_path: Path, im_client: IMClient, state_env: dict[str, str]
) -> None:
    cli = CLI(tmp_path / "home", proxy.url, local_im.auth_file)
    cli.env.update(state_env)
    before = set(im_client.list_infrastructures())
    proxy.add("reset")  # IM creates it, the answer is lost on the way back
    created = cli.json(
        "cluster", "create", "lost", "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1"
    )
    assert isinstance(created, dict)
    assert set(im_client.list_infrastructures()) - before == {created["infra_id"]}
    assert sum(1 for seen in proxy.seen if seen.method == "POST") == 1
    with cli.store() as store:
        assert Phase.ADOPTED in [e.phase for e in store.journal("lost")]
    assert cli("cluster", "destroy", "lost", "--yes").returncode == 0


def test_wait_survives_im_restart(cli: CLI, local_im: RunningIM, im_client: IMClient) -> None:
    created = cli.json("cluster", "create", "restart", "--template", "kubernetes", "--site", "local-sim", "--no-wait")
    assert isinstance(created, dict)
    from provisioner import localim

    # IM does not resume a contextualization its stop interrupted (the infrastructure comes back unconfigured): stop
    # it once the simulated deployment is done, so what is tested is the wait riding out IM's absence.
    deadline = time.monotonic() + 60
    while im_client.state(created["infra_id"]).state != "configured" and time.monotonic() < deadline:
        time.sleep(0.1)
    localim.stop(local_im.run_dir)
    try:
        waiting = cli.popen("cluster", "status", "restart", "--wait", "--timeout", "120", "-o", "json")
        time.sleep(2)
        assert waiting.poll() is None  # still waiting for IM
    finally:
        port = int(local_im.url.rsplit(":", 1)[1])
        localim.start(local_im.run_dir, local_im.venv, port=port)
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert json.loads(out)["state"] == "configured"
    assert cli("cluster", "destroy", "restart", "--yes").returncode == 0
    assert created["infra_id"] not in im_client.list_infrastructures()


def test_concurrent_scales_are_serialized(
    local_im: RunningIM, proxy: FaultProxy, tmp_path: Path, im_client: IMClient
) -> None:
    cli = CLI(tmp_path / "home", proxy.url, local_im.auth_file)
    created = cli.json("cluster", "create", "duo", "--template", "kubernetes", "--site", "local-sim")
    assert isinstance(created, dict)
    proxy.add("delay:1.5")  # the first scale holds the lock a while
    first = cli.popen("cluster", "scale", "duo", "--workers", "3")
    lock = next((cli.home / "locks").glob("cluster-duo*.lock"))
    deadline = time.monotonic() + 30
    while "cluster scale" not in lock.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = cli("--lock-timeout", "0.2", "cluster", "scale", "duo", "--workers", "2")
    assert busy.returncode == 5
    assert "busy" in busy.stderr
    second = cli.popen("cluster", "scale", "duo", "--workers", "2")
    assert first.wait(timeout=120) == 0
    assert second.wait(timeout=120) == 0
    assert len(workers_in_im(im_client, created["infra_id"])) == 2
    assert cli("cluster", "destroy", "duo", "--yes").returncode == 0


@pytest.mark.slow
def test_ten_parallel_destroys_leave_nothing(cli: CLI, im_client: IMClient) -> None:
    names = [f"par-{i}" for i in range(10)]
    creates = [
        cli.popen("cluster", "create", n, "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1")
        for n in names
    ]
    assert all(p.wait(timeout=180) == 0 for p in creates)
    ids = {c["name"]: c["infra_id"] for c in cli.json("cluster", "list")}  # type: ignore[union-attr]
    assert len(ids) == 10
    destroys = [cli.popen("cluster", "destroy", n, "--yes") for n in names]
    results = [p.wait(timeout=300) for p in destroys]
    assert results == [0] * 10, [p.stderr.read() for p in destroys if p.stderr]
    live = set(im_client.list_infrastructures())
    assert not live & set(ids.values())
    assert cli.json("cluster", "list") == []


def test_sync_rebuilds_the_registry(cli: CLI, local_im: RunningIM, tmp_path: Path, im_client: IMClient) -> None:
    created = cli.json("cluster", "create", "syncme", "--template", "kubernetes", "--site", "local-sim")
    assert isinstance(created, dict)
    fresh = CLI(tmp_path / "other-home", local_im.url, local_im.auth_file)
    report = fresh.json("cluster", "sync")
    assert isinstance(report, dict)
    assert "syncme" in report["adopted"]
    listed = fresh.json("cluster", "list")
    assert isinstance(listed, list)
    found = next(c for c in listed if c["name"] == "syncme")
    assert found["infra_id"] == created["infra_id"]
    assert found["workers"] == 1
    assert cli("cluster", "destroy", "syncme", "--yes").returncode == 0
    again = fresh.json("cluster", "sync")
    assert isinstance(again, dict)
    assert "syncme" in again["forgotten"]


@BOTH_BACKENDS
def test_secrets_stay_out_of_state_and_output(cli: CLI, im_client: IMClient) -> None:
    planted = "Planted-Secret-9f3k!"
    created = cli(
        "cluster",
        "create",
        "secret",
        "--template",
        "oscar",
        "--site",
        "local-sim",
        "--set",
        f"minio_password={planted}",
        "--set",
        f"oscar_password={planted}x",
        "-o",
        "json",
    )
    assert created.returncode == 0, created.stderr
    infra = json.loads(created.stdout)["infra_id"]
    assert planted in im_client.tosca(infra)  # IM got it...
    outputs = cli("cluster", "outputs", "secret", "-o", "json")
    status = cli("cluster", "status", "secret", "-o", "json", "-vv")
    texts = [created.stdout, created.stderr, outputs.stdout, status.stdout, status.stderr]
    assert not any(planted in text for text in texts)  # ...nobody else did
    secrets_file = cli.home / "secrets" / "secret.yaml"
    assert (secrets_file.stat().st_mode & 0o777) == 0o600
    for path in cli.home.rglob("*"):
        if path.is_file() and path != secrets_file:
            assert planted.encode() not in path.read_bytes(), path
    state = cli.state_text()
    assert "secret" in state and planted not in state  # the cluster is recorded there, its secrets are not
    assert cli("cluster", "destroy", "secret", "--yes").returncode == 0
    assert not secrets_file.exists()


def test_dry_run_predicts_what_create_does(cli: CLI, im_client: IMClient) -> None:
    args = ("cluster", "create", "drypred", "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1")
    before = im_client.list_infrastructures()
    plan = cli(*args, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "IM would launch" in plan.stdout
    assert "tosca_definitions_version" not in plan.stdout  # the plan, not the template...
    shown = cli(*args, "--dry-run", "--show-tosca")
    assert "tosca_definitions_version" in shown.stdout  # ...unless asked for
    as_json = cli.json(*args, "--dry-run")
    assert isinstance(as_json, dict)
    assert "tosca_definitions_version" in as_json["tosca"]
    assert im_client.list_infrastructures() == before

    created = cli.json(*args)
    assert isinstance(created, dict)
    real = cli(*args[:-1], "wn_num=5")
    dry = cli(*args[:-1], "wn_num=5", "--dry-run")
    assert real.returncode == dry.returncode == 2
    assert "already exists with other" in real.stderr
    assert dry.stderr == real.stderr.replace("NAME: cluster", "NAME: dry run: cluster")
    assert "would launch" not in dry.stdout
    same = cli(*args, "--dry-run")
    assert same.returncode == 0, same.stderr
    assert "would resume it" in same.stdout
    assert set(im_client.list_infrastructures()) - set(before) == {created["infra_id"]}
    assert cli("cluster", "destroy", "drypred", "--yes").returncode == 0


def test_changed_secret_on_rerun_is_refused(cli: CLI, im_client: IMClient) -> None:
    first, other = "First-Secret-7hq2", "Other-Secret-4kz8"
    args = ("cluster", "create", "rotate", "--template", "oscar", "--site", "local-sim", "--set", "wn_num=1")
    created = cli.json(*args, "--set", f"minio_password={first}")
    assert isinstance(created, dict)
    secrets_file = cli.home / "secrets" / "rotate.yaml"
    for extra in ((), ("--dry-run",)):
        changed = cli(*args, "--set", f"minio_password={other}", *extra)
        assert changed.returncode == 2, changed.stderr
        assert changed.stderr.startswith("error: minio_password: " + ("dry run: " if extra else "cluster"))
        assert "provision cluster destroy rotate" in changed.stderr  # how to rotate it
        assert first not in changed.stderr and other not in changed.stderr
        assert first in secrets_file.read_text()  # never overwritten
        assert other not in secrets_file.read_text()
    assert first in im_client.tosca(created["infra_id"])
    again = cli.json(*args, "--set", f"minio_password={first}")  # the same value resumes
    assert isinstance(again, dict)
    assert again["infra_id"] == created["infra_id"]
    kept = cli.json(*args)  # and so does leaving it out
    assert isinstance(kept, dict)
    assert kept["infra_id"] == created["infra_id"]
    assert cli("cluster", "destroy", "rotate", "--yes").returncode == 0


def test_lost_registry_then_create_adopts_instead_of_duplicating(
    cli: CLI, local_im: RunningIM, tmp_path: Path, im_client: IMClient
) -> None:
    args = ("cluster", "create", "orphan", "--template", "kubernetes", "--site", "local-sim", "--set", "wn_num=1")
    before = set(im_client.list_infrastructures())
    created = cli.json(*args)
    assert isinstance(created, dict)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (cli.home / name).unlink(missing_ok=True)
    again = cli.json(*args)
    assert isinstance(again, dict)
    assert again["infra_id"] == created["infra_id"]
    assert set(im_client.list_infrastructures()) - before == {created["infra_id"]}
    with cli.store() as store:
        assert Phase.ADOPTED in [e.phase for e in store.journal("orphan")]
        assert Phase.SUBMITTING not in [e.phase for e in store.journal("orphan")]

    # A registry rebuilt by sync resumes too: the adopted record carries what create compares.
    rebuilt = CLI(tmp_path / "rebuilt-home", local_im.url, local_im.auth_file)
    report = rebuilt.json("cluster", "sync")
    assert isinstance(report, dict)
    assert "orphan" in report["adopted"]
    resumed = rebuilt(*args, "-o", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["infra_id"] == created["infra_id"]
    # IM's secret values came with it: a scale from the rebuilt registry sends the same admin token.
    token = (cli.home / "secrets" / "orphan.yaml").read_text()
    assert (rebuilt.home / "secrets" / "orphan.yaml").read_text() == token
    different = rebuilt(*args[:-1], "wn_num=3")
    assert different.returncode == 2
    assert "already exists with other" in different.stderr
    assert set(im_client.list_infrastructures()) - before == {created["infra_id"]}
    assert cli("cluster", "destroy", "orphan", "--yes").returncode == 0


def test_sync_with_other_credentials_forgets_nothing(
    cli: CLI, local_im: RunningIM, tmp_path: Path, im_client: IMClient
) -> None:
    from provisioner.privfs import write_secret_file

    created = cli.json("cluster", "create", "mine", "--template", "kubernetes", "--site", "local-sim")
    assert isinstance(created, dict)
    stranger = tmp_path / "stranger.dat"
    write_secret_file(stranger, "id = im; type = InfrastructureManager; username = stranger; password = s7r4ng3r\n")
    other = cli("--auth", str(stranger), "cluster", "sync", "-o", "json")
    assert other.returncode == 0, other.stderr
    report = json.loads(other.stdout)
    assert report["forgotten"] == []
    assert report["not_visible"] == ["mine"]
    text = cli("--auth", str(stranger), "cluster", "sync")
    assert "not visible with these credentials (kept): mine" in text.stdout
    listed = cli.json("cluster", "list")
    assert isinstance(listed, list)
    assert [c["name"] for c in listed] == ["mine"]
    assert cli.json("cluster", "status", "mine")["infra_id"] == created["infra_id"]  # type: ignore[index]
    assert cli("cluster", "destroy", "mine", "--yes").returncode == 0


def test_sync_repoints_clusters_to_an_im_that_moved(
    local_im: RunningIM, proxy: FaultProxy, tmp_path: Path, im_client: IMClient
) -> None:
    cli = CLI(tmp_path / "home", proxy.url, local_im.auth_file)  # IM at its old address
    created = cli.json("cluster", "create", "mover", "--template", "kubernetes", "--site", "local-sim")
    assert isinstance(created, dict)
    assert created["im_url"] == proxy.url
    proxy.stop()  # the old address is gone
    report = cli.json("cluster", "sync", "--im-url", local_im.url)
    assert isinstance(report, dict)
    assert report["moved"] == ["mover"]
    assert report["forgotten"] == []
    status = cli.json("cluster", "status", "mover")
    assert isinstance(status, dict)
    assert (status["im_url"], status["infra_id"], status["state"]) == (local_im.url, created["infra_id"], "configured")
    assert cli("cluster", "destroy", "mover", "--yes").returncode == 0
    assert created["infra_id"] not in im_client.list_infrastructures()
