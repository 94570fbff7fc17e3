"""Our templates rendered for local-sim, against the real IM 2.0.0 (Dummy cloud) on loopback.

IM accepts them, converts them without contextualization (no interfaces anywhere), reaches `configured`, returns
the outputs, keeps every input value exactly, and scales the workers by count and by removal_list.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from provisioner import localim
from provisioner.cli import template as template_cli
from provisioner.im import IMClient
from provisioner.tosca import (
    LOCAL_SIM,
    SecretStore,
    dump,
    prepare_inputs,
    render,
    resolve_site,
    set_scaling,
    validate_offline,
)
from tests.clihelper import CLI
from tests.conftest import RunningIM

DATA = Path(__file__).resolve().parent.parent / "data" / "tosca"

pytestmark = pytest.mark.im

TRICKY_PASSWORD = "pa: {ss} 'q' \"dq\" # no comment\nsecond line ünï ☃"
CASES = {
    "oscar": {
        "wn_num": "2",
        "oscar_password": TRICKY_PASSWORD,
        "minio_password": "*alias &anchor !tag",
        "minio_buckets": "inputs,outputs.v2",  # a TOSCA list input: IM keeps it as given
    },
    "kubernetes": {"wn_num": "2", "kube_install_yunikorn": "true"},
    "oscar-with-domain": {"domain_name": "example.org", "cert_user_email": "me@example.org"},
}


def wait_final(client: IMClient, infra_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = client.state(infra_id)
        if state.final or time.monotonic() > deadline:
            return state.state
        time.sleep(0.2)


def vm_ids(client: IMClient, infra_id: str) -> list[str]:
    return sorted(client.vm_ids(infra_id), key=int)


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_sim_render_is_accepted_configured_and_returns_outputs(
    case: str, local_im: RunningIM, im_client: IMClient
) -> None:
    template = case.split("-")[0]
    raw: dict[str, Any] = CASES[case]
    cluster = f"it-{case}"
    inputs = prepare_inputs(template, raw, secrets_store=SecretStore(local_im.home, cluster))
    doc = render(template, resolve_site(LOCAL_SIM, {}), inputs, cluster_name=cluster, deployment_id=uuid.uuid4().hex)
    validate_offline(doc)
    text = dump(doc)

    plan = im_client.dry_run(text)
    assert [cloud.cloud_id for cloud in plan] == ["sim"]
    workers = inputs["wn_num"]
    assert len(plan[0].vms) == 1 + workers

    infra_id = im_client.create(text).infra_id
    try:
        assert wait_final(im_client, infra_id) == "configured"
        assert "Contextualization disabled" in im_client.contmsg(infra_id)
        assert "outbound = 'yes'" not in im_client.radl(infra_id), "no public network on the Dummy cloud"

        outputs = im_client.outputs(infra_id)
        assert outputs["front_private_ip"] == "10.0.0.1"
        assert outputs["front_public_ip"] is None
        assert outputs["wn_private_ips"] == ["10.0.0.1"] * workers
        assert outputs["kube_api_endpoint"] == "https://10.0.0.1:6443"
        if case == "oscar":
            assert outputs["oscar_endpoint"] == "https://10.0.0.1/"
            assert outputs["minio_endpoint"] == "http://10.0.0.1:30300"
        elif case == "oscar-with-domain":
            assert outputs["oscar_endpoint"] == "https://it-oscar-with-domain.example.org/"
            assert outputs["minio_endpoint"] == "https://minio.it-oscar-with-domain.example.org/"
        else:
            assert "oscar_endpoint" not in outputs

        stored = yaml.safe_load(im_client.tosca(infra_id))
        declared = stored["topology_template"]["inputs"]
        for name, value in inputs.all.items():
            if value != "":
                assert declared[name]["default"] == doc["topology_template"]["inputs"][name]["default"], name
        if template == "oscar":
            assert declared["oscar_password"]["default"] == inputs["oscar_password"]
            assert declared["minio_buckets"]["default"] == (["inputs", "outputs.v2"] if case == "oscar" else [])
        assert stored["metadata"]["provisioner_cluster"] == cluster
        assert stored["metadata"]["provisioner_template"] == template
        assert stored["metadata"]["provisioner_site"] == LOCAL_SIM
    finally:
        im_client.destroy(infra_id)


def test_scaling_by_count_and_removal_list(local_im: RunningIM, im_client: IMClient) -> None:
    inputs = prepare_inputs("kubernetes", {"wn_num": "2"}, secrets_store=SecretStore(local_im.home, "it-scale"))
    doc = render("kubernetes", resolve_site(LOCAL_SIM, {}), inputs, cluster_name="it-scale", deployment_id="d-scale")
    infra_id = im_client.create(dump(doc)).infra_id
    try:
        assert wait_final(im_client, infra_id) == "configured"
        assert vm_ids(im_client, infra_id) == ["0", "1", "2"]

        added = im_client.add_resources(infra_id, dump(set_scaling(doc, wn_count=3)))
        assert added == ["3"]
        assert wait_final(im_client, infra_id) == "configured"

        scaled = set_scaling(doc, wn_count=2, removal_list=["1"])
        validate_offline(scaled)
        assert im_client.add_resources(infra_id, dump(scaled)) == []
        assert vm_ids(im_client, infra_id) == ["0", "2", "3"]
        assert wait_final(im_client, infra_id) == "configured"
        assert im_client.outputs(infra_id)["wn_private_ips"] == ["10.0.0.1", "10.0.0.1"]
    finally:
        im_client.destroy(infra_id)


def test_cli_validate_runs_the_im_dry_run(local_im: RunningIM, tmp_path: Path) -> None:
    root = typer.Typer()
    root.add_typer(template_cli.app, name="template")

    @root.callback()
    def _root() -> None:
        """Mounted like the main app does."""

    config = tmp_path / "config.yaml"
    config.write_text("# no sites\n")
    env = {
        "PROVISION_HOME": str(tmp_path / "home"),
        "PROVISION_CONFIG": str(config),
        "PROVISION_IM_URL": local_im.url,
        "PROVISION_AUTH_FILE": str(local_im.auth_file),
    }
    result = CliRunner(env=env).invoke(root, ["template", "validate", "oscar", "--set", "wn_num=3"])
    assert result.exit_code == 0, result.output
    assert "offline validation ok" in result.stdout
    assert f"IM dry run at {local_im.url}: accepted (sim: 4 VMs)" in result.stdout


@pytest.fixture
def fresh_im(local_im: RunningIM, tmp_path: Path) -> Iterator[localim.LocalIM]:
    """An IM of this test's own, never restarted: once IM 2.0.0 has reloaded infrastructures from its database
    (after a restart, as tests/integration/test_im_client.py does to the shared one), its tosca-parser drops the
    imports it cannot fetch instead of refusing the template."""
    info = localim.start(tmp_path / "im", local_im.venv, fresh=True)
    yield info
    localim.stop(tmp_path / "im")


def test_infra_create_dry_run_says_in_one_line_what_im_could_not_fetch(
    fresh_im: localim.LocalIM, tmp_path: Path
) -> None:
    """A third party's template passes offline validation (GRyCAP's types from our stub, its own types file next
    to it), then IM, which has no network here, cannot fetch GRyCAP's URL: IM's own reason, in one line, exit 2
    (bad input, not an outage); IM's whole answer (its server traceback) only with --debug."""
    cli = CLI(tmp_path / "home", fresh_im.url, Path(fresh_im.auth_file))
    third = str(DATA / "third-party-webapp.yaml")
    checked = cli("template", "validate", third, "--no-im")
    assert checked.returncode == 0, checked.stderr
    remote = tmp_path / "remote.yaml"
    remote.write_text("tosca_definitions_version: tosca_simple_yaml_1_0\nimports:\n"
                      "  - theirs: https://types.example.org/web.yaml\ntopology_template:\n  node_templates:\n"
                      "    vm:\n      type: tosca.nodes.Compute\n")  # fmt: skip
    for args, url in [
        ((str(remote), "--no-validate"), "https://types.example.org/web.yaml"),
        ((third,), "https://raw.githubusercontent.com/grycap/tosca/main/custom_types.yaml"),
    ]:
        result = cli("infra", "create", *args, "--dry-run")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        said = f"error: IM refused POST /infrastructures (400): IM could not fetch import URL {url}"
        assert lines[0].startswith(said)
        assert len(lines) == 1, result.stderr  # not triaged: IM refused the input, it did not go away
        assert "Traceback" not in result.stderr and "File " not in result.stderr
        debug = cli("--debug", "infra", "create", *args, "--dry-run")
        assert debug.returncode == 2
        assert debug.stderr.splitlines()[0] == lines[0]
        assert "URLException" in debug.stderr and "File " in debug.stderr  # IM's whole answer
