"""``make demo``'s script (.ci/demo.sh) end to end, so the README's first command stays true at every commit; and
``make demo-continuum``'s (.ci/demo-continuum.sh): the whole continuum from one file.

Each starts its own local IM (a free port, a throwaway state directory) in this loopback-only namespace, and must
leave nothing behind: no state directory under TMPDIR, no infrastructure in IM (the script checks that itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, im_venv, only_loopback
from tests.sshd import sshd_available

pytestmark = [pytest.mark.im, pytest.mark.slow]


def run_demo(script: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``.ci/<script>`` as ``make`` runs it, with ``tmp`` as TMPDIR (where its throwaway PROVISION_HOME goes)."""
    assert only_loopback(), "the demo runs IM: loopback-only namespace needed"
    assert (REPO / ".venv" / "bin" / "provision").exists(), "run `make setup` first"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISION_", "AWS_"))}
    env.update({"TMPDIR": str(tmp), "PROVISION_IM_VENV": str(im_venv()), "NO_COLOR": "1"})
    return subprocess.run(
        ["bash", str(REPO / ".ci" / script)], capture_output=True, text=True, env=env, timeout=540, check=False
    )


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = run_demo("demo.sh", tmp)
    shown = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, shown
    assert "no infrastructure left in IM" in result.stdout, shown
    assert "every-minute-floor" in result.stdout + result.stderr, shown
    # The two-cluster workflow: applied, a file run through it (the timeline), deleted.
    assert "workflow lines: minio.demo-b:lines/in/hello.txt through 2 job(s)" in result.stdout, shown
    assert "final output: MUUNITNOC OLLEH" in result.stdout, shown
    assert "deleted demo/shout" in result.stdout and "no workflows" in result.stdout, shown
    assert list(tmp.iterdir()) == [], shown  # the throwaway PROVISION_HOME is gone


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR with a short path, as a user's is: Ansible's SSH control sockets go under it (provision's
    ``pv-cp-*`` directory), and a unix socket's path must stay under 108 bytes (pytest's tmp_path is too long)."""
    made = Path(tempfile.mkdtemp(prefix="dc-", dir="/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def test_demo_continuum_runs_and_cleans_up(short_tmp: Path) -> None:
    """One continuum file: an edge cluster (preflight over SSH to sshd on 127.0.77.x), two IM clusters with
    stand-in OSCARs, a workflow over them with a Lambda stage on moto; plan, up, status, a run, down."""
    assert sshd_available(), "the demo's edge hosts are Debian's sshd (as root): run .ci/system-deps"
    tmp = short_tmp
    result = run_demo("demo-continuum.sh", tmp)
    out, both = result.stdout, result.stdout + result.stderr
    shown = f"stdout:\n{out[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, shown
    # up: every cluster, the edge one by its preflight over SSH, then the workflow with its Lambda stage.
    assert "continuum demo: up" in out and "workflow demo: applied (3 change(s) sent)" in out, shown
    assert any(line.split()[:1] == ["demo-edge"] and "preflight passed" in line for line in out.splitlines()), shown
    assert "create aws/demo-tally" in both, shown
    # A file through the two clusters' OSCARs: the timeline, the final output (on demo-b's MinIO and on S3).
    assert "workflow demo: minio.demo-a:lines/in/hello.txt through 2 job(s)" in out, shown
    assert "s3.aws1:demo-archive/out/hello.txt" in out, shown
    assert "final output: MUUNITNOC OLLEH" in out, shown
    # down: the workflow (the Lambda function too) and the clusters; nothing left in IM or on Lambda.
    deleted = [line for line in out.splitlines() if line.startswith("workflow demo: deleted (")]
    assert deleted and "aws/demo-tally" in deleted[0], shown
    assert "continuum demo: down" in out, shown
    assert "no infrastructure left in IM" in out and "no function left on AWS Lambda" in out, shown
    assert "demo-continuum-oscar-a-pw" not in result.stderr, shown  # the passwords the file gives: never logged
    assert list(tmp.iterdir()) == [], shown  # the throwaway PROVISION_HOME is gone
