"""``provision continuum`` up / plan / status / down through the real CLI, against the real IM and real sshd.

One continuum: an edge cluster on the loopback sshd hosts (preflight only: its roles' checks run over SSH, nothing
is recorded), two IM clusters on ``local-sim``, and a workflow of two stages over their OSCARs and one AWS Lambda
function (moto's server as AWS: its input bucket made and triggered), the OSCARs being stand-ins
(``standin/oscar.py`` over moto S3: no OSCAR can run here) recorded as each cluster's ``oscar_url``, with the
``oscar_password`` the file gives. ``up`` is SIGKILLed right after IM gave the first infrastructure its id, and
again right after OSCAR took the first service (``tests/faults/killat.py``); ``up`` again converges: two
infrastructures in IM, each service POSTed once, and an ``up`` after that sends nothing. A file runs through the
workflow; ``status`` shows it all; ``down`` leaves nothing in IM, on the stand-ins or in the registry.

Then one cluster failing (an edge cluster whose host refuses SSH): the IM cluster is made and left as it is, the
workflow that needs the failed one is skipped, and the command exits 1 naming it with its cause and runbook.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.state import Phase, Store
from standin.oscar import StandInOscar
from tests import awslab
from tests.awslab import MotoAws
from tests.clihelper import CLI
from tests.conftest import REPO, RunningIM, SSHLab
from tests.integration.test_addons_cli import edge_inventory
from tests.sshd import free_port
from tests.workflowlab import REVERSE, two_clusters

pytestmark = [pytest.mark.im]

PASSWORD_A = "continuum-oscar-a-pw-7d1"
PASSWORD_B = "continuum-oscar-b-pw-2e9"
UPPER = 'tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n'


@pytest.fixture(scope="module")
def oscars() -> Iterator[dict[str, StandInOscar]]:
    """Stand-in OSCARs: "a" for cluster ct-a, "b" for ct-b."""
    with two_clusters(PASSWORD_A, PASSWORD_B) as made:
        yield {"a": made["edge"], "b": made["cloud"]}


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[MotoAws, str, str]]:
    """moto as AWS, with an image in its ECR and a role for the function: (lab, image URI, role ARN)."""
    with awslab.moto_aws() as lab:
        yield lab, awslab.push_image(lab, "ct-burst", "v1"), awslab.make_role(lab, "ct-burst")


def function_names(lab: MotoAws) -> list[str]:
    return [str(f["FunctionName"]) for f in lab.client("lambda").list_functions()["Functions"]]


def infras(cli: CLI) -> set[str]:
    listed = cli.json("infra", "list")
    assert isinstance(listed, list)
    return {str(item) for item in listed}


def journal(home: Path, name: str) -> list[tuple[Phase, dict[str, Any]]]:
    with Store.open(home) as store:
        return [(e.phase, e.detail) for e in store.journal(f"continuum:{name}")]


def killed_at(cli: CLI, phase: Phase, nth: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI SIGKILLed the instant the journal recorded ``phase`` for the ``nth`` time."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.faults.killat", phase.value, str(nth), *args],
        capture_output=True,
        text=True,
        env=cli.env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)
    return result


def write_continuum(
    folder: Path, oscars: dict[str, StandInOscar], inventory: Path, aws: tuple[MotoAws, str, str]
) -> Path:
    _lab, image, role = aws
    (folder / "scripts").mkdir(parents=True, exist_ok=True)
    (folder / "scripts" / "reverse.sh").write_text(REVERSE)
    (folder / "scripts" / "upper.sh").write_text(UPPER)
    path = folder / "continuum.yaml"
    path.write_text(
        f"""# the continuum of the integration test
name: ct
clusters:
  ct-edge:
    edge: {{inventory: {inventory.name}, preflight: true}}
  ct-a:
    template: oscar
    site: local-sim
    inputs: {{wn_num: 1, oscar_password: {PASSWORD_A}}}
    oscar_url: {oscars["a"].url}
  ct-b:
    template: oscar
    site: local-sim
    inputs: {{wn_num: 1, oscar_password: {PASSWORD_B}}}
    oscar_url: {oscars["b"].url}
