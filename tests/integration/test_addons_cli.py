"""cluster inventory / install / verify and edge create, through the real CLI.

Against the real IM (local-sim: made-up addresses, unreachable in the namespace) and against real sshd hosts on
loopback (the edge route, whose inventory the user writes). No Kubernetes API server exists here: the runs stop
where the playbooks need one (or the network), and the tests check that they stop there, clearly.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from provisioner.state import Phase, Store
from tests.clihelper import CLI
from tests.conftest import RunningIM, SSHLab

PLANTED = "Planted-Oscar-Pass-4b1d9e"


def edge_inventory(lab: SSHLab, path: Path, *, jump_wn2: bool = True) -> Path:
    common = {
        "ansible_user": lab.front.user,
        "ansible_ssh_private_key_file": str(lab.client_key),
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    wn2: dict[str, object] = {"ansible_host": lab.wn2.address}
    if jump_wn2:
        wn2["provision_jump"] = "edge-server"
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


def test_edge_route_preflight_install_failure_and_verify(ssh_lab: SSHLab, edge_cli: CLI, tmp_path: Path) -> None:
    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml")
    name = "edge1"
    # 1. Preflight: K3s and every add-on role check the hosts and their inputs, for real, over SSH.
    pre = edge_cli(
        "edge",
        "create",
        name,
        "--inventory",
        str(inventory),
        "--preflight",
        "--set",
        f"oscar_password={PLANTED}",
        "-o",
        "json",
    )
    assert pre.returncode == 0, pre.stderr
    report = json.loads(pre.stdout)
    assert report["preflight_only"] is True
    assert set(report["stats"]) == {"edge-server", "edge-agent-1", "edge-agent-2"}
    assert all(host["ok"] for host in report["ssh"])
    known = (edge_cli.home / "known_hosts" / name).read_text()
    assert all(h.address in known for h in ssh_lab.hosts)
    phases = [p for p, _ in journal(edge_cli.home, name)]
    assert phases[:3] == [Phase.REGISTERED.value, Phase.INSTALLING.value, Phase.INSTALLED.value]

    # 2. The real install stops where the network is needed (K3s download): exit 1 naming the task and host.
    full = edge_cli("edge", "create", name, "--inventory", str(inventory))
    assert full.returncode == 1, full.stderr
    first = full.stderr.strip().splitlines()[0]
    # Every host downloads K3s in parallel; the message names all that failed, in a stable order.
    assert "task 'Download K3s" in first
    assert "edge-agent-1, edge-agent-2, edge-server" in first or "edge-server:" in first
    failed = [d for p, d in journal(edge_cli.home, name) if p == Phase.INSTALL_FAILED.value]
    assert failed and "edge-server" in failed[-1]["host"] and failed[-1]["task"]

    # 3. verify: SSH is fine on every node; Kubernetes and OSCAR are not there: one report, exit 1.
    checked = edge_cli("cluster", "verify", name, "-o", "json", "--timeout", "5")
    assert checked.returncode == 1
    doc = json.loads(checked.stdout)
    by_name = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] is False
    for host in ("edge-server", "edge-agent-1", "edge-agent-2"):
        assert by_name[f"ssh {host}"]["status"] == "ok"
    assert by_name["kubernetes nodes"]["status"] == "failed"
    assert by_name["oscar health"]["status"] == "failed"

    # Secrets: the planted password and the generated K3s token are nowhere but the secrets file.
    secrets = yaml.safe_load((edge_cli.home / "secrets" / f"{name}.yaml").read_text())
    assert secrets["oscar_password"] == PLANTED and secrets.get("k3s_token")
    for value in (PLANTED, secrets["k3s_token"]):
        assert grep_home(edge_cli.home, value) == []
        assert value not in pre.stdout + pre.stderr + full.stdout + full.stderr + checked.stdout
    runs = sorted((edge_cli.home / "runs" / name).iterdir())
    assert len(runs) == 2 and all((run / "stdout").exists() for run in runs)

    # The registry lists it; destroy forgets it (K3s stays on the hosts) and its secrets.
    listed = edge_cli.json("cluster", "list")
    assert [c["name"] for c in listed] == [name]  # type: ignore[index]
    gone = edge_cli("cluster", "destroy", name, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not (edge_cli.home / "secrets" / f"{name}.yaml").exists()
