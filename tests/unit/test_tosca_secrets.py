"""Secrets: generated once per cluster and reused, kept 0600 under <home>/secrets, never shown."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import yaml

from provisioner.errors import ConfigError, InputError
from provisioner.redact import mask
from provisioner.tosca import SecretStore, dump, masked, prepare_inputs, render, resolve_site

GENERATED = {"admin_token", "oscar_password", "minio_password"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_and_reused(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    first = prepare_inputs("oscar", {}, secrets_store=store)
    assert first.generated == GENERATED
    assert store.path == tmp_path / "secrets" / "c1.yaml"
    assert mode(store.path) == 0o600
    assert mode(store.path.parent) == 0o700
    again = prepare_inputs("oscar", {"wn_num": "4"}, secrets_store=SecretStore(tmp_path, "c1"))
    assert again.generated == frozenset()
    for name in GENERATED:
        assert again[name] == first[name]
    other = prepare_inputs("oscar", {}, secrets_store=SecretStore(tmp_path, "c2"))
    assert all(other[name] != first[name] for name in GENERATED)


def test_kubernetes_keeps_only_its_secrets(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "k")
    prepare_inputs("kubernetes", {}, secrets_store=store)
    assert set(store.load()) == {"admin_token"}


def test_given_secrets_are_kept_and_win(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    prepare_inputs("oscar", {"oscar_password": "my own password\nwith a newline"}, secrets_store=store)
    assert store.load()["oscar_password"] == "my own password\nwith a newline"
    reused = prepare_inputs("oscar", {}, secrets_store=store)
    assert reused["oscar_password"] == "my own password\nwith a newline"
    changed = prepare_inputs("oscar", {"oscar_password": "another-password"}, secrets_store=store)
    assert changed["oscar_password"] == "another-password"
    assert store.load()["oscar_password"] == "another-password"


def test_file_too_open_is_tightened(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    prepare_inputs("oscar", {}, secrets_store=store)
    os.chmod(store.path, 0o644)
    prepare_inputs("oscar", {}, secrets_store=store)
    assert mode(store.path) == 0o600


def test_bad_secrets_file(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    store.directory.mkdir(parents=True)
    store.path.write_text("- not\n- a mapping\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        prepare_inputs("oscar", {}, secrets_store=store)
    store.path.write_text("oscar_password: short\n")
    with pytest.raises(InputError) as info:
        prepare_inputs("oscar", {}, secrets_store=store)
    assert info.value.field == "oscar_password"
    assert "kept in" in str(info.value)
    assert "short" not in str(info.value).replace("shorter", "")


@pytest.mark.parametrize("cluster", ["", "../escape", "a/b", ".hidden", "x" * 200, "with space"])
def test_cluster_names_cannot_escape_the_directory(tmp_path: Path, cluster: str) -> None:
    with pytest.raises(InputError) as info:
        SecretStore(tmp_path, cluster)
    assert info.value.field == "NAME"


def test_secrets_never_in_masked_output(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    given = {"registry_server": "r.example.org", "registry_user": "u", "registry_password": "registry-pass-123"}
    resolved = prepare_inputs("oscar", given, secrets_store=store)
    doc = render("oscar", resolve_site("local-sim", {}), resolved, cluster_name="c1", deployment_id="d1")
    full = dump(doc)
    shown = dump(masked(doc, resolved.secret_values))
    assert len(resolved.secret_values) == 4
    for value in resolved.secret_values:
        assert value in full
        assert value not in shown
    inputs = yaml.safe_load(shown)["topology_template"]["inputs"]
    for name in ("admin_token", "oscar_password", "minio_password", "registry_password"):
        assert inputs[name]["default"] == "***"
    assert inputs["onedata_token"]["default"] == ""
    assert inputs["registry_user"]["default"] == "u"
    assert masked(doc, []) == doc


def test_secrets_are_masked_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    resolved = prepare_inputs("oscar", {"minio_password": "log-me-if-you-can"}, secrets_store=None)
    for value in resolved.secret_values:
        assert mask(f"x {value} y") == "x *** y"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("provisioner.test").debug("inputs: %r", resolved)
    assert "log-me-if-you-can" not in caplog.text


def test_update_and_delete(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    assert store.load() == {}
    store.update({"a": "1", "b": "2"})
    store.update({"a": None})
    assert store.load() == {"b": "2"}
    assert store.delete() is True
    assert store.delete() is False


def test_the_file_is_json_after_a_comment_and_a_hand_edited_yaml_file_is_read(tmp_path: Path) -> None:
    """Written as JSON (YAML's flow style) after the comment line, read back without a YAML parser; a file a
    person rewrote as block YAML (with comments) is read as YAML, and the next write is JSON again."""
    import json

    store = SecretStore(tmp_path, "c1")
    store.update({"oscar_password": 'p\u00e9"w', "admin_token": "t0k"})
    comment, body = store.path.read_text().split("\n", 1)
    assert comment.startswith("# ") and "0600" in comment
    assert json.loads(body) == {"admin_token": "t0k", "oscar_password": 'p\u00e9"w'}
    assert body.isascii() and list(json.loads(body)) == ["admin_token", "oscar_password"]  # sorted, escaped
    assert yaml.safe_load(store.path.read_text()) == json.loads(body)  # still a YAML mapping
    store.path.write_text("# mine\nadmin_token: edited  # by hand\n\noscar_password: 'p2'\n")
    assert SecretStore(tmp_path, "c1").load() == {"admin_token": "edited", "oscar_password": "p2"}
    SecretStore(tmp_path, "c1").update({"minio_password": "m"})
    assert json.loads(store.path.read_text().split("\n", 1)[1]) == {
        "admin_token": "edited",
        "minio_password": "m",
        "oscar_password": "p2",
    }
    store.path.write_text("admin_token: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        SecretStore(tmp_path, "c1").load()
