"""Every command that takes a cluster NAME refuses a bad one as bad input (exit 2), before any IM call or lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.privfs import write_secret_file

COMMANDS = [
    ("cluster", "create", "{}", "-t", "kubernetes", "-s", "local-sim"),
    ("cluster", "status", "{}"),
    ("cluster", "outputs", "{}"),
    ("cluster", "secrets", "{}"),
    ("cluster", "logs", "{}"),
    ("cluster", "scale", "{}", "--workers", "1"),
    ("cluster", "reconfigure", "{}"),
    ("cluster", "auth", "{}"),
    ("cluster", "destroy", "{}", "--yes"),
    ("cluster", "ssh", "{}", "--print"),
    ("cluster", "inventory", "{}"),
    ("cluster", "install", "{}"),
    ("cluster", "verify", "{}"),
    ("autoscale", "disable", "{}"),
    ("autoscale", "explain", "{}"),
]


LOCKING = [c for c in COMMANDS if c[1] in ("scale", "reconfigure", "destroy")]
CASES = [(c, "") for c in COMMANDS] + [(c, "Bad_Name") for c in LOCKING]


@pytest.mark.parametrize(("command", "bad"), CASES, ids=lambda c: " ".join(c[:2]) if isinstance(c, tuple) else repr(c))
def test_bad_cluster_name_is_bad_input(tmp_path: Path, command: tuple[str, ...], bad: str) -> None:
    auth = tmp_path / "auth.dat"
    write_secret_file(auth, "id = im; type = InfrastructureManager; username = u; password = p4ss-word\n")
    env = {
        **os.environ,
        "PROVISION_HOME": str(tmp_path / "home"),
        "PROVISION_CONFIG": str(tmp_path / "none.yaml"),
        "PROVISION_IM_URL": "http://127.0.0.1:9",  # nothing listens there: nothing may be sent anyway
        "PROVISION_AUTH_FILE": str(auth),
    }
    (tmp_path / "none.yaml").write_text("{}\n")
    args = [arg.format(bad) for arg in command]
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: NAME: must start with a lowercase letter"), result.stderr
    assert "bug" not in result.stderr
    locks = tmp_path / "home" / "locks"
    assert not locks.exists() or not any(locks.iterdir())  # refused before taking the cluster's lock
