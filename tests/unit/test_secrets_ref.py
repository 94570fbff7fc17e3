"""The team's secrets reference (``secrets_ref``): parsing it, and a cluster's SecretStore reading and writing
through a file reference or a ``command(...)``."""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from provisioner import secretcmd
from provisioner.errors import ConfigError, CredentialsError
from provisioner.redact import mask
from provisioner.settings import SecretsRef, load_settings
from provisioner.tosca import secrets as secrets_mod
from provisioner.tosca.secrets import SecretStore, use_ref


@pytest.fixture(autouse=True)
def no_ref() -> Iterator[None]:
    use_ref(None)
    yield
    use_ref(None)


@pytest.mark.parametrize(
    ("text", "kind", "template"),
    [
        ("/team/secrets/{cluster}.yaml", "file", "/team/secrets/{cluster}.yaml"),
        ("~/team/{cluster}.yaml", "file", "~/team/{cluster}.yaml"),
        ("command(pass show provision/{cluster})", "command", "pass show provision/{cluster}"),
        (
            "  command( vault kv get -format=yaml secret/{cluster} )  ",
            "command",
            "vault kv get -format=yaml secret/{cluster}",
        ),
    ],
)
def test_references_parse(text: str, kind: str, template: str) -> None:
    ref = SecretsRef.parse(text)
    assert (ref.kind, ref.template) == (kind, template)
    assert "{cluster}" not in ref.for_cluster("c1") and "c1" in ref.for_cluster("c1")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("/team/secrets.yaml", "must contain {cluster}"),
        ("/team/{cluster}/{other}.yaml", "must contain {cluster}"),
        ("/team/{cluster!r}.yaml", "must contain {cluster}"),
        ("/team/{cluster", "must contain {cluster}"),
        ("team/{cluster}.yaml", "must be an absolute path or command(...)"),
        ("command({cluster})", "command() is empty"),
    ],
)
def test_bad_references_name_the_setting_and_the_rule(text: str, rule: str) -> None:
    with pytest.raises(ConfigError) as err:
        SecretsRef.parse(text)
    assert err.value.field == "secrets_ref"
    assert rule in str(err.value)


def test_the_reference_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION_HOME", str(tmp_path))
    monkeypatch.setenv("PROVISION_SECRETS_REF", "/srv/team/{cluster}.yaml")
    assert load_settings({}).secrets_ref == SecretsRef("file", "/srv/team/{cluster}.yaml")
    monkeypatch.setenv("PROVISION_SECRETS_REF", "/srv/team/all.yaml")
    with pytest.raises(ConfigError, match=r"secrets_ref \(PROVISION_SECRETS_REF\): must contain \{cluster\}"):
        load_settings({})


def test_a_file_reference_is_read_and_written_like_the_home_file(tmp_path: Path) -> None:
    team = tmp_path / "team"
    use_ref(SecretsRef.parse(f"{team}/{{cluster}}.yaml"))
    store = SecretStore(tmp_path / "home", "c1")
    assert store.path == team / "c1.yaml"
    assert store.load() == {}
    store.update({"oscar_password": "pw-one-1234"})
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert yaml.safe_load(store.path.read_text()) == {"oscar_password": "pw-one-1234"}
    assert not (tmp_path / "home" / "secrets").exists()
    # Another operator's store (another home) reads the same values.
    assert SecretStore(tmp_path / "other-home", "c1").get("oscar_password") == "pw-one-1234"
    assert SecretStore(tmp_path / "other-home", "c1").delete()
    assert not store.path.exists()


def test_a_team_directory_keeps_its_mode(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir(mode=0o750)
    team.chmod(0o750)
    SecretStore(tmp_path / "home", "c1", SecretsRef.parse(f"{team}/{{cluster}}.yaml")).update({"k": "v"})
    assert stat.S_IMODE(team.stat().st_mode) == 0o750


def printer(tmp_path: Path, body: str) -> str:
    script = tmp_path / "printer.py"
    script.write_text(body)
    return f"command({sys.executable} {script} {{cluster}})"


def test_a_command_reference_wins_over_the_local_file_and_is_masked(tmp_path: Path) -> None:
    ref = printer(
        tmp_path,
        "import sys\nprint('oscar_password: from-vault-' + sys.argv[1] + '-x9')\nprint('minio_password: mv-77')\n",
    )
    use_ref(SecretsRef.parse(ref))
    store = SecretStore(tmp_path / "home", "c2")
    SecretStore(tmp_path / "home", "c2", SecretsRef("file", str(store.path).replace("c2", "{cluster}"))).update(
        {"oscar_password": "old-local", "admin_token": "local-only"}
    )
    assert store.load() == {
        "oscar_password": "from-vault-c2-x9",
        "minio_password": "mv-77",
        "admin_token": "local-only",
    }
    assert "from-vault-c2-x9" not in mask("the password is from-vault-c2-x9")


def test_a_command_reference_writes_only_what_the_command_does_not_give(tmp_path: Path) -> None:
    use_ref(SecretsRef.parse(printer(tmp_path, "print('oscar_password: from-vault-1')\n")))
    store = SecretStore(tmp_path / "home", "c3")
    store.update({"oscar_password": "from-vault-1"})
    assert not store.path.exists()  # nothing new
    store.update({"minio_password": "generated-here"})
    assert yaml.safe_load(store.path.read_text()) == {"minio_password": "generated-here"}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_a_command_runs_once_per_cluster_and_process(tmp_path: Path) -> None:
    count = tmp_path / "count"
    use_ref(
        SecretsRef.parse(
            printer(tmp_path, f"open({str(count)!r}, 'a').write('x')\nprint('oscar_password: once-only-1')\n")
        )
    )
    for _ in range(3):
        SecretStore(tmp_path / "home", "c4").load()
    assert count.read_text() == "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys\nprint('oscar_password: leaked-value-99')\nsys.exit(3)\n", "failed (exit status 3)"),
        ("print('- just a list of leaked-value-99')\n", "must print a YAML mapping"),
        ("pass\n", "printed nothing"),
    ],
)
def test_a_failing_command_is_named_without_its_output(tmp_path: Path, body: str, message: str) -> None:
    use_ref(SecretsRef.parse(printer(tmp_path, body)))
    with pytest.raises((CredentialsError, ConfigError)) as err:
        SecretStore(tmp_path / "home", "c5").load()
    assert message in str(err.value)
    assert "secrets_ref (cluster c5)" in str(err.value)
    assert "leaked-value-99" not in str(err.value) + str(err.value.hint or "")


def test_a_slow_command_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secretcmd, "COMMAND_TIMEOUT", 0.3)
    use_ref(SecretsRef.parse(printer(tmp_path, "import time\ntime.sleep(10)\n")))
    with pytest.raises(CredentialsError, match=r"did not finish within 0\.3 s"):
        SecretStore(tmp_path / "home", "c6").load()


def test_use_ref_clears_the_command_cache() -> None:
    secrets_mod._command_cache["x"] = {"a": "b"}
    use_ref(None)
    assert secrets_mod._command_cache == {}
