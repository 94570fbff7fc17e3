"""``provision local-im`` and ``provision infra`` through the real CLI, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, im_venv, only_loopback

pytestmark = pytest.mark.im


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PROVISION_HOME": str(home), "PROVISION_CONFIG": str(home / "none.yaml"), **(env or {})}
    for name in ("PROVISION_IM_URL", "PROVISION_AUTH_FILE"):
        full.pop(name, None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args], capture_output=True, text=True, env=full, timeout=120, check=False
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    assert only_loopback(), "run through make test"
    path = tmp_path / "home"
    path.mkdir()
    (path / "none.yaml").write_text("{}\n")
    return path


def test_start_status_infra_stop(home: Path) -> None:
    venv = str(im_venv())
    started = cli(home, "local-im", "start", "--venv", venv, "-o", "json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["url"].startswith("http://127.0.0.1:")
    assert (Path(info["auth_file"]).stat().st_mode & 0o777) == 0o600
    try:
        again = cli(home, "local-im", "start", "--venv", venv)
        assert again.returncode == 1
        assert "already running" in again.stderr

        status = cli(home, "local-im", "status", "--venv", venv, "-o", "json")
        assert status.returncode == 0
        assert json.loads(status.stdout)["info"]["pid"] == info["pid"]

        # With no --im-url configured, commands use the running local IM and its auth file.
        version = cli(home, "infra", "version", "-o", "json")
        assert version.returncode == 0, version.stderr
        assert json.loads(version.stdout) == {
            "im_url": info["url"],
            "version": "2.0.0",
            "credentials": "accepted",
            "infrastructures": 0,
        }

        created = cli(home, "infra", "create", str(REPO / "tests/data/two-vms.yaml"))
        assert created.returncode == 0, created.stderr
        infra_id = created.stdout.strip()
        state = cli(home, "infra", "state", infra_id, "-o", "json")
        assert json.loads(state.stdout)["state"] == "configured"
        outputs = cli(home, "infra", "outputs", infra_id, "-o", "json")
        assert json.loads(outputs.stdout)["front_private_ip"] == "10.0.0.1"
        vms = cli(home, "infra", "vms", infra_id, "-o", "json")
        assert [vm["id"] for vm in json.loads(vms.stdout)] == ["0", "1"]
        assert "password" not in vms.stdout
        destroyed = cli(home, "infra", "destroy", infra_id, "--yes")
        assert destroyed.returncode == 0
        gone = cli(home, "infra", "state", infra_id)
        assert gone.returncode == 1
        assert gone.stderr.startswith("error: IM does not know it (404)")
        assert "Traceback" not in gone.stderr
    finally:
        stopped = cli(home, "local-im", "stop")
    assert stopped.returncode == 0
    assert "local IM stopped" in stopped.stderr
    after = cli(home, "local-im", "status", "--venv", venv)
    assert after.returncode == 1
    assert after.stdout.startswith("not running")
    assert cli(home, "local-im", "stop").stderr.strip() == "no local IM was running"


def test_start_on_a_given_port_and_fresh(home: Path) -> None:
    from provisioner.localim import free_port

    port = free_port()
    started = cli(home, "local-im", "start", "--venv", str(im_venv()), "--port", str(port), "--fresh")
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"http://127.0.0.1:{port}"
    finally:
        cli(home, "local-im", "stop")


def test_unreachable_im_exits_3(home: Path, tmp_path: Path) -> None:
    from provisioner.localim import free_port
    from provisioner.privfs import write_secret_file

    auth = tmp_path / "auth.dat"
    write_secret_file(auth, "id = im; type = InfrastructureManager; username = u; password = p4ssw0rd-x\n")
    result = cli(
        home,
        "--im-url",
        f"http://127.0.0.1:{free_port()}",
        "--auth",
        str(auth),
        "infra",
        "list",
        env={"PROVISION_CONNECT_TIMEOUT": "1"},
    )
    assert result.returncode == 3
    assert result.stderr.splitlines()[0].startswith("error: cannot connect to IM at http://127.0.0.1:")
    assert "p4ssw0rd-x" not in result.stderr + result.stdout


def test_local_im_comes_back_where_its_clusters_are_recorded(home: Path) -> None:
    import socket

    venv = str(im_venv())
    started = cli(home, "local-im", "start", "--venv", venv, "-o", "json")
    assert started.returncode == 0, started.stderr
    url = json.loads(started.stdout)["url"]
    port = int(url.rsplit(":", 1)[1])
    try:
        created = cli(home, "cluster", "create", "homed", "-t", "kubernetes", "-s", "local-sim", "-o", "json")
        assert created.returncode == 0, created.stderr
        infra = json.loads(created.stdout)["infra_id"]
        assert cli(home, "local-im", "stop").returncode == 0

        # Stopped: the cluster's recorded URL is used (unreachable, exit 3), not "no IM endpoint configured".
        down = cli(home, "cluster", "status", "homed", env={"PROVISION_CONNECT_TIMEOUT": "1"})
        assert down.returncode == 3, down.stderr
        assert down.stderr.startswith(f"error: cannot connect to IM at {url}")

        # Started again: the same address and data, so the recorded cluster works as before.
        again = cli(home, "local-im", "start", "--venv", venv)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == url
        status = cli(home, "cluster", "status", "homed", "-o", "json")
        assert status.returncode == 0, status.stderr
        assert (json.loads(status.stdout)["infra_id"], json.loads(status.stdout)["state"]) == (infra, "configured")
        assert cli(home, "local-im", "stop").returncode == 0

        # Its port taken: said so (exit 1), unless --port moves it; sync --im-url then re-points the cluster.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            taken = cli(home, "local-im", "start", "--venv", venv)
            assert taken.returncode == 1
            assert f"port {port}" in taken.stderr and "taken" in taken.stderr
            assert "--port" in taken.stderr
            moved = cli(home, "local-im", "start", "--venv", venv, "--port", str(_free()))
            assert moved.returncode == 0, moved.stderr
            new_url = moved.stdout.strip()
            assert new_url != url
            report = cli(home, "cluster", "sync", "--im-url", new_url, "-o", "json")
            assert report.returncode == 0, report.stderr
            assert json.loads(report.stdout)["moved"] == ["homed"]
            status = cli(home, "cluster", "status", "homed", "-o", "json")
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["im_url"] == new_url
        destroyed = cli(home, "cluster", "destroy", "homed", "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
    finally:
        cli(home, "local-im", "stop")


def _free() -> int:
    from provisioner.localim import free_port

    return free_port()
