"""Settings precedence: flags > env (PROVISION_*) > config file > defaults, and clear errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.errors import EXIT_BAD_INPUT, ConfigError, OperationFailed
from provisioner.privfs import ensure_private_dir
from provisioner.settings import (
    ENV_CONFIG,
    ENV_HOME,
    ENV_IM_URL,
    ENV_INSECURE,
    ENV_LOCK_TIMEOUT,
    ENV_POLL_INITIAL,
    ENV_READ_TIMEOUT,
    ENV_STATE_URL,
    load_settings,
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "im_url: https://im.example.org/\n"
        "read_timeout: 30\n"
        "home: ~/provision-state\n"
        "sites:\n  egi-a: {cloud_id: egi1, image: 'egi://a/b?vo.example'}\n"
    )
    return path


def test_precedence(config: Path, tmp_path: Path) -> None:
    env = {ENV_CONFIG: str(config)}
    from_file = load_settings({}, env)
    assert from_file.im_url == "https://im.example.org"
    assert from_file.read_timeout == 30.0
    assert from_file.home == Path("~/provision-state").expanduser()
    assert from_file.sites == {"egi-a": {"cloud_id": "egi1", "image": "egi://a/b?vo.example"}}
    assert from_file.sources["im_url"] == "config"

    from_env = load_settings({}, {**env, ENV_IM_URL: "http://127.0.0.1:8800", ENV_READ_TIMEOUT: "7"})
    assert from_env.im_url == "http://127.0.0.1:8800"
    assert from_env.read_timeout == 7.0
    assert from_env.sources["im_url"] == ENV_IM_URL

    from_flag = load_settings({"im_url": "http://127.0.0.1:1", "home": tmp_path}, {**env, ENV_HOME: "/nope"})
    assert from_flag.im_url == "http://127.0.0.1:1"
    assert from_flag.home == tmp_path
    assert from_flag.sources["home"] == "flag"


def test_defaults_and_tls_on(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    settings = load_settings({}, {ENV_CONFIG: str(empty)})
    assert settings.im_url is None
    assert settings.insecure is False
    assert settings.verify is True
    assert settings.sources["home"] == "default"
    insecure = load_settings({}, {ENV_CONFIG: str(empty), ENV_INSECURE: "yes"})
    assert insecure.verify is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("im_ulr: http://x\n", "im_ulr: unknown setting"),
        ("read_timeout: soon\n", "read_timeout (config"),
        ("read_timeout: -1\n", "must be greater than 0"),
        ("im_url: ftp://x\n", "must start with http:// or https://"),
        ("insecure: maybe\n", "must be true or false"),
        ("- a\n- b\n", "must be a mapping of settings"),
        ("im_url: [unclosed\n", "is not valid YAML at line"),
        ("sites: [a, b]\n", "sites: must be a mapping"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings({}, {ENV_CONFIG: str(path)})
    assert expected in str(err.value)
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "\n" not in str(err.value)


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({}, {ENV_CONFIG: str(tmp_path / "missing.yaml")})
    assert "cannot read config file" in str(err.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError) as err:
        load_settings({}, {ENV_CONFIG: str(empty), ENV_READ_TIMEOUT: "abc"})
    assert str(err.value).startswith(f"read_timeout ({ENV_READ_TIMEOUT}): must be a number of seconds")


def test_state_url_precedence_and_refusals(tmp_path: Path) -> None:
    from provisioner.redact import mask

    config = tmp_path / "config.yaml"
    config.write_text("state_url: postgresql://ops@db.example.org/provision\n")
    env = {ENV_CONFIG: str(config)}
    assert load_settings({}, env).state_url == "postgresql://ops@db.example.org/provision"
    from_env = load_settings({}, env | {ENV_STATE_URL: "sqlite:///srv/provision/state.db"})
    assert (from_env.state_url, from_env.sources["state_url"]) == ("sqlite:///srv/provision/state.db", ENV_STATE_URL)
    flag = load_settings({"state_url": "postgres://a:b@h:5433/db?sslmode=require"}, env)
    assert (flag.state_url, flag.sources["state_url"]) == ("postgres://a:b@h:5433/db?sslmode=require", "flag")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings({}, {ENV_CONFIG: str(empty)}).state_url is None  # the embedded default
    for bad in ("mysql://ops:Pa55word-x@db/provision", "sqlite://relative.db", "sqlite:///", "/srv/state.db"):
        with pytest.raises(ConfigError) as err:
            load_settings({}, {ENV_CONFIG: str(empty), ENV_STATE_URL: bad})
        assert err.value.exit_code == EXIT_BAD_INPUT
        assert str(err.value).startswith(f"state_url ({ENV_STATE_URL}): must be sqlite:///PATH")
        assert "Pa55word" not in str(err.value)
    assert mask("Pa55word-x") == "***"  # registered the moment it was read


def test_lock_timeout_zero_means_try_once(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    settings = load_settings({}, {ENV_CONFIG: str(empty), ENV_LOCK_TIMEOUT: "0"})
    assert settings.lock_timeout == 0.0
    assert load_settings({"lock_timeout": 0}, {ENV_CONFIG: str(empty)}).lock_timeout == 0.0
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ConfigError) as err:
            load_settings({}, {ENV_CONFIG: str(empty), ENV_LOCK_TIMEOUT: bad})
        assert str(err.value).startswith(f"lock_timeout ({ENV_LOCK_TIMEOUT}): must be")
    with pytest.raises(ConfigError, match="must be greater than 0"):
        load_settings({}, {ENV_CONFIG: str(empty), ENV_READ_TIMEOUT: "0"})


def test_lock_timeout_zero_is_accepted_by_the_cli(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    env = {**os.environ, ENV_CONFIG: str(empty), ENV_HOME: str(tmp_path / "home"), ENV_LOCK_TIMEOUT: "0"}
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "cluster", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no clusters\n"


def test_a_new_home_and_the_parents_made_for_it_are_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / "deeper" / "home"
    old = os.umask(0o022)
    try:
        ensure_private_dir(home)
    finally:
        os.umask(old)
    for made in (tmp_path / "new", tmp_path / "new" / "deeper", home):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    (tmp_path / "file").write_text("")
    with pytest.raises(OperationFailed, match="not a directory"):
        ensure_private_dir(tmp_path / "file")
    with pytest.raises(OperationFailed, match="cannot create directory"):
        ensure_private_dir(tmp_path / "file" / "below")


def test_first_poll_interval_is_a_setting_the_wait_uses(tmp_path: Path) -> None:
    from provisioner.lifecycle import Lifecycle
    from provisioner.polling import DEFAULT_SCHEDULE

    env = {ENV_CONFIG: str(tmp_path / "none.yaml"), ENV_HOME: str(tmp_path)}
    (tmp_path / "none.yaml").write_text("{}\n")
    assert load_settings({}, env).poll_initial == DEFAULT_SCHEDULE.initial == 1.0
    fast = load_settings({}, {**env, ENV_POLL_INITIAL: "0.2"})
    assert fast.poll_initial == 0.2
    schedule = Lifecycle(fast)._schedule()
    assert (schedule.initial, schedule.growth, schedule.cap) == (0.2, DEFAULT_SCHEDULE.growth, DEFAULT_SCHEDULE.cap)
    assert Lifecycle(load_settings({}, {**env, ENV_POLL_INITIAL: "40"}))._schedule().cap == 40
    with pytest.raises(ConfigError, match=r"PROVISION_POLL_INITIAL.*greater than 0"):
        load_settings({}, {**env, ENV_POLL_INITIAL: "0"})
