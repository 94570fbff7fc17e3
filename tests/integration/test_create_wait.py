"""``cluster create --wait`` against the real IM (local-sim): the outputs in the same answer, masked as
``cluster outputs`` masks them, and what the command sends IM: only the requests it needs, over one connection."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from provisioner.im import IMClient
from tests.clihelper import CLI, assert_human, loaded, run_reporting_modules
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.im

HIDDEN = "hidden-corp.org"  # a secret (minio_password) that is also the domain in the endpoints' URLs


@pytest.fixture
def cli(local_im: RunningIM, tmp_path: Path) -> CLI:
    return CLI(tmp_path / "home", local_im.url, local_im.auth_file)


def test_create_wait_json_carries_the_outputs_masked_as_outputs_masks_them(cli: CLI, im_client: IMClient) -> None:
    created = cli(
        "cluster",
        "create",
        "withouts",
        *("--template", "oscar", "--site", "local-sim"),
        *("--set", f"domain_name={HIDDEN}", "--set", "cert_user_email=ops@example.org"),
        *("--set", f"minio_password={HIDDEN}"),
        "--wait",
        "-o",
        "json",
    )
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)  # one JSON document: the cluster, and its outputs
    assert doc["state"] == "configured"
    assert {vm["role"] for vm in doc["vms"]} == {"front", "wn"}
    infra = doc["infra_id"]
    in_im = im_client.outputs(infra)
    assert in_im["oscar_endpoint"] == f"https://withouts.{HIDDEN}/"  # IM's outputs hold the secret...
    assert HIDDEN not in created.stdout  # ...the answer does not
    assert doc["outputs"]["oscar_endpoint"] == "https://withouts.***/"
    assert set(doc["outputs"]) == set(in_im)
    outputs = cli("cluster", "outputs", "withouts", "-o", "json")
    assert outputs.returncode == 0, outputs.stderr
    assert doc["outputs"] == json.loads(outputs.stdout)  # exactly what `cluster outputs` shows
    shown = cli("cluster", "outputs", "withouts", "-o", "json", "--show-secrets")
    assert json.loads(shown.stdout) == in_im
    # Without --wait there is nothing to read yet: the answer is the cluster alone.
    assert cli("cluster", "destroy", "withouts", "--yes").returncode == 0
    nowait = cli("cluster", "create", "nowait", "-t", "oscar", "-s", "local-sim", "--no-wait", "-o", "json")
    assert nowait.returncode == 0, nowait.stderr
    assert "outputs" not in json.loads(nowait.stdout)
    assert cli("cluster", "destroy", "nowait", "--yes").returncode == 0


def test_create_wait_text_ends_with_the_endpoints(cli: CLI, im_client: IMClient) -> None:
    created = cli(
        "cluster",
        "create",
        "textouts",
        *("--template", "oscar", "--site", "local-sim", "--set", f"minio_password={HIDDEN}"),
        *("--set", f"domain_name={HIDDEN}", "--set", "cert_user_email=ops@example.org"),
    )
    assert created.returncode == 0, created.stderr
    assert_human(created.stdout)
    lines = created.stdout.splitlines()
    assert lines[0].startswith("cluster textouts: configured")
    at = lines.index("  endpoints:")
    endpoints = {line.split()[0]: line.split()[1] for line in lines[at + 2 :]}  # after the OUTPUT VALUE header
    assert lines[at + 1].split() == ["OUTPUT", "VALUE"]
    assert endpoints["oscar_endpoint"] == "https://textouts.***/"
    assert endpoints["minio_endpoint"] == "https://minio.textouts.***/"
    assert endpoints["kube_api_endpoint"].startswith("https://") and endpoints["kube_api_endpoint"].endswith(":6443")
    assert HIDDEN not in created.stdout + created.stderr
    infra = cli.json("cluster", "status", "textouts")
    assert isinstance(infra, dict)
    assert set(endpoints) == set(im_client.outputs(infra["infra_id"]))
    assert cli("cluster", "destroy", "textouts", "--yes").returncode == 0


def test_create_wait_sends_only_what_it_needs_over_one_connection(
    local_im: RunningIM, proxy: FaultProxy, tmp_path: Path, im_client: IMClient
) -> None:
    cli = CLI(tmp_path / "home", proxy.url, local_im.auth_file)
    created = cli("cluster", "create", "counted", "-t", "oscar", "-s", "local-sim", "--wait", "-o", "json")
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    infra = doc["infra_id"]
    sent = [(s.method, urlsplit(s.path).path) for s in proxy.seen]
    assert proxy.connections == 1  # every request over the one kept-alive connection
    inf = f"/infrastructures/{infra}"
    polls = sent.count(("GET", f"{inf}/state"))
    assert polls >= 1
    # The POST, the state polls until configured, each VM read once (its role and addresses, for the registry),
    # the outputs once: no VM listing, no second state read after the last poll.
    assert sent == [
        ("POST", "/infrastructures"),
        *[("GET", f"{inf}/state")] * polls,
        ("GET", f"{inf}/vms/0"),
        ("GET", f"{inf}/vms/1"),
        ("GET", f"{inf}/outputs"),
    ]
    assert Counter(s.fault for s in proxy.seen) == {"pass": len(sent)}
    # What the registry records is what IM says: the VMs with their roles and addresses, the state.
    listed = cli.json("cluster", "list")
    assert isinstance(listed, list)
    (rec,) = listed
    assert rec["state"] == "configured" and rec["workers"] == 1
    in_im = {vm: im_client.vm_info(infra, vm) for vm in im_client.vm_ids(infra)}
    assert [(v["id"], v["role"], v["private_ip"], v["public_ip"]) for v in rec["vms"]] == [
        (vm.id, "front" if vm.name == "front" else "wn", vm.private_ip, vm.public_ip) for vm in in_im.values()
    ]
    assert doc["outputs"] == im_client.outputs(infra)  # nothing secret in these outputs: shown as IM has them
    assert cli("cluster", "destroy", "counted", "--yes").returncode == 0


def test_create_then_install_share_the_connection(local_im: RunningIM, proxy: FaultProxy, tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", proxy.url, local_im.auth_file)
    chained = cli("cluster", "create", "shared", "-t", "oscar", "-s", "local-sim", "--install", "--ssh-timeout", "1")
    # Configured in IM; the install then waited for SSH on the simulated cloud's made-up addresses (exit 4).
    assert chained.returncode == 4, chained.stderr
    assert "waiting for SSH" in chained.stderr
    sent = [(s.method, urlsplit(s.path).path) for s in proxy.seen]
    assert sent[0] == ("POST", "/infrastructures")
    assert any(path.endswith("/outputs") for _, path in sent)
    assert proxy.connections == 1  # the install used the create's client: no second connection to the same IM
    assert cli("cluster", "destroy", "shared", "--yes").returncode == 0


def test_create_wait_imports_only_what_it_uses(cli: CLI, tmp_path: Path) -> None:
    """The whole create: no requests stack and not even http.client or ssl (the IM client speaks HTTP/1.1 on a
    socket; ssl only for https), no triage patterns on success, no rich on a pipe, no validator, SSH or Ansible
    library. Checked in a fresh interpreter, as the console script runs."""
    args = ("cluster", "create", "lean", "-t", "oscar", "-s", "local-sim", "--wait", "-o", "json")
    proc, code, modules = run_reporting_modules(args, cli.env, cwd=tmp_path)
    assert code == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "configured"
    heavy = ("requests", "urllib3", "tenacity", "rich", "pydantic", "paramiko", "ansible_runner", "toscaparser")
    heavy += ("http.client", "email", "ssl", "html", "importlib.resources")
    ours = ("provisioner.triage", "provisioner.tosca.validate", "provisioner.addons", "provisioner.ansible")
    assert loaded(modules, heavy + ours) == []
    assert "provisioner.im.transport" in modules
    assert cli("cluster", "destroy", "lean", "--yes").returncode == 0


def test_create_wait_needs_no_yaml_parser(cli: CLI, tmp_path: Path) -> None:
    """With an empty config file, a create neither parses nor writes YAML: our templates come from their parsed
    copies (JSON, in tosca/__pycache__), the secrets file is written and read as JSON, and IM gets the document as
    JSON text. The first create may parse the templates (and leave those copies); the second must not."""
    empty = tmp_path / "empty-config.yaml"
    empty.touch()
    env = {**cli.env, "PROVISION_CONFIG": str(empty)}
    for name in ("plain-1", "plain-2"):
        args = ("cluster", "create", name, "-t", "oscar", "-s", "local-sim", "--wait", "-o", "json")
        proc, code, modules = run_reporting_modules(args, env, cwd=tmp_path)
        assert code == 0, proc.stderr
        assert json.loads(proc.stdout)["state"] == "configured"
    assert loaded(modules, ("yaml",)) == []
    secrets = cli.home / "secrets" / "plain-2.yaml"
    assert set(yaml.safe_load(secrets.read_text())) == set(json.loads(secrets.read_text().split("\n", 1)[1]))
    for name in ("plain-1", "plain-2"):
        assert cli("cluster", "destroy", name, "--yes").returncode == 0
