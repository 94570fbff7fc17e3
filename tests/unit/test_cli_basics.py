"""The CLI's entry point: version, help, usage errors, and the one place that shows errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from provisioner import __version__


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"provision {__version__}\n"


def test_help_lists_the_groups() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for group in ("local-im", "infra"):
        assert group in result.stdout


def test_unknown_command_is_one_line_exit_2() -> None:
    result = cli("frobnicate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: No such command 'frobnicate'. (see: provision --help)"]


def test_bad_option_value_exit_2() -> None:
    result = cli("local-im", "start", "--port", "http")
    assert result.returncode == 2
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("im_ulr: http://x\n")
    result = cli("infra", "list", env={"PROVISION_CONFIG": str(config), "PROVISION_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"error: im_ulr: unknown setting in {config} (did you mean 'im_url'?)"


def test_world_readable_auth_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("")
    auth = tmp_path / "auth.dat"
    auth.write_text("id = im; type = InfrastructureManager; username = u; password = s3cr3t-value\n")
    auth.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    result = cli(
        "--im-url",
        "http://127.0.0.1:9",
        "--auth",
        str(auth),
        "infra",
        "list",
        env={"PROVISION_HOME": str(tmp_path), "PROVISION_CONFIG": str(tmp_path / "none.yaml")},
    )
    assert result.returncode == 2
    assert "chmod 600" in result.stderr
    assert "s3cr3t-value" not in result.stderr


def test_no_im_configured_exit_2(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("")
    env = {"PROVISION_HOME": str(tmp_path), "PROVISION_CONFIG": str(tmp_path / "none.yaml"), "PROVISION_IM_URL": ""}
    result = cli("infra", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: --im-url: no IM endpoint configured"


def test_cluster_list_needs_no_im(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("")
    env = {"PROVISION_HOME": str(tmp_path), "PROVISION_CONFIG": str(tmp_path / "none.yaml"), "PROVISION_IM_URL": ""}
    result = cli("cluster", "list", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
