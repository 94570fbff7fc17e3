"""A team's secrets: the shared PostgreSQL state holds no secret, so a second operator acts on a cluster through the
team's secrets reference (``PROVISION_SECRETS_REF``), against the real IM, through the real CLI."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
import yaml

from provisioner.im import IMClient
from provisioner.settings import ENV_SECRETS_REF, ENV_STATE_URL
from tests.clihelper import CLI
from tests.conftest import RunningIM

pytestmark = pytest.mark.im


def operator(tmp_path: Path, who: str, local_im: RunningIM, url: str, ref: str | None) -> CLI:
    cli = CLI(tmp_path / who / "home", local_im.url, local_im.auth_file)
    cli.env[ENV_STATE_URL] = url
    if ref is not None:
        cli.env[ENV_SECRETS_REF] = ref
    return cli


def held_by_im(im_client: IMClient, infra_id: str, key: str) -> str:
    """The value of input ``key`` in the TOSCA IM holds for the infrastructure."""
    doc = yaml.safe_load(im_client.tosca(infra_id))
    value = doc["topology_template"]["inputs"][key]["default"]
    assert isinstance(value, str)
    return value


def test_a_second_operator_acts_through_the_teams_secrets_reference(
    local_im: RunningIM, pg_url: str, tmp_path: Path, im_client: IMClient
) -> None:
    team = tmp_path / "team-secrets"
    file_ref = f"{team}/{{cluster}}.yaml"
    ann = operator(tmp_path, "ann", local_im, pg_url, file_ref)
    made = ann.json("cluster", "create", "shared-s", "--template", "oscar", "--site", "local-sim", "--set", "wn_num=1")
    assert isinstance(made, dict)
    infra_id = made["infra_id"]

    # Ann's generated secrets went to the team's file (0600), not to her home; IM holds the same password.
    kept = yaml.safe_load((team / "shared-s.yaml").read_text())
    password = kept["oscar_password"]
    assert stat.S_IMODE((team / "shared-s.yaml").stat().st_mode) == 0o600
    assert not (ann.home / "secrets" / "shared-s.yaml").exists()
    assert held_by_im(im_client, infra_id, "oscar_password") == password
    vms_before = im_client.vm_ids(infra_id)

    # Bob shares the state but not the secrets: refused with the reason, nothing sent, nothing generated.
    bob_alone = operator(tmp_path, "bob", local_im, pg_url, None)
    refused = bob_alone("cluster", "scale", "shared-s", "--workers", "2")
    assert refused.returncode == 2, refused.stderr
    assert "secrets_ref: cluster 'shared-s': its secrets (" in refused.stderr
    assert "PROVISION_SECRETS_REF" in refused.stderr
    assert im_client.vm_ids(infra_id) == vms_before
    assert not (bob_alone.home / "secrets" / "shared-s.yaml").exists()

    # With the team's file reference he scales it, and IM is sent the password the cluster was made with.
    bob = operator(tmp_path, "bob", local_im, pg_url, file_ref)
    scaled = bob.json("cluster", "scale", "shared-s", "--workers", "2")
    assert isinstance(scaled, dict) and scaled["workers"] == 2
    assert held_by_im(im_client, infra_id, "oscar_password") == password

    # A command reference (a password manager's CLI; here one printing the team's mapping) works the same way.
    reader = tmp_path / "reader.py"
    reader.write_text(f"import sys\nsys.stdout.write(open({str(team)!r} + '/' + sys.argv[1] + '.yaml').read())\n")
    carl = operator(tmp_path, "carl", local_im, pg_url, f"command({sys.executable} {reader} {{cluster}})")
    shrunk = carl.json("cluster", "scale", "shared-s", "--workers", "1")
    assert isinstance(shrunk, dict) and shrunk["workers"] == 1
    assert held_by_im(im_client, infra_id, "oscar_password") == password
    assert not (carl.home / "secrets" / "shared-s.yaml").exists()  # everything came from the command

    # No secret in the shared database, and none in anyone's output.
    assert password not in ann.state_text()
    for result in (refused,):
        assert password not in result.stdout + result.stderr
    assert password not in str(made) + str(scaled) + str(shrunk)

    ann.json("cluster", "destroy", "shared-s", "--yes")


def test_a_bad_secrets_reference_is_refused_before_anything_is_sent(
    local_im: RunningIM, pg_url: str, tmp_path: Path, im_client: IMClient
) -> None:
    before = set(im_client.list_infrastructures())
    cli = operator(tmp_path, "dan", local_im, pg_url, "/team/secrets.yaml")
    result = cli("cluster", "create", "bad-ref", "--template", "oscar", "--site", "local-sim")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[0]
        .startswith("error: secrets_ref (PROVISION_SECRETS_REF): must contain {cluster}")
    )
    assert set(im_client.list_infrastructures()) == before