workflow:
  inline:
    functions:
      oscar:
      - ct-a:
          name: ct-reverse
          image: alpine
          script: scripts/reverse.sh
          input: [{{storage_provider: minio, path: ct-faces/in}}]
          output: [{{storage_provider: minio.ct-b, path: ct-masks/in}}]
      - ct-b:
          name: ct-upper
          image: alpine
          script: scripts/upper.sh
          input: [{{storage_provider: minio, path: ct-masks/in}}]
          output: [{{storage_provider: minio, path: ct-results/out}}]
      aws:
      - lambda:
          name: ct-burst
          container: {{image: '{image}'}}
          input: [{{storage_provider: s3.aws1, path: ct-burst/in}}]
          output: [{{storage_provider: minio.ct-b, path: ct-results/burst}}]
        iam: {{role: '{role}'}}
    storage_providers:
      s3:
        aws1: {{access_key: {awslab.KEY_ID}, secret_key: {awslab.SECRET}, region: {awslab.REGION}}}
"""
    )
    return path


def posts(oscar: StandInOscar) -> list[str]:
    return [method for method, _ in oscar.writes() if method == "POST"]


def test_up_killed_twice_converges_then_status_and_down_leave_nothing(
    local_im: RunningIM,
    ssh_lab: SSHLab,
    oscars: dict[str, StandInOscar],
    aws: tuple[MotoAws, str, str],
    tmp_path: Path,
) -> None:
    lab = aws[0]
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    cli.env.update({"AWS_ENDPOINT_URL": lab.url, "AWS_DEFAULT_REGION": awslab.REGION})
    inventory = edge_inventory(ssh_lab, tmp_path / "edge-hosts.yml")
    path = write_continuum(tmp_path, oscars, inventory, aws)
    before = infras(cli)

    planned = cli.json("continuum", "plan", str(path))
    assert isinstance(planned, dict)
    assert {c["id"]: c["action"] for c in planned["clusters"]} == {
        "ct-edge": "preflight",
        "ct-a": "create",
        "ct-b": "create",
    }
    assert planned["workflow"]["planned"] is False
    assert sorted((s["cluster"], s["service"], s["action"]) for s in planned["workflow"]["services"]) == [
        ("aws", "ct-burst", "create"),
        ("ct-a", "ct-reverse", "create"),
        ("ct-b", "ct-upper", "create"),
    ]
    assert not (cli.home / "state.db").exists()  # planning made nothing

    # 1. Killed the instant IM gave the first infrastructure its id (the other may be anywhere in its create).
    killed_at(cli, Phase.INFRA_ID_KNOWN, 1, "continuum", "up", str(path))
    # 2. Killed the instant the first service is on its OSCAR (the clusters and the preflight are done by then).
    killed_at(cli, Phase.SERVICE_DONE, 1, "continuum", "up", str(path))
    # The function and the cloud's stage are in the same wave (clusters in parallel): one or both sent by then.
    assert 1 <= sum(len(posts(o)) for o in oscars.values()) + len(function_names(lab)) <= 2
    # 3. Again: it converges.
    up = cli("continuum", "up", str(path), "-o", "json")
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    assert doc["ok"] is True and doc["workflow"]["status"] == "applied"
    states = {c["id"]: c["state"] for c in doc["clusters"]}
    assert states == {"ct-edge": "preflight passed", "ct-a": "configured", "ct-b": "configured"}
    # No duplicate cluster: exactly one infrastructure per IM cluster, the ones the registry holds.
    with Store.open(cli.home) as store:
        recorded = {rec.name: rec.infra_id for rec in store.list_clusters()}
    assert set(recorded) == {"ct-a", "ct-b"}  # the preflight recorded nothing
    assert infras(cli) - before == set(recorded.values())
    # No duplicate service: each POSTed once over the three runs, none PUT.
    assert posts(oscars["a"]) == ["POST"] and posts(oscars["b"]) == ["POST"]
    assert set(oscars["a"].services) == {"ct-reverse"} and set(oscars["b"].services) == {"ct-upper"}
    assert [m for o in oscars.values() for m, _ in o.writes() if m != "POST"] == []
    # No duplicate function: one, triggered by its bucket (made by up).
    assert function_names(lab) == ["ct-burst"]
    triggers = lab.client("s3").get_bucket_notification_configuration(Bucket="ct-burst")
    assert [t["Id"] for t in triggers["LambdaFunctionConfigurations"]] == ["provision-ct-burst-0"]

    # 4. Once more: everything is in place, nothing is sent (the preflight passed with the same inventory).
    writes = [len(o.writes()) for o in oscars.values()]
    again = cli("continuum", "up", str(path), "-o", "json")
    assert again.returncode == 0, again.stderr
    steps = {c["id"]: [(s["step"], s["outcome"]) for s in c["steps"]] for c in json.loads(again.stdout)["clusters"]}
    assert steps["ct-edge"] == [("preflight", "skipped")]
    assert steps["ct-a"] == [("cluster", "done"), ("endpoint", "skipped")]
    assert [len(o.writes()) for o in oscars.values()] == writes
    assert infras(cli) - before == set(recorded.values())
    replanned = cli.json("continuum", "plan", str(path))
    assert isinstance(replanned, dict)
    assert {c["id"]: c["action"] for c in replanned["clusters"]} == {
        "ct-edge": "preflight-passed",
        "ct-a": "exists",
        "ct-b": "exists",
    }
    assert replanned["workflow"]["planned"] is True
    assert {s["action"] for s in replanned["workflow"]["services"]} == {"unchanged"}

    # Each step journaled, in order: the first up's steps started, the last one's all done.
    phases = [phase for phase, _ in journal(cli.home, "ct")]
    assert phases.count(Phase.CONTINUUM_UP) == 4 and phases[-1] == Phase.CONTINUUM_UP_ENDED
    assert Phase.CONTINUUM_STEP_FAILED not in phases

    # The workflow runs across the two clusters: a file through both stages.
    source = tmp_path / "face.txt"
    source.write_text("abc\n")
    got = tmp_path / "got"
    ran = cli(
        "workflow", "run", "ct", "--input", str(source), "--stage", "ct-reverse", "--download", str(got),
        "--timeout", "60",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (got / "face.txt").read_text() == "CBA\n"

    status = cli("continuum", "status", "ct", "-o", "json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    by_id = {c["id"]: c for c in shown["clusters"]}
    assert by_id["ct-a"]["state"] == "configured" and by_id["ct-a"]["infra_id"] == recorded["ct-a"]
    assert by_id["ct-b"]["workers"] == 1
    assert by_id["ct-edge"]["state"] == "preflight passed" and by_id["ct-edge"]["recorded"] is False
    stages = {s["service"]: s for s in shown["workflow"]["stages"]}
    assert shown["workflow"]["applied"] and set(stages) == {"ct-reverse", "ct-upper", "ct-burst"}
    assert all(s["exists"] and s["matches"] for s in stages.values())
    assert stages["ct-upper"]["jobs"] == {"Succeeded": 1}
    assert shown["last_up"]["ok"] is True
    text = cli("continuum", "status", "ct")
    assert text.returncode == 0 and "ct-a" in text.stdout and "workflow ct:" in text.stdout

    for result in (up, again, status, text, ran):
        assert PASSWORD_A not in result.stdout + result.stderr and PASSWORD_B not in result.stdout + result.stderr
    # The passwords the file gives are in the clusters' 0600 secrets files only: not in the state database.
    for db in cli.home.glob("state.db*"):
        assert PASSWORD_A.encode() not in db.read_bytes() and PASSWORD_B.encode() not in db.read_bytes()

    gone = cli("continuum", "down", "ct", "--yes", "-o", "json")
    assert gone.returncode == 0, gone.stderr
    down = json.loads(gone.stdout)
    assert down["workflow"]["status"] == "deleted"
    assert sorted(down["workflow"]["deleted"]) == ["aws/ct-burst", "ct-a/ct-reverse", "ct-b/ct-upper"]
    assert {c["id"]: c["status"] for c in down["clusters"]} == {
        "ct-edge": "absent",
        "ct-a": "destroyed",
        "ct-b": "destroyed",
    }
    # Nothing left: not in IM, not on the stand-ins, not in the registry.
    assert infras(cli) == before
    assert oscars["a"].services == {} and oscars["b"].services == {}
    assert function_names(lab) == []  # nor in AWS: the function and its trigger gone
    assert (
        not lab.client("s3")
        .get_bucket_notification_configuration(Bucket="ct-burst")
        .get("LambdaFunctionConfigurations")
    )
    assert cli.json("cluster", "list") == []
    assert cli.json("workflow", "list") == []
    assert not (cli.home / "continuum" / "ct").exists()
    after = cli("continuum", "status", "ct")
    assert after.returncode == 1 and "was taken down" in after.stderr


def test_one_failing_cluster_leaves_the_others_and_names_its_cause_and_runbook(
    local_im: RunningIM, tmp_path: Path
) -> None:
    cli = CLI(tmp_path / "home", local_im.url, local_im.auth_file)
    # An edge host whose sshd is down: the connection is refused at once.
    refused = {
        "front": {"hosts": {"field-server": {"ansible_host": "127.0.0.1", "ansible_port": free_port("127.0.0.1")}}}
    }
    (tmp_path / "field.yml").write_text(yaml.safe_dump(refused))
    (tmp_path / "reverse.sh").write_text(REVERSE)
    path = tmp_path / "continuum.yaml"
    path.write_text(
        """name: half
