"""cluster inventory / install / verify and edge create, through the real CLI.

Against the real IM (local-sim: made-up addresses, unreachable in the namespace) and against real sshd hosts on
loopback (the edge route, whose inventory the user writes). No Kubernetes API server exists here: the runs stop
where the playbooks need one (or the network), and the tests check that they stop there, clearly. verify's own
checks run for real against stand-ins: ``kubectl`` on the front-end's PATH (tests/stubkube.py) and an OSCAR
answering on the front-end's NodePort (tests/fakeoscar.py).

The CLI runs in the test's tmp_path (tests/clihelper.py); the inventories it writes go under its home (PROVISION_HOME).
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.state import Phase, Store
from tests import stubkube
from tests.clihelper import CLI, record_installed_edge
from tests.conftest import RunningIM, SSHLab
from tests.fakeoscar import fake_oscar

PLANTED = "Planted-Oscar-Pass-4b1d9e"
PLANTED_TOKEN = "Planted-OneData-Token-7c21f0a9"
PLANTED_REGISTRY = "Planted-Registry-Pass-55e1"
PLANTED_BECOME = "Planted-Become-Pass-3f0d"
ALL_COMPONENTS = "knative,yunikorn,minio,onedata,oscar,registry"
# The inputs OneData and the registry need (their preflights check them; nothing here contacts those hosts).
EDGE_SETS = (
    "--set",
    f"oscar_password={PLANTED}",
    "--set",
    "onedata_host=oneprovider.example.org",
    "--set",
    "onedata_space=lab-space",
    "--set",
    f"onedata_token={PLANTED_TOKEN}",
    "--set",
    "registry_server=registry.example.org:5000",
    "--set",
    "registry_user=robot",
    "--set",
    f"registry_password={PLANTED_REGISTRY}",
)


def edge_inventory(lab: SSHLab, path: Path, *, become_password: str | None = None) -> Path:
    common = {
        "ansible_user": lab.front.user,
        "ansible_ssh_private_key_file": str(lab.client_key),
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if become_password is not None:
        common["ansible_become_password"] = become_password
    # wn2 has no public address: only the front-end reaches it (tests/conftest.py).
    wn2: dict[str, object] = {"ansible_host": lab.wn2.address, "provision_jump": "edge-server"}
    doc = {
        "all": {
            "vars": common,
            "children": {
                "front": {"hosts": {"edge-server": {"ansible_host": lab.front.address}}},
                "wn": {"hosts": {"edge-agent-1": {"ansible_host": lab.wn1.address}, "edge-agent-2": wn2}},
            },
        }
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def edge_cli(tmp_path: Path) -> CLI:
    # Edge clusters never talk to IM: the endpoint below is never contacted.
    return CLI(tmp_path / "home", "http://127.0.0.1:9", tmp_path / "no-auth-file")


@pytest.fixture
def kube(ssh_lab: SSHLab) -> Iterator[Path]:
    """The front-end's stand-in kubectl: down (no nodes.json) before and after the test."""
    stubkube.set_nodes(ssh_lab.kube_state, None)
    yield ssh_lab.kube_state
    stubkube.set_nodes(ssh_lab.kube_state, None)


def job_events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((run / "job_events").glob("*.json"))]


def journal(home: Path, name: str) -> list[tuple[str, dict[str, object]]]:
    with Store.open(home) as store:
        return [(e.phase.value, e.detail) for e in store.journal(name)]


def grep_home(home: Path, value: str, skip: tuple[str, ...] = ("secrets",)) -> list[Path]:
    hits = []
    for file in home.rglob("*"):
        skipped = any(part in skip for part in file.relative_to(home).parts)
        if file.is_file() and not skipped and value.encode() in file.read_bytes():
            hits.append(file)
    return hits


# --- the IM route (local-sim) -----------------------------------------------------------------------------------------


