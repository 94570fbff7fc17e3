"""``provision workflow`` status / run / invoke, and OIDC clusters, against two stand-in OSCARs over moto S3.

A file is uploaded and followed through three stages over two clusters (the final output checked byte for byte,
downloaded); a failing stage stops the trace with its log's tail and exit 1; a stage is invoked synchronously
(its answer on stdout) and asynchronously (a job); a cluster whose bearer token comes from a command is reached
after the first token is refused (401) and a new one is asked for.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from standin.oscar import StandInOscar
from tests.clihelper import CLI
from tests.workflowlab import TAG, two_clusters, write_chain

EDGE_PASSWORD = "edge-oscar-password-r1"
CLOUD_PASSWORD = "cloud-oscar-password-r2"
CLOUD_MINIO_SECRET = "cloud-minio-secret-key-r3"
OIDC_TOKEN = "oidc-bearer-token-r4"


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, StandInOscar]]:
    with two_clusters(
        EDGE_PASSWORD, CLOUD_PASSWORD, CLOUD_MINIO_SECRET, cloud={"oidc_tokens": frozenset({OIDC_TOKEN})}
    ) as made:
        yield made


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path / "home", "http://127.0.0.1:9/", tmp_path / "no-auth")


def write_fdl(
    folder: Path,
    clusters: dict[str, StandInOscar],
    prefix: str,
    *,
    tag_script: str = TAG,
    cloud_auth: str = f"auth_password: {CLOUD_PASSWORD}",
) -> Path:
    return write_chain(
        folder / f"{prefix}.yaml",
        clusters,
        prefix=f"{prefix}-",
        edge_auth=f"auth_password: {EDGE_PASSWORD}",
        cloud_auth=cloud_auth,
        tag_script=tag_script,
    )


def test_run_follows_a_file_to_its_final_output(clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    fdl = write_fdl(tmp_path / "wf", clusters, "runok")
    assert cli("workflow", "apply", str(fdl)).returncode == 0

    source = tmp_path / "face.txt"
    source.write_bytes(b"abc\n")
    got = tmp_path / "got"
    ran = cli(
        "workflow", "run", "runok", "--input", str(source), "--download", str(got), "--timeout", "60", "-o", "json"
    )
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["ok"] and doc["entry"] == "edge/runok-reverse"
    assert doc["uploaded"] == "minio.edge:runok-faces/in/face.txt"
    assert [(s["stage"], s["state"]) for s in doc["steps"]] == [
        ("edge/runok-reverse", "Succeeded"),
        ("cloud/runok-upper", "Succeeded"),
        ("cloud/runok-tag", "Succeeded"),
    ]
    assert doc["steps"][0]["outputs"] == ["minio.cloud:runok-masks/in/face.txt"]
    assert all(s["job"] and s["queued"] and s["finished"] and s["done_at"] is not None for s in doc["steps"])
    assert doc["final_outputs"] == ["minio.cloud:runok-results/out/out.txt"]
    assert (got / "out.txt").read_bytes() == b"CBA\n[three]\n"
    assert "uploaded face.txt" in ran.stderr and "runok-tag wrote" in ran.stderr

    # The text form: a timeline, one row per job (the same name again: MinIO notifies every write).
    source.write_bytes(b"abcd\n")
    again = cli("workflow", "run", "runok", "--input", str(source), "--timeout", "60")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == "workflow runok: minio.edge:runok-faces/in/face.txt through 3 job(s)"
    assert "STAGE" in lines[1] and "SECONDS" in lines[1]
    assert [line.split()[0] for line in lines[2:5]] == ["edge/runok-reverse", "cloud/runok-upper", "cloud/runok-tag"]
    assert "final outputs:" in again.stdout

    status = cli("workflow", "status", "runok", "-o", "json")
    assert status.returncode == 0, status.stderr
    stages = {s["service"]: s for s in json.loads(status.stdout)["stages"]}
    assert set(stages) == {"runok-reverse", "runok-upper", "runok-tag"}
    for stage in stages.values():
        assert stage["exists"] and stage["matches"] and stage["error"] is None
        assert stage["jobs"] == {"Succeeded": 2}
    assert (got / "out.txt").read_bytes() == b"CBA\n[three]\n"
    assert stages["runok-upper"]["input_buckets"] == {"runok-masks": True}
    shown = cli("workflow", "status", "runok")
    assert "cloud/runok-tag" in shown.stdout and "2 succeeded" in shown.stdout

    # A service changed behind the tool's back: status says which field differs.
    clusters["cloud"].services["runok-upper"]["image"] = "busybox"
    changed = json.loads(cli("workflow", "status", "runok", "-o", "json").stdout)
    upper = next(s for s in changed["stages"] if s["service"] == "runok-upper")
    assert upper["matches"] is False and upper["changed"] == ["image"]
    for text in (ran.stdout, ran.stderr, again.stdout, status.stdout, shown.stdout):
        assert CLOUD_MINIO_SECRET not in text and CLOUD_PASSWORD not in text
    assert cli("workflow", "delete", "runok").returncode == 0


def test_a_failed_job_stops_the_trace_with_its_log(clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    fdl = write_fdl(
        tmp_path / "wf", clusters, "runbad", tag_script='sleep 1\necho "cannot tag: model missing" >&2\nexit 3\n'
    )
    assert cli("workflow", "apply", str(fdl)).returncode == 0
    source = tmp_path / "face.txt"
    source.write_bytes(b"xyz\n")
    ran = cli("workflow", "run", "runbad", "--input", str(source), env={"PROVISION_PROGRESS_INTERVAL": "0.3"})
    assert ran.returncode == 1, ran.stderr
    # Off a terminal, a long wait is never silent: what is awaited, at most every PROVISION_PROGRESS_INTERVAL s.
    assert "workflow: waiting for cloud/runbad-tag (Running)" in ran.stderr, ran.stderr
    assert "  | cannot tag: model missing" in ran.stderr
    error = next(line for line in ran.stderr.splitlines() if line.startswith("error: "))
    assert "stage cloud/runbad-tag failed" in error
    assert "Failed" in ran.stdout  # the timeline up to the failure is printed

    as_json = cli("workflow", "run", "runbad", "--input", str(source), "-o", "json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert not doc["ok"] and doc["failed_log_tail"] == "cannot tag: model missing"
    assert cli("workflow", "delete", "runbad").returncode == 0


def test_bad_run_input_is_refused_before_anything_is_sent(
    clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path
) -> None:
    fdl = write_fdl(tmp_path / "wf", clusters, "runarg")
    assert cli("workflow", "apply", str(fdl)).returncode == 0
    before = len(clusters["edge"].requests)
    missing = cli("workflow", "run", "runarg", "--input", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "--input" in missing.stderr
    stage = cli("workflow", "run", "runarg", "--input", str(fdl), "--stage", "nosuch")
    assert stage.returncode == 2 and "no stage 'nosuch'" in stage.stderr
    unknown = cli("workflow", "run", "nosuchflow", "--input", str(fdl))
    assert unknown.returncode == 1 and "no workflow named 'nosuchflow'" in unknown.stderr
    assert not [r for r in clusters["edge"].requests[before:] if r[0] != "GET"]
    assert cli("workflow", "delete", "runarg").returncode == 0


def test_invoke_sync_and_async(clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    fdl = write_fdl(tmp_path / "wf", clusters, "inv")
    assert cli("workflow", "apply", str(fdl)).returncode == 0
    data = tmp_path / "in.txt"
    data.write_bytes(b"hello\n")
    called = cli("workflow", "invoke", "inv", "inv-upper", "--input", str(data))
    assert called.returncode == 0, called.stderr
    assert called.stdout == "HELLO\n"
    assert "cloud/inv-upper: answered in" in called.stderr
    token = clusters["cloud"].services["inv-upper"]["token"]
    assert token not in called.stdout + called.stderr

    as_json = cli("workflow", "invoke", "inv", "cloud/inv-upper", "--input", str(data), "-o", "json")
    assert json.loads(as_json.stdout)["output"] == "HELLO\n"

    queued = cli("workflow", "invoke", "inv", "inv-upper", "--input", str(data), "--async")
    assert queued.returncode == 0, queued.stderr
    assert "accepted" in queued.stderr and queued.stdout == ""
    jobs = clusters["cloud"].jobs["inv-upper"]
    assert len(jobs) == 1

    nosuch = cli("workflow", "invoke", "inv", "nosuch")
    assert nosuch.returncode == 1 and "no stage 'nosuch'" in nosuch.stderr
    assert cli("workflow", "delete", "inv").returncode == 0


def test_oidc_token_from_a_command_is_refreshed_on_401(
    clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path
) -> None:
    counter = tmp_path / "asked"
    script = tmp_path / "token.sh"
    # The first token is stale (refused with 401); the next ones are good.
    script.write_text(
        f'echo x >> "{counter}"\n'
        f'if [ "$(wc -l < "{counter}")" -eq 1 ]; then echo stale-token-r5; else echo {OIDC_TOKEN}; fi\n'
    )
    fdl = write_fdl(tmp_path / "wf", clusters, "oidc", cloud_auth=f'oidc_token: "command(sh {script})"')
    applied = cli("workflow", "apply", str(fdl), "-o", "json")
    assert applied.returncode == 0, applied.stderr
    assert sorted(json.loads(applied.stdout)["sent"]) == [
        "create cloud/oidc-tag",
        "create cloud/oidc-upper",
        "create edge/oidc-reverse",
    ]
    asked = counter.read_text().count("x")
    assert asked >= 2  # the stale one, then a fresh one after the 401
    assert OIDC_TOKEN not in applied.stdout + applied.stderr
    assert cli("workflow", "delete", "oidc").returncode == 0


def test_apply_wait_waits_for_the_input_buckets(clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path) -> None:
    fdl = write_fdl(tmp_path / "wf", clusters, "waitb")
    assert cli("workflow", "apply", str(fdl)).returncode == 0
    cloud_s3 = clusters["cloud"].minio.client()
    cloud_s3.delete_bucket(Bucket="waitb-tagging")  # gone behind OSCAR's back

    once = cli("workflow", "apply", str(fdl), "-o", "json")
    assert once.returncode == 1
    assert json.loads(once.stdout)["missing_buckets"] == ["cloud: bucket waitb-tagging (input of waitb-tag)"]

    # The bucket comes back only once the command says it waits for it.
    proc = cli.popen("workflow", "apply", str(fdl), "--wait", "--timeout", "60", "-o", "json")
    assert proc.stderr is not None and proc.stdout is not None
    said = ""
    for line in proc.stderr:
        said += line
        if "waiting for 1 input bucket(s)" in line:
            cloud_s3.create_bucket(Bucket="waitb-tagging")
            break
    out, err = proc.communicate(timeout=120)
    waited = subprocess.CompletedProcess(proc.args, proc.returncode, out, said + err)
    assert waited.returncode == 0, waited.stderr
    doc = json.loads(waited.stdout)
    assert doc["ok"] and doc["sent"] == [] and doc["missing_buckets"] == []
    assert cli("workflow", "delete", "waitb").returncode == 0


def test_delete_buckets_removes_the_workflows_buckets_but_not_one_still_used(
    clusters: dict[str, StandInOscar], cli: CLI, tmp_path: Path
) -> None:
    fdl = write_fdl(tmp_path / "wf", clusters, "bkt")
    assert cli("workflow", "apply", str(fdl)).returncode == 0
    edge, cloud = clusters["edge"], clusters["cloud"]
    # A service of no workflow reads one of the workflow's buckets: that bucket stays.
    cloud.create({"name": "bystander", "image": "alpine", "script": "true", "input": [{"path": "bkt-tagging/other"}]})
    try:
        deleted = cli("workflow", "delete", "bkt", "--buckets", "-o", "json")
        assert deleted.returncode == 0, deleted.stderr
        doc = json.loads(deleted.stdout)
        assert sorted(doc["removed_buckets"]) == ["cloud: bkt-masks", "cloud: bkt-results", "edge: bkt-faces"]
        assert doc["kept_buckets"] == ["cloud: bkt-tagging (used by service bystander)"]

        def buckets(oscar: StandInOscar) -> set[str]:
            return {b["Name"] for b in oscar.minio.client().list_buckets()["Buckets"] if b["Name"].startswith("bkt-")}

        assert buckets(edge) == set() and buckets(cloud) == {"bkt-tagging"}
        assert "bkt-upper" not in cloud.services and "bystander" in cloud.services
    finally:
        cloud.delete("bystander")
