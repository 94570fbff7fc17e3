"""``make demo``'s script (.ci/demo.sh) end to end, so the README's first command stays true at every commit.

It starts its own local IM (a free port, a throwaway state directory) in this loopback-only namespace, and must
leave nothing behind: no state directory under TMPDIR, no infrastructure in IM (the script checks that itself).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, im_venv, only_loopback

pytestmark = [pytest.mark.im, pytest.mark.slow]


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    assert only_loopback(), "the demo runs IM: loopback-only namespace needed"
    assert (REPO / ".venv" / "bin" / "provision").exists(), "run `make setup` first"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    env.update({"TMPDIR": str(tmp), "PROVISION_IM_VENV": str(im_venv()), "NO_COLOR": "1"})
    result = subprocess.run(
        ["bash", str(REPO / ".ci" / "demo.sh")], capture_output=True, text=True, env=env, timeout=540, check=False
    )
    shown = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, shown
    assert "no infrastructure left in IM" in result.stdout, shown
    assert "every-minute-floor" in result.stdout + result.stderr, shown
    # The two-cluster workflow: applied, a file run through it (the timeline), deleted.
    assert "workflow lines: minio.demo-b:lines/in/hello.txt through 2 job(s)" in result.stdout, shown
    assert "final output: MUUNITNOC OLLEH" in result.stdout, shown
    assert "deleted demo/shout" in result.stdout and "no workflows" in result.stdout, shown
    assert list(tmp.iterdir()) == [], shown  # the throwaway PROVISION_HOME is gone