clusters:
  half-a: {template: kubernetes, site: local-sim, inputs: {wn_num: 0}, oscar_url: "http://127.0.0.1:9/"}
  half-field:
    edge: {inventory: field.yml}
workflow:
  name: half-flow
  inline:
    functions:
      oscar:
      - half-field:
          name: half-reverse
          image: alpine
          script: reverse.sh
          input: [{storage_provider: minio, path: half-in/x}]
          output: [{storage_provider: minio.half-a, path: half-out/x}]
"""
    )
    before = infras(cli)
    up = cli("continuum", "up", str(path), "-o", "json")
    assert up.returncode == 1, up.stderr
    doc = json.loads(up.stdout)
    legs = {c["id"]: c for c in doc["clusters"]}
    assert legs["half-a"]["ok"] is True and legs["half-a"]["state"] == "configured"
    assert legs["half-field"]["ok"] is False and legs["half-field"]["failed_step"] == "edge"
    assert legs["half-field"]["cause"]["cause"] == "ssh-unreachable"
    assert doc["workflow"]["status"] == "skipped" and doc["workflow"]["clusters"] == ["half-field"]
    lines = up.stderr.splitlines()
    assert any(line.startswith("error: continuum half: cluster half-field failed at its edge step:") for line in lines)
    assert any(line.startswith("cause: ssh-unreachable: ") for line in lines), up.stderr
    assert "see provision runbook stuck-or-unconfigured (provisioner/data/runbooks/stuck-or-unconfigured.md)" in lines
    assert any("workflow half-flow skipped: it needs cluster(s) half-field, which failed" in line for line in lines)
    assert any(line.startswith("hint: the other clusters are as they are (half-a)") for line in lines)
    assert "Traceback" not in up.stderr
    # The IM cluster is there, once; the failure is journaled with its cause and runbook.
    made = infras(cli) - before
    assert len(made) == 1
    failed = [d for p, d in journal(cli.home, "half") if p == Phase.CONTINUUM_STEP_FAILED]
    assert failed == [
        {**failed[0], "cluster": "half-field", "step": "edge", "cause": "ssh-unreachable",
         "runbook": "stuck-or-unconfigured"}
    ]  # fmt: skip
    shown = cli("continuum", "status", "half")
    assert shown.returncode == 0, shown.stderr
    assert "half-field: edge failed" in shown.stdout and "see provision runbook stuck-or-unconfigured" in shown.stdout
    assert "workflow half-flow: not applied" in shown.stdout

    gone = cli("continuum", "down", "half", "--yes", "-o", "json")
    assert gone.returncode == 0, gone.stderr
    assert {c["id"]: c["status"] for c in json.loads(gone.stdout)["clusters"]} == {
        "half-a": "destroyed",
        "half-field": "forgotten",
    }
    assert infras(cli) == before
    assert cli.json("cluster", "list") == []
