"""The playbooks parse (ansible-playbook --syntax-check), pass ansible-lint's production profile offline, and
`--tags preflight` selects nothing but preflight tasks."""

from __future__ import annotations

import re
from pathlib import Path

from tests.playbooks.conftest import BIN, PLAYBOOKS, ROLE_NAMES, ansible_playbook, run, write_yaml


def small_inventory(path: Path) -> Path:
    return write_yaml(path, {"all": {"children": {"front": {"hosts": {"fe": {}}}, "wn": {"hosts": {"w1": {}}}}}})


def test_syntax_check(ansible_base: Path) -> None:
    inventory = small_inventory(ansible_base / "hosts.yml")
    playbooks = [str(PLAYBOOKS / "site.yml"), str(PLAYBOOKS / "edge.yml")]
    result = ansible_playbook(["-i", str(inventory), "--syntax-check", *playbooks], ansible_base)
    assert result.rc == 0, result.output
    assert "playbook: " + playbooks[0] in result.stdout and "playbook: " + playbooks[1] in result.stdout


def test_ansible_lint_production_offline(ansible_base: Path) -> None:
    before = sorted(p.relative_to(PLAYBOOKS) for p in PLAYBOOKS.rglob("*"))
    result = run([str(BIN / "ansible-lint"), "--offline", "--nocolor"], ansible_base, cwd=PLAYBOOKS, timeout=300)
    assert result.rc == 0, result.output
    assert "Profile 'production' was required, and it passed" in result.output, result.output
    # Nothing (cache, .ansible/ ...) was written into the repository.
    assert sorted(p.relative_to(PLAYBOOKS) for p in PLAYBOOKS.rglob("*")) == before


TASK_LINE = re.compile(r"^\s{6}(?P<role>\w+) : (?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]$")


def listed_tasks(playbook: str, base: Path, *extra: str) -> list[tuple[str, str, set[str]]]:
    inventory = small_inventory(base / "hosts.yml")
    result = ansible_playbook(["-i", str(inventory), "--list-tasks", *extra, str(PLAYBOOKS / playbook)], base)
    assert result.rc == 0, result.output
    tasks = []
    for line in result.stdout.splitlines():
        match = TASK_LINE.match(line)
        if match:
            tags = {t.strip() for t in match["tags"].split(",") if t.strip()}
            tasks.append((match["role"], match["name"], tags))
    return tasks


def test_tags_preflight_selects_only_preflight_tasks(ansible_base: Path) -> None:
    # edge.yml is the K3s play plus site.yml, so it lists every role.
    playbook, roles = "edge.yml", set(ROLE_NAMES)
    everything = listed_tasks(playbook, ansible_base)
    preflight = listed_tasks(playbook, ansible_base, "--tags", "preflight")
    assert preflight, "no task is tagged preflight"
    assert all("preflight" in tags for _, _, tags in preflight), preflight
    # Every role has preflight checks, and --tags preflight reaches all of them.
    assert {role for role, _, _ in preflight} == roles
    assert len(preflight) == sum(1 for _, _, tags in everything if "preflight" in tags)
    # The checks needing kubectl/helm and a cluster are all in kube_common and can be skipped on their own.
    kube_tools = [(role, name) for role, name, tags in preflight if "kube_tools" in tags]
    assert kube_tools
    assert {role for role, _ in kube_tools} == {"kube_common"}
    without = listed_tasks(playbook, ansible_base, "--tags", "preflight", "--skip-tags", "kube_tools")
    assert len(without) == len(preflight) - len(kube_tools)


def test_component_tag_runs_kube_common_too(ansible_base: Path) -> None:
    tasks = listed_tasks("site.yml", ansible_base, "--tags", "minio")
    roles = {role for role, _, _ in tasks}
    assert roles == {"kube_common", "minio"}
