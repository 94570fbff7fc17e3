"""Static rules of the playbooks, read from their YAML: versions only in vars/versions.yml, no_log on every task
that touches a secret, secret-bearing files written 0600, a preflight in every role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.playbooks.conftest import PLAYBOOKS, ROLE_NAMES, ROLES, SECRETS, VERSIONS

ROLE_FILES = sorted(p for p in ROLES.rglob("*") if p.is_file())
TASK_FILES = sorted([*ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml")])

# A version-looking literal: 1.2.3 or v1.2.3 (not part of a longer dotted number such as an IP address).
VERSION_LITERAL = re.compile(r"(?<![\w.])v?\d+\.\d+\.\d+(?![\w.]*\d)")
# Keys whose string value Ansible evaluates as a Jinja expression without {{ }}.
IMPLICIT_JINJA = {"when", "changed_when", "failed_when", "until", "that"}
JINJA_PART = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
# The helper kube_common/tasks/helm_release.yml reads the values file it is given, which may hold secrets.
HELPER_SECRET_REFERENCES = {"kube_common_release.values_file"}


def test_roles_pin_no_versions() -> None:
    offenders = []
    for path in ROLE_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if VERSION_LITERAL.search(line) or re.search(r"--version[ =]+(?!\{\{)\S", line):
                offenders.append(f"{path.relative_to(PLAYBOOKS)}:{number}: {line.strip()}")
            if re.search(r":latest\b", line):
                offenders.append(f"{path.relative_to(PLAYBOOKS)}:{number}: unpinned :latest: {line.strip()}")
    assert not offenders, "versions belong in vars/versions.yml:\n" + "\n".join(offenders)


def test_versions_file_pins_are_used_and_not_redefined() -> None:
    versions = yaml.safe_load(VERSIONS.read_text())
    assert versions, "vars/versions.yml is empty"
    for name, value in versions.items():
        if isinstance(value, str):
            assert VERSION_LITERAL.fullmatch(value.split("+")[0]), f"{name}={value!r} is not a version"
    sources = "\n".join(p.read_text() for p in ROLE_FILES)
    for name in versions:
        assert re.search(rf"\b{name}\b", sources), f"{name} is pinned in vars/versions.yml but no role uses it"
    for defaults in ROLES.glob("*/defaults/main.yml"):
        defined = set(yaml.safe_load(defaults.read_text()) or {})
        assert not defined & set(versions), f"{defaults} redefines {defined & set(versions)}"
        assert not [n for n in defined if n.endswith(("_version", "_sha256", "_checksum"))], defaults


def tasks_in(items: Any) -> Iterator[dict[str, Any]]:
    """Every task of a task list, blocks included (the block itself too, as it can carry no_log)."""
    for task in items or []:
        yield task
        for section in ("block", "rescue", "always"):
            if section in task:
                for inner in tasks_in(task[section]):
                    yield {**inner, "_inherited_no_log": inner.get("no_log", task.get("no_log"))}


def jinja_text(node: Any, key: str | None = None) -> Iterator[str]:
    """The Jinja expressions in a task: {{ }} and {% %} parts, and the implicit expressions of `when` & co."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k != "name":
                yield from jinja_text(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from jinja_text(v, key)
    elif isinstance(node, str):
        if key in IMPLICIT_JINJA:
            yield node
        for match in JINJA_PART.finditer(node):
            yield match.group(1) or match.group(2)


def references(task: dict[str, Any], names: set[str]) -> set[str]:
    found = set()
    for expression in jinja_text(task):
        for name in names:
            if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", expression):
                found.add(name)
    return found


def no_log(task: dict[str, Any]) -> bool:
    value = task.get("no_log", task.get("_inherited_no_log"))
    return value is True


def load_tasks(path: Path) -> list[dict[str, Any]]:
    return list(tasks_in(yaml.safe_load(path.read_text())))


def template_module(task: dict[str, Any]) -> dict[str, Any] | None:
    return task.get("ansible.builtin.template")


def secret_templates() -> set[str]:
    """Role templates that use a secret variable: 'role/file.j2'."""
    found = set()
    for template in ROLES.glob("*/templates/*.j2"):
        expressions = [m.group(1) or m.group(2) for m in JINJA_PART.finditer(template.read_text())]
        if any(re.search(rf"\b{name}\b", e) for e in expressions for name in SECRETS):
            found.add(f"{template.parent.parent.name}/{template.name}")
    return found


def test_secret_templates_are_known() -> None:
    assert secret_templates() == {
        "minio/values.yaml.j2",
        "oscar/values.yaml.j2",
        "onedata/credentials-secret.yaml.j2",
        "registry/pull-secrets.yaml.j2",
        "k3s/config.yaml.j2",
    }


def secret_file_variables() -> set[str]:
    """Variables naming the files rendered from secret templates (from the template tasks' dest)."""
    names = set(HELPER_SECRET_REFERENCES)
    wanted = secret_templates()
    for path in TASK_FILES:
        role = path.parent.parent.name
        for task in load_tasks(path):
            module = template_module(task)
            if module and f"{role}/{module['src']}" in wanted:
                names.update(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", module["dest"]))
    return names


def test_tasks_touching_secrets_have_no_log() -> None:
    secret_names = set(SECRETS)
    file_names = secret_file_variables()
    assert {"minio_values_file", "oscar_values_file", "onedata_secret_file", "registry_secret_file"} <= file_names
    offenders = []
    checked = 0
    for path in TASK_FILES:
        for task in load_tasks(path):
            if "block" in task:
                continue  # its tasks are checked one by one
            touched = references(task, secret_names)
            if "ansible.builtin.include_role" not in task:
                # include_role only passes the file's path on; the helper's own tasks are checked here too.
                touched |= references(task, file_names)
            if touched:
                checked += 1
                if not no_log(task):
                    offenders.append(f"{path.relative_to(PLAYBOOKS)}: {task.get('name')}: {sorted(touched)}")
    assert checked >= 15
    assert not offenders, "tasks touching secrets without no_log: true:\n" + "\n".join(offenders)


def test_secret_files_are_written_0600_with_no_log() -> None:
    wanted = secret_templates()
    seen = set()
    for path in TASK_FILES:
        role = path.parent.parent.name
        for task in load_tasks(path):
            module = template_module(task)
            if module and f"{role}/{module['src']}" in wanted:
                seen.add(f"{role}/{module['src']}")
                assert module.get("mode") == "0600", f"{role}/{module['src']} is not written with mode 0600"
                assert no_log(task), f"{role}: {task['name']} lacks no_log"
    assert seen == wanted


def test_no_task_prints_a_secret() -> None:
    for path in TASK_FILES:
        for task in load_tasks(path):
            if "ansible.builtin.debug" in task or "ansible.builtin.fail" in task:
                assert not references(task, set(SECRETS)), f"{path}: {task['name']}"
            assert "ansible.builtin.shell" not in task, f"{path}: {task['name']}: use command with argv"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_layout(role: str) -> None:
    base = ROLES / role
    main = yaml.safe_load((base / "tasks" / "main.yml").read_text())
    first = main[0]
    assert first.get("ansible.builtin.import_tasks") == "preflight.yml", "preflight must be imported first"
    assert first.get("tags") == ["preflight"]
    assert (base / "tasks" / "preflight.yml").is_file()
    meta = yaml.safe_load((base / "meta" / "main.yml").read_text())
    for key in ("author", "description", "license", "min_ansible_version", "platforms"):
        assert meta["galaxy_info"].get(key), f"{role}: meta/main.yml lacks galaxy_info.{key}"
    assert (base / "defaults" / "main.yml").is_file()


def test_preflight_changes_nothing() -> None:
    """Preflight tasks only read: no module that writes, and every command is marked unchanged."""
    read_only = {
        "ansible.builtin.assert",
        "ansible.builtin.debug",
        "ansible.builtin.set_fact",
        "ansible.builtin.stat",
        "ansible.builtin.slurp",
        "ansible.builtin.command",
    }
    for path in ROLES.glob("*/tasks/preflight.yml"):
        for task in load_tasks(path):
            if "block" in task:
                continue
            modules = {k for k in task if k.startswith("ansible.builtin.")}
            assert modules <= read_only, f"{path}: {task['name']}: {modules}"
            if "ansible.builtin.command" in task:
                assert task.get("changed_when") is False, f"{path}: {task['name']}"
                assert task.get("check_mode") is False, f"{path}: {task['name']} must also run in check mode"


def test_site_playbook_contract() -> None:
    (play,) = yaml.safe_load((PLAYBOOKS / "site.yml").read_text())
    assert play["hosts"] == "front" and play["become"] is True
    assert play["vars_files"] == ["vars/versions.yml"]
    assert [r["role"] for r in play["roles"]] == [
        "kube_common",
        "knative",
        "yunikorn",
        "minio",
        "onedata",
        "oscar",
        "registry",
    ]
    for role in play["roles"][1:]:
        assert role["tags"] == [role["role"]]
        assert role["when"] == f"'{role['role']}' in provision_components"
    assert "always" not in play["roles"][0]["tags"]
    edge = yaml.safe_load((PLAYBOOKS / "edge.yml").read_text())
    assert edge[0]["hosts"] == "front:wn" and [r["role"] for r in edge[0]["roles"]] == ["k3s"]
    assert edge[1]["ansible.builtin.import_playbook"] == "site.yml"


def downloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every get_url task of the roles: (where, its arguments)."""
    for path in TASK_FILES:
        for task in load_tasks(path):
            args = task.get("ansible.builtin.get_url") or task.get("get_url")
            if args is not None:
                yield f"{path.relative_to(PLAYBOOKS)}: {task.get('name')}", args


def test_every_download_is_checked_against_a_pinned_digest() -> None:
    versions = yaml.safe_load(VERSIONS.read_text())
    found = list(downloads())
    assert len(found) >= 3, found  # K3s, Helm, Knative
    for where, args in found:
        checksum = str(args.get("checksum") or "")
        match = re.fullmatch(r"sha256:\{\{\s*(\w+)(.*?)\}\}(.*)", checksum)
        assert match, f"{where}: downloads without a sha256 checksum ({checksum!r})"
        name, rest = match.group(1), match.group(3)
        if name.endswith("_release_url"):
            # A sums file published with the same pinned release (K3s's sha256sum-<arch>.txt).
            assert re.fullmatch(r"/sha256sum-.+\.txt", rest), f"{where}: {checksum!r}"
        else:
            # A digest pinned in vars/versions.yml, next to the version it belongs to.
            assert name in versions and name.endswith("_sha256"), f"{where}: {name} is not pinned in versions.yml"


def test_every_knative_release_file_has_a_digest_entry() -> None:
    versions = yaml.safe_load(VERSIONS.read_text())
    defaults = yaml.safe_load((ROLES / "knative" / "defaults" / "main.yml").read_text())
    files = [item["file"] for item in defaults["knative_release_files"]]
    assert files == ["serving-crds.yaml", "serving-core.yaml", "kourier.yaml"]
    assert sorted(versions["knative_sha256"]) == sorted(files)
    # Filled in with real digests, or left empty (the role then refuses): never a made-up placeholder.
    for file, digest in versions["knative_sha256"].items():
        assert digest == "" or re.fullmatch(r"[0-9a-f]{64}", digest), f"knative_sha256[{file!r}] = {digest!r}"
    # The role checks every entry before it creates or downloads anything.
    tasks = load_tasks(ROLES / "knative" / "tasks" / "main.yml")
    names = [t.get("name") for t in tasks]
    refuse = names.index("Refuse to install Knative without the pinned digests of its release manifests")
    assert refuse < names.index("Create the Knative working directories")
    assert "preflight" not in (tasks[refuse].get("tags") or [])