@pytest.mark.im
def test_inventory_of_an_im_cluster(local_im: RunningIM, tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    created = cli("cluster", "create", "inv", "-t", "oscar", "-s", "local-sim", "--set", "wn_num=2")
    assert created.returncode == 0, created.stderr
    target = tmp_path / "inventories" / "inv" / "hosts.yml"
    data = cli.json("cluster", "inventory", "inv", "--path", str(target))
    assert data["path"] == str(target.resolve())
    doc = yaml.safe_load(target.read_text())
    groups = doc["all"]["children"]
    assert list(groups["front"]["hosts"]) == ["fe"]
    workers = groups["wn"]["hosts"]
    assert len(workers) == 2
    # local-sim VMs have no public address: the workers are reached through the front-end.
    for host in workers.values():
        assert host["provision_jump"] == "fe"
        assert "ProxyCommand=" in host["ansible_ssh_common_args"]
    # The Dummy cloud gives passwords, not keys: they go to 0600 host_vars, never into hosts.yml.
    assert "password" not in target.read_text()
    host_vars = sorted((target.parent / "host_vars").iterdir())
    assert [p.name for p in host_vars] == ["fe.yml", *sorted(f"{h}.yml" for h in workers)]
    for file in host_vars:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    # Install waits for SSH, which the made-up addresses never answer: exit 4, naming the nodes.
    result = cli("cluster", "install", "inv", "--ssh-timeout", "2", "--inventory-path", str(target))
    assert result.returncode == 4, result.stderr
    assert "not answering" in result.stderr and "10.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    destroyed = cli("cluster", "destroy", "inv", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr


@pytest.mark.im
def test_create_with_install_chains_the_install_after_configured(local_im: RunningIM, tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    result = cli("cluster", "create", "chain", "-t", "oscar", "-s", "local-sim", "--install", "--ssh-timeout", "2")
    # The cluster reached configured in IM; the install then waited for SSH on the made-up addresses.
    assert result.returncode == 4, result.stderr
    assert "waiting for SSH" in result.stderr
    with Store.open(cli.home) as store:
        phases = [e.phase.value for e in store.journal("chain")]
    assert "configured" in phases
    assert cli("cluster", "create", "x", "-t", "oscar", "-s", "local-sim", "--install", "--no-wait").returncode == 2
    assert cli("cluster", "destroy", "chain", "--yes").returncode == 0


@pytest.mark.im
def test_install_refuses_a_cluster_that_is_not_configured(local_im: RunningIM, tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    created = cli.json("cluster", "create", "halted", "-t", "oscar", "-s", "local-sim")
    assert created["state"] == "configured"  # type: ignore[index]
    client = local_im.client()
    try:
        infra = created["infra_id"]  # type: ignore[index]
        client.stop(infra)
        while client.state(infra).state != "stopped":  # IM stops the Dummy VMs at once; no timing asserted
            time.sleep(0.2)
        result = cli("cluster", "install", "halted", "--ssh-timeout", "600")
        # Refused at once (exit 1), naming the state and what to run; no SSH wait, no inventory, no Ansible run.
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[0] == "error: cluster 'halted' is stopped in IM, not configured: nothing was installed"
        assert "provision cluster status halted" in result.stderr
        assert "waiting for SSH" not in result.stderr and "Traceback" not in result.stderr
        phases = [p for p, _ in journal(cli.home, "halted")]
        assert Phase.INSTALLING.value not in phases
        assert not (cli.home / "inventories" / "halted").exists()
        assert not (cli.home / "runs" / "halted").exists()
        with_install = cli("cluster", "create", "halted", "-t", "oscar", "-s", "local-sim", "--install")
        assert with_install.returncode == 1 and "is stopped in IM" in with_install.stderr
    finally:
        client.close()
        assert cli("cluster", "destroy", "halted", "--yes").returncode == 0


@pytest.mark.im
def test_install_refuses_bad_components_before_anything_runs(local_im: RunningIM, tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    before = local_im.client().list_infrastructures()
    result = cli("cluster", "install", "nosuch", "--components", "knative,openfaas")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[0].startswith("error: --components: unknown component 'openfaas'")
    assert local_im.client().list_infrastructures() == before


# --- the edge route (real sshd hosts) --------------------------------------------------------------------------------


def test_edge_bad_inventory_is_refused_with_one_line(edge_cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"front": {"hosts": {"a": {}, "b": {}}}}))
    result = edge_cli("edge", "create", "edge-bad", "--inventory", str(bad))
    assert result.returncode == 2
    assert "front must have exactly one host" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error line and, at most, a hint
    with Store.open(edge_cli.home) as store:
        assert store.get_cluster("edge-bad") is None


def test_edge_route_preflight_install_failure_and_verify(
    ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path, kube: Path
) -> None:
    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml", become_password=PLANTED_BECOME)
    name = "edge1"
    # 1. Preflight of every component: K3s and each add-on role check the hosts and their inputs, for real, over SSH.
    pre = edge_cli(
        "edge", "create", name, "--inventory", str(inventory), "--preflight", "--components", ALL_COMPONENTS,
        *EDGE_SETS, "-o", "json",
    )  # fmt: skip
    assert pre.returncode == 0, pre.stderr
    report = json.loads(pre.stdout)
    assert report["preflight_only"] is True
    assert report["components"] == ALL_COMPONENTS.split(",")
    assert set(report["stats"]) == {"edge-server", "edge-agent-1", "edge-agent-2"}
    assert all(host["ok"] for host in report["ssh"])
    known = (edge_cli.home / "known_hosts" / name).read_text()
    assert all(h.address in known for h in ssh_lab.hosts)
    # A preflight records nothing: no registry row, no journal, no secrets file.
    with Store.open(edge_cli.home) as store:
        assert store.get_cluster(name) is None
    assert journal(edge_cli.home, name) == []
    assert not (edge_cli.home / "secrets" / f"{name}.yaml").exists()
    # Each role's preflight tasks ran through ansible-runner and passed (ok events in the run's job_events).
    (run,) = sorted((edge_cli.home / "runs" / name).iterdir())
    events = job_events(run)
    ok_roles = {e["event_data"].get("role") for e in events if e["event"] == "runner_on_ok"}
    assert {"k3s", "kube_common", *ALL_COMPONENTS.split(",")} <= ok_roles, ok_roles
    assert not [e for e in events if e["event"] in ("runner_on_failed", "runner_on_unreachable")]
    tasks = {e["event_data"].get("task") for e in events if e["event"] == "runner_on_ok"}
    for task in ("Check the OneData variables", "Check registry_password", "Check the YuniKorn queues"):
        assert task in tasks
    assert "Run kubectl version --client" not in tasks  # kube_tools: K3s is not there yet
    # The inventory (under PROVISION_HOME by default, never the working directory) keeps the become password 0600.
    host_vars = edge_cli.home / "inventories" / name / "host_vars"
    for host in ("edge-server", "edge-agent-1", "edge-agent-2"):
        file = host_vars / f"{host}.yml"
        assert yaml.safe_load(file.read_text()) == {"ansible_become_password": PLANTED_BECOME}
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert PLANTED_BECOME not in (edge_cli.home / "inventories" / name / "hosts.yml").read_text()

    # 2. The real install stops where the network is needed (K3s download): exit 1 naming the task and host.
    full = edge_cli("edge", "create", name, "--inventory", str(inventory), *EDGE_SETS)
    assert full.returncode == 1, full.stderr
    phases = [p for p, _ in journal(edge_cli.home, name)]
    assert phases == [Phase.REGISTERED.value, Phase.INSTALLING.value, Phase.INSTALL_FAILED.value]
    first = full.stderr.strip().splitlines()[0]
    # Every host downloads K3s in parallel; the message names all that failed, in a stable order.
    assert "task 'Download K3s" in first
    assert "edge-agent-1, edge-agent-2, edge-server" in first or "edge-server:" in first
    failed = [d for p, d in journal(edge_cli.home, name) if p == Phase.INSTALL_FAILED.value]
    assert failed and "edge-server" in failed[-1]["host"] and failed[-1]["task"]

    # 3. verify: SSH is fine on every node; Kubernetes (the API server is down) and OSCAR are not: exit 1.
    checked = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
    assert checked.returncode == 1
    doc = json.loads(checked.stdout)
    by_name = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] is False
    for host in ("edge-server", "edge-agent-1", "edge-agent-2"):
        assert by_name[f"ssh {host}"]["status"] == "ok"
    assert by_name["kubernetes nodes"]["status"] == "failed"
    assert by_name["kubernetes nodes"]["detail"] == f"kubectl get nodes: {stubkube.DOWN}"
    assert by_name["oscar health"]["status"] == "failed"
    assert by_name["oscar health"]["detail"].startswith(f"http://{ssh_lab.front.address}:30301/health: ")

    # 4. With the nodes Ready and OSCAR on the server's NodePort 30301 (K3s has no Traefik with Knative): all green.
    nodes = [stubkube.node("edge-server"), stubkube.node("edge-agent-1"), stubkube.node("edge-agent-2")]
    stubkube.set_nodes(kube, nodes)
    with fake_oscar(ssh_lab.front.address, 30301, password=PLANTED):
        green = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
        assert green.returncode == 0, green.stdout + green.stderr
        checks = {c["name"]: c for c in json.loads(green.stdout)["checks"]}
        assert {c["status"] for c in checks.values()} == {"ok"}, checks
        assert checks["kubernetes nodes"]["detail"] == "3/3 nodes Ready"
        assert checks["oscar health"]["detail"].startswith(f"http://{ssh_lab.front.address}:30301/health answered 200")
        assert (
            "serverless backend knative, yunikorn off, minio http://minio.minio:9000"
            in checks["oscar config"]["detail"]
        )
        # One node NotReady: that check fails, naming it; exit 1.
        stubkube.set_nodes(kube, [*nodes[:2], stubkube.node("edge-agent-2", ready=False, reason="KubeletNotReady")])
        sick = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
    assert sick.returncode == 1
    checks = {c["name"]: c for c in json.loads(sick.stdout)["checks"]}
    assert checks["kubernetes nodes"] == {
        "name": "kubernetes nodes",
        "status": "failed",
        "detail": "2/3 Ready; not ready: edge-agent-2 (KubeletNotReady)",
    }
    assert checks["oscar health"]["status"] == "ok" and checks["oscar config"]["status"] == "ok"
    assert "not ready: edge-agent-2" in sick.stderr
    # kubectl ran on the server with K3s's kubeconfig (directly: the SSH user is root here).
    gets = [c for c in stubkube.calls(kube) if c["argv"][:2] == ["get", "nodes"]]
    assert gets and {c["kubeconfig"] for c in gets} == {"/etc/rancher/k3s/k3s.yaml"}

    # Secrets: the planted ones and the generated K3s token are nowhere but the secrets file (the become password
    # only in the inventory's 0600 host_vars).
    secrets = yaml.safe_load((edge_cli.home / "secrets" / f"{name}.yaml").read_text())
    assert secrets["oscar_password"] == PLANTED and secrets.get("k3s_token")
    outputs = [pre, full, checked, green, sick]
    for value in (PLANTED, PLANTED_TOKEN, PLANTED_REGISTRY, PLANTED_BECOME, secrets["k3s_token"]):
        assert grep_home(edge_cli.home, value, skip=("secrets", "host_vars")) == []
        assert not [r for r in outputs if value in r.stdout + r.stderr]
    runs = sorted((edge_cli.home / "runs" / name).iterdir())
    assert len(runs) == 2 and all((run / "stdout").exists() for run in runs)

    # The registry lists it; destroy forgets it (K3s stays on the hosts) and its secrets.
    listed = edge_cli.json("cluster", "list")
    assert [c["name"] for c in listed] == [name]  # type: ignore[index]
    gone = edge_cli("cluster", "destroy", name, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not (edge_cli.home / "secrets" / f"{name}.yaml").exists()


def test_partial_install_keeps_what_the_cluster_has(ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path, kube: Path) -> None:
    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml")
    name = "edge-part"
    # Recorded by a real edge create (a preflight records nothing), which stops at the K3s download here.
    created = edge_cli("edge", "create", name, "--inventory", str(inventory), *EDGE_SETS)
    assert created.returncode == 1 and "task 'Download K3s" in created.stderr, created.stderr
    # As a successful install of the default components leaves the record (no K3s can be installed here).
    with Store.open(edge_cli.home) as store:
        rec = store.get_cluster(name)
        assert rec is not None
        store.update_cluster(name, extra={**rec.extra, "components": ["knative", "minio", "oscar"]})
    # Only the registry now: K3s keeps Traefik off (Knative is installed), whatever this selection says.
    partial = edge_cli("cluster", "install", name, "--components", "registry", "--preflight", "-o", "json")
    assert partial.returncode == 0, partial.stderr
    assert json.loads(partial.stdout)["components"] == ["registry"]
    installing = [d for p, d in journal(edge_cli.home, name) if p == Phase.INSTALLING.value]
    assert installing[0]["k3s_disable_traefik"] is True  # the edge create: Knative selected
    assert installing[-1] == {
        "components": ["registry"],
        "playbook": "edge.yml",
        "preflight_only": True,
        "k3s_disable_traefik": True,
    }
    # verify still checks what the cluster has: OSCAR included.
    stubkube.set_nodes(kube, [stubkube.node("edge-server")])
    with fake_oscar(ssh_lab.front.address, 30301, password=PLANTED):
        checked = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
    checks = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
    assert checks["oscar config"]["status"] == "ok", checks
    # One node for the inventory's three hosts: the two that never joined fail the check, though all are Ready.
    assert checks["kubernetes nodes"] == {
        "name": "kubernetes nodes",
        "status": "failed",
        "detail": "1 of 3 hosts are nodes (all Ready)",
    }
    assert checked.returncode == 1
    assert edge_cli("cluster", "destroy", name, "--yes").returncode == 0


def test_edge_create_again_keeps_the_recorded_inputs(ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path) -> None:
    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml")
    name = "edge-again"
    # A real create records the cluster (and stops at the K3s download here: exit 1).
    first = edge_cli("edge", "create", name, "--inventory", str(inventory), "--components", "registry", *EDGE_SETS)
    assert first.returncode == 1 and "task 'Download K3s" in first.stderr, first.stderr
    with Store.open(edge_cli.home) as store:
        recorded = store.get_cluster(name)
    assert recorded is not None and recorded.inputs["onedata_host"] == "oneprovider.example.org"
    secrets = (edge_cli.home / "secrets" / f"{name}.yaml").read_text()
    journaled = journal(edge_cli.home, name)
    # A preflight with one new value and none of the first run's: they are kept, not reset to the template's
    # defaults; the default components follow the kept inputs (OneData and the registry are still asked for).
    again = edge_cli(
        "edge", "create", name, "--inventory", str(inventory), "--preflight", "--set", "minio_buckets=inbox",
        "-o", "json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["components"] == ["knative", "minio", "onedata", "oscar", "registry"]
    # ... and it records nothing: the record, the journal and the secrets file are as they were.
    with Store.open(edge_cli.home) as store:
        rec = store.get_cluster(name)
    assert rec is not None and rec.inputs == recorded.inputs
    assert journal(edge_cli.home, name) == journaled
    assert (edge_cli.home / "secrets" / f"{name}.yaml").read_text() == secrets
    # The real run again, with the new value: recorded over the kept inputs.
    third = edge_cli("edge", "create", name, "--inventory", str(inventory), "--set", "minio_buckets=inbox")
    assert third.returncode == 1 and "task 'Download K3s" in third.stderr, third.stderr
    with Store.open(edge_cli.home) as store:
        rec = store.get_cluster(name)
    assert rec is not None
    assert rec.inputs == {**recorded.inputs, "minio_buckets": ["inbox"]}
    assert edge_cli("cluster", "destroy", name, "--yes").returncode == 0


def test_edge_preflight_on_refused_ports_fails_at_once_and_records_nothing(edge_cli: CLI, tmp_path: Path) -> None:
    from tests.sshd import free_port

    # Nothing listens on these ports: each connection is refused at once.
    doc = {
        "front": {"hosts": {"edge-server": {"ansible_host": "127.0.0.2", "ansible_port": free_port("127.0.0.2")}}},
        "wn": {"hosts": {"edge-agent-1": {"ansible_host": "127.0.0.3", "ansible_port": free_port("127.0.0.3")}}},
    }
    inventory = tmp_path / "refused.yml"
    inventory.write_text(yaml.safe_dump(doc))
    name = "edge-refused"
    # The default --ssh-timeout (600 s, longer than the CLI helper's 300 s limit): a refusal ends the wait.
    result = edge_cli("edge", "create", name, "--inventory", str(inventory), "--preflight", *EDGE_SETS)
    assert result.returncode == 3, result.stderr
    error = result.stderr
    assert "SSH refused:" in error and error.count("connection refused") >= 2, error
    assert "127.0.0.2" in error and "127.0.0.3" in error
    # The hint fits hosts the user runs, not a cloud's security groups.
    assert "security group" not in error and "sshd runs on each host" in error
    assert "Traceback" not in error
    # Nothing recorded: no registry row, no journal, no secrets file (the planted passwords written nowhere).
    with Store.open(edge_cli.home) as store:
        assert store.get_cluster(name) is None
    assert journal(edge_cli.home, name) == []
    assert not (edge_cli.home / "secrets").exists() or not list((edge_cli.home / "secrets").iterdir())
    for value in (PLANTED, PLANTED_TOKEN, PLANTED_REGISTRY):
        assert grep_home(edge_cli.home, value, skip=()) == []


def test_edge_ssh_wait_names_the_hosts_still_awaited(ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path) -> None:
    import socket

    from tests.sshd import free_port

    # A host that accepts TCP but never speaks SSH (no answer: waited for), one that refuses (not waited for),
    # and the lab's front-end (answers).
    silent = socket.socket()
    silent.bind(("127.0.0.3", 0))
    silent.listen(8)
    try:
        doc = {
            "all": {
                "vars": {"ansible_user": ssh_lab.front.user, "ansible_ssh_private_key_file": str(ssh_lab.client_key)},
                "children": {
                    "front": {"hosts": {"edge-server": {"ansible_host": ssh_lab.front.address}}},
                    "wn": {
                        "hosts": {
                            "edge-mute": {"ansible_host": "127.0.0.3", "ansible_port": silent.getsockname()[1]},
                            "edge-off": {"ansible_host": "127.0.0.4", "ansible_port": free_port("127.0.0.4")},
                        }
                    },
                },
            }
        }
        inventory = tmp_path / "mixed.yml"
        inventory.write_text(yaml.safe_dump(doc))
        result = edge_cli(
            "edge", "create", "edge-mixed", "--inventory", str(inventory), "--preflight", "--ssh-timeout", "2"
        )  # fmt: skip
    finally:
        silent.close()
    # A host that does not answer is waited for until the timeout: exit 4.
    assert result.returncode == 4, result.stderr
    lines = result.stderr.splitlines()
    progress = [line for line in lines if line.startswith("waiting for SSH: 1/3 nodes answer")]
    assert progress, result.stderr
    assert "; still waiting for: edge-mute (" in progress[0] and "127.0.0.3" in progress[0]
    assert "not waiting for (connection refused): edge-off" in progress[0]
    assert "timed out after 2 s waiting for SSH" in result.stderr
    assert "Traceback" not in result.stderr and "paramiko" not in result.stderr  # one line per host, no noise
    assert "security group" not in result.stderr and "sshd runs on each host" in result.stderr
    with Store.open(edge_cli.home) as store:
        assert store.get_cluster("edge-mixed") is None


def test_verify_reports_a_changed_host_key_and_goes_on(
    ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path, kube: Path
) -> None:
    from provisioner import tosca
    from tests.conftest import SESSION_PATH
    from tests.sshd import SSHHost, free_port

    # A front-end of its own (this test changes its identity), with the stand-in kubectl; the lab's wn1 as agent.
    env = {"PATH": f"{ssh_lab.stub_bin}:{SESSION_PATH}", stubkube.STATE_ENV: str(kube)}
    server = SSHHost("rebuilt", "127.0.0.9", free_port("127.0.0.9"), tmp_path / "rebuilt", ssh_lab.client_key, env=env)
    server.start()
    try:
        common = {"ansible_user": server.user, "ansible_ssh_private_key_file": str(ssh_lab.client_key)}
        doc = {
            "all": {
                "vars": common,
                "children": {
                    "front": {"hosts": {"edge-server": {"ansible_host": server.address, "ansible_port": server.port}}},
                    "wn": {"hosts": {"edge-agent-1": {"ansible_host": ssh_lab.wn1.address}}},
                },
            }
        }
        inventory = tmp_path / "rebuilt-hosts.yml"
        inventory.write_text(yaml.safe_dump(doc))
        name = "edge-rekeyed"
        record_installed_edge(edge_cli.home, name, inventory, components=["knative", "minio", "oscar"])
        tosca.SecretStore(edge_cli.home, name).update({"oscar_password": PLANTED})
        stubkube.set_nodes(kube, [stubkube.node("edge-server"), stubkube.node("edge-agent-1")])
        with fake_oscar(server.address, 30301, password=PLANTED):
            first = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
            assert first.returncode == 0, first.stdout + first.stderr  # the keys are pinned now
            known = edge_cli.home / "known_hosts" / name
            pinned = known.read_text()
            server.replace_host_key()
            checked = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
        # A report, not an abort: that host's SSH check fails with the refusal and the line to run; the rest goes on.
        assert checked.returncode == 1, checked.stderr
        assert "Traceback" not in checked.stderr
        checks = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
        endpoint = f"[{server.address}]:{server.port}"
        ssh_front = checks["ssh edge-server"]
        assert ssh_front["status"] == "failed"
        assert f"host key of {endpoint} (cluster {name}) changed" in ssh_front["detail"]
        assert f"ssh-keygen -R '{endpoint}' -f {known}" in ssh_front["detail"]
        assert checks["ssh edge-agent-1"]["status"] == "ok"
        assert checks["kubernetes nodes"] == {
            "name": "kubernetes nodes",
            "status": "skipped",
            "detail": "the front-end's host key changed: kubectl not run (see ssh edge-server)",
        }
        assert checks["oscar health"]["status"] == "ok" and checks["oscar config"]["status"] == "ok"
        assert checks["ssh edge-server"]["detail"] in checked.stderr  # the error line names it
        # Refused, never accepted: the old key is still the pinned one.
        assert known.read_text() == pinned
        assert PLANTED not in checked.stdout + checked.stderr
    finally:
        server.stop()


def test_an_install_past_its_playbook_timeout_exits_4_naming_the_task_and_frees_the_lock(
    ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner import addons
    from provisioner.cli.main import main_exit_code
    from provisioner.state import cluster_lock
    from tests.playbooks.test_playbook_timeout import SLEEP_TASK, sleeping_playbook

    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml")
    name = "edge-slow"
    record_installed_edge(edge_cli.home, name, inventory)
    # The real command, in this process (so that the lock it held can be tried here after), with a playbook that
    # sleeps on every host in place of edge.yml.
    monkeypatch.setattr(addons, "EDGE_PLAYBOOK", str(sleeping_playbook(tmp_path / "sleep.yml")))
    for key, value in edge_cli.env.items():
        if key.startswith("PROVISION_"):
            monkeypatch.setenv(key, value)
    code = main_exit_code(["cluster", "install", name, "--playbook-timeout", "2"])
    error = capsys.readouterr().err
    assert code == 4, error
    assert f"ansible-playbook was stopped after 2 s, during task '{SLEEP_TASK}'" in error
    assert "--playbook-timeout" in error and "Traceback" not in error
    failed = [d for p, d in journal(edge_cli.home, name) if p == Phase.INSTALL_FAILED.value]
    assert failed and failed[-1]["task"] == SLEEP_TASK and failed[-1]["status"] == "timeout"
    # The cluster lock was released: taken again at once, in the same process (it is not re-entrant).
    with cluster_lock(edge_cli.home, name, timeout=0, purpose="test"):
        pass
