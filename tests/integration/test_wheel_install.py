"""The tool as users install it (``pipx install .`` / ``pip install .``): the wheel, in a venv of its own.

``make setup`` builds the wheel from the current sources and installs it, non-editable, into ``build/wheel-venv``
(the Makefile's ``$(WHEEL_VENV)`` target). Here that install runs from a working directory outside the
repository, with no ``PYTHONPATH``: everything it reads at run time (templates, stub types, input schema,
playbooks, runbooks) must come from the installed package. Against the real local IM: a create, a scale and a
destroy on ``local-sim``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, RunningIM

WHEEL_VENV = REPO / "build" / "wheel-venv"
pytestmark = [pytest.mark.im, pytest.mark.slow]


@pytest.fixture(scope="module")
def installed() -> Path:
    if not (WHEEL_VENV / ".installed").exists():
        pytest.fail(f"no wheel install in {WHEEL_VENV}: run `make setup`", pytrace=False)
    return WHEEL_VENV


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The user's environment: none of the test run's Python paths or provision settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISION_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PROVISION_HOME": str(home), "PROVISION_CONFIG": str(home / "config.yaml"), **extra})
    return env


def run(venv: Path, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def package_dir(venv: Path, cwd: Path, env: dict[str, str]) -> Path:
    """Where ``venv``'s Python imports provisioner from."""
    found = run(venv, ["python", "-c", "import provisioner; print(provisioner.__file__)"], cwd, env)
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip()).resolve().parent


def test_the_package_is_the_installed_one(installed: Path, tmp_path: Path) -> None:
    location = package_dir(installed, tmp_path, clean_env(tmp_path / "home"))
    assert location.is_relative_to(installed.resolve()), location
    assert not location.is_relative_to((REPO / "provisioner").resolve())


def test_templates_runbooks_and_playbooks_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("{}\n")
    env = clean_env(home)
    listed = run(installed, ["provision", "template", "list", "-o", "json"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr
    assert {row["name"] for row in yaml.safe_load(listed.stdout)} >= {"oscar", "kubernetes"}

    rendered = run(installed, ["provision", "template", "render", "oscar", "--site", "local-sim"], tmp_path, env)
    assert rendered.returncode == 0, rendered.stderr
    doc = yaml.safe_load(rendered.stdout)
    assert doc["tosca_definitions_version"].startswith("tosca_simple_yaml")
    assert "***" in rendered.stdout  # secrets masked in the preview

    page = run(installed, ["provision", "runbook", "im-down"], tmp_path, env)
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith("# The IM endpoint is down") and "provision cluster" in page.stdout
    index = run(installed, ["provision", "runbook", "-o", "json"], tmp_path, env)
    assert "cloud-refused" in {row["name"] for row in yaml.safe_load(index.stdout)}

    # The installed playbooks parse, with the installed ansible-core.
    books = package_dir(installed, tmp_path, env) / "data" / "playbooks"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"front": {"hosts": {"fe": {}}}}}}))
    ansible_env = {**env, "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "t")}
    for book in ("site.yml", "edge.yml"):
        checked = run(
            installed, ["ansible-playbook", "-i", str(inventory), "--syntax-check", str(books / book)], tmp_path,
            ansible_env,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # Nothing was written into the repository's working tree by the installed tool.
    assert not (tmp_path / "inventories").exists()


def test_create_scale_destroy_from_the_wheel(installed: Path, local_im: RunningIM, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("{}\n")
    env = clean_env(home, PROVISION_IM_URL=local_im.url, PROVISION_AUTH_FILE=str(local_im.auth_file))

    def provision(*args: str) -> subprocess.CompletedProcess[str]:
        return run(installed, ["provision", *args], tmp_path, env)

    created = provision("cluster", "create", "wheel", "-t", "oscar", "-s", "local-sim", "--set", "wn_num=1")
    assert created.returncode == 0, created.stderr
    scaled = provision("cluster", "scale", "wheel", "--workers", "2")
    assert scaled.returncode == 0, scaled.stderr
    status = provision("cluster", "status", "wheel", "-o", "json")
    assert status.returncode == 0, status.stderr
    vms = yaml.safe_load(status.stdout)["vms"]
    assert [vm["role"] for vm in vms].count("wn") == 2, vms
    destroyed = provision("cluster", "destroy", "wheel", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    listed = provision("cluster", "list", "-o", "json")
    assert "wheel" not in {row["name"] for row in yaml.safe_load(listed.stdout)}
