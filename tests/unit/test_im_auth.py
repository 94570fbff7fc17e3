"""Unit tests for provisioner.im.auth: the auth file, the header, refresh, masking, secret files."""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
import uuid
from pathlib import Path

import pytest

from provisioner import secretcmd
from provisioner.errors import EXIT_BAD_INPUT, CredentialsError
from provisioner.im import auth as credentials
from provisioner.im.auth import IM_TYPE, KNOWN_TYPES, AuthData
from provisioner.privfs import write_secret_file
from provisioner.redact import SECRET_KEYS, SecretFilter, install_log_masking, mask, mask_auth_header, register_secret
from tests.jwt import unsigned_jwt

IM_LINE = "id = im; type = InfrastructureManager; username = user; password = pass1234"


def unique(prefix: str = "s") -> str:
    """A value no other test registered as a secret."""
    return f"{prefix}-{uuid.uuid4().hex}"


def write_auth(tmp_path: Path, text: str, mode: int = 0o600, name: str = "auth.dat") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o700)
    return path


# --- parsing ------------------------------------------------------------------------------------------------------


def test_comments_blank_lines_and_pairs() -> None:
    auth = AuthData.from_lines(
        [
            "# a comment; type = ignored",
            "",
            "   ",
            "  " + IM_LINE + "  ",
            "   # indented comment",
            "id = ost ; type = OpenStack;host=https://keystone:5000; username = u; password = p4ss;",
        ]
    )
    assert [c.fields for c in auth.credentials] == [
        {"id": "im", "type": "InfrastructureManager", "username": "user", "password": "pass1234"},
        {"id": "ost", "type": "OpenStack", "host": "https://keystone:5000", "username": "u", "password": "p4ss"},
    ]
    assert [c.line for c in auth.credentials] == [4, 6]
    assert auth.credentials[1].type == "OpenStack"
    assert auth.credentials[1].id == "ost"


def test_quotes_delimit_values_and_are_stripped() -> None:
    auth = AuthData.from_lines(
        [
            "type = InfrastructureManager; username = user; password = 'pa;ss=w\"rd'",
            """id = v; type = VMRC; password = "it's;here"; note = a=b==""",
        ]
    )
    assert auth.credentials[0].fields["password"] == 'pa;ss=w"rd'
    assert auth.credentials[1].fields["password"] == "it's;here"
    # only the first unquoted '=' separates key and value (base64 padding works unquoted)
    assert auth.credentials[1].fields["note"] == "a=b=="


def test_escaped_newline_becomes_newline() -> None:
    auth = AuthData.from_lines([IM_LINE, r"id = k; type = Kubernetes; token = line1\nline2\nline3"])
    assert auth.credentials[1].fields["token"] == "line1\nline2\nline3"


def test_string_input_is_split_into_lines() -> None:
    auth = AuthData.from_lines(IM_LINE + "\nid = d; type = Dummy\n")
    assert auth.cloud_ids() == ["d"]


def test_token_without_equals_names_line_number() -> None:
    with pytest.raises(CredentialsError) as err:
        AuthData.from_lines(["# comment", IM_LINE, "id = d; type = Dummy; oops"], source="auth.dat")
    assert "line 3" in str(err.value)
    assert "auth.dat" in str(err.value)
    assert "'='" in str(err.value)
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_unbalanced_quote_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="line 2: unbalanced ' quote"):
        AuthData.from_lines([IM_LINE, "id = d; type = Dummy; password = it's"])


def test_line_without_type_is_an_error() -> None:
    with pytest.raises(CredentialsError, match=r"line 2: no 'type'"):
        AuthData.from_lines([IM_LINE, "id = x; host = h"])


def test_unknown_type_is_refused_with_a_suggestion() -> None:
    with pytest.raises(CredentialsError, match=r"line 2: unknown type 'OpenStak' \(IM knows: Azure, ") as caught:
        AuthData.from_lines([IM_LINE, "id = o; type = OpenStak; host = h"])
    assert caught.value.hint == "did you mean type = OpenStack?"
    with pytest.raises(CredentialsError, match="unknown type 'NoSuchCloud'") as caught:
        AuthData.from_lines([IM_LINE, "id = o; type = NoSuchCloud"])
    assert caught.value.hint is None


def test_every_connector_type_of_im_is_accepted() -> None:
    lines = [IM_LINE, *(f"id = c{i}; type = {kind}" for i, kind in enumerate(sorted(KNOWN_TYPES - {IM_TYPE})))]
    assert len(AuthData.from_lines(lines).credentials) == len(KNOWN_TYPES)


def test_duplicate_key_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="line 1: key 'username' appears twice"):
        AuthData.from_lines([IM_LINE + "; username = other"])


def test_missing_infrastructure_manager_line() -> None:
    with pytest.raises(CredentialsError) as err:
        AuthData.from_lines(["id = d; type = Dummy"])
    assert "type = InfrastructureManager" in str(err.value)
    assert "exactly one" in str(err.value)


def test_two_infrastructure_manager_lines() -> None:
    with pytest.raises(CredentialsError, match=r"lines 1, 2\); exactly one"):
        AuthData.from_lines([IM_LINE, IM_LINE])


def test_im_line_needs_username_or_token() -> None:
    with pytest.raises(CredentialsError, match="needs a username or a token"):
        AuthData.from_lines(["type = InfrastructureManager; id = im"])


# --- file(...) and command(...) -----------------------------------------------------------------------------------


def test_file_value_is_stripped_contents(tmp_path: Path) -> None:
    secret_file = tmp_path / "pass.txt"
    secret_file.write_text("\n  from-the-file  \n", encoding="utf-8")
    auth = AuthData.from_lines([f"type = InfrastructureManager; username = u; password = file({secret_file})"])
    assert auth.credentials[0].fields["password"] == "from-the-file"
    assert auth.credentials[0].raw["password"] == f"file({secret_file})"


def test_unreadable_file_value_names_line_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(CredentialsError) as err:
        AuthData.from_lines([IM_LINE, f"id = o; type = OpenStack; password = file({missing})"], source="a.dat")
    message = str(err.value)
    assert "line 2" in message
    assert "password" in message
    assert str(missing) in message


def test_file_value_with_literal_backslash_n_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd.txt"
    odd.write_text(r"C:\new", encoding="utf-8")
    with pytest.raises(CredentialsError, match="line 1: password"):
        AuthData.from_lines([f"type = InfrastructureManager; username = u; password = file({odd})"])


def test_command_value_is_its_output() -> None:
    auth = AuthData.from_lines([IM_LINE, "id = egi; type = EGI; host = S; token = command(echo tok123)"])
    cred = auth.credentials[1]
    assert cred.fields["token"] == "tok123"
    assert cred.raw["token"] == "command(echo tok123)"
    assert auth.has_commands
    assert cred.has_commands
    assert "tok123" in auth.secrets()


def test_command_output_newlines_are_removed(tmp_path: Path) -> None:
    prog = script(tmp_path, "multi.py", "print('abc')\nprint('def')\n")
    auth = AuthData.from_lines([IM_LINE, f"id = e; type = EGI; token = command({prog})"])
    assert auth.credentials[1].fields["token"] == "abcdef"


def test_command_is_not_run_through_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    auth = AuthData.from_lines([IM_LINE, f"id = e; type = EGI; token = 'command(echo safe && touch {marker})'"])
    assert auth.credentials[1].fields["token"] == f"safe && touch {marker}"
    assert not marker.exists()


@pytest.mark.parametrize(
    "value",
    [
        """command(sh -c "echo a; echo b")""",  # bare: the quotes would go, sh would get -c echo
        "command(sh -c 'echo a; echo b')",
        '"command(sh -c "echo a; echo b")"',  # quoted whole, but with the same kind of quote inside
    ],
)
def test_command_with_quotes_that_the_parser_would_eat_is_refused(value: str, tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as refused:
        AuthData.from_lines([IM_LINE, f"id = e; type = EGI; token = {value}"], source="auth.dat")
    message = str(refused.value)
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert message.startswith("auth.dat: line 2: token: quotes inside command(...) are removed")
    assert message.endswith("e.g. token = \"command(sh -c 'a; b')\"")
    assert "\n" not in message


@pytest.mark.parametrize(
    "value",
    ["\"command(sh -c 'echo a; echo b')\"", "'command(sh -c \"echo a; echo b\")'"],
)
def test_command_quoted_whole_keeps_its_inner_quotes(value: str) -> None:
    auth = AuthData.from_lines([IM_LINE, f"id = e; type = EGI; token = {value}"])
    assert auth.credentials[1].fields["token"] == "ab"  # sh ran "echo a; echo b"; newlines removed


def test_refresh_reruns_commands(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    prog = script(
        tmp_path,
        "counter.py",
        f"from pathlib import Path\np = Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\nprint(f'token-{n}')\n",
    )
    auth = AuthData.from_lines([f"type = InfrastructureManager; token = command({prog})"])
    assert auth.credentials[0].fields["token"] == "token-1"
    assert auth.header() == "type = InfrastructureManager; token = token-1"
    assert auth.refresh() is True
    assert auth.credentials[0].fields["token"] == "token-2"
    assert auth.header() == "type = InfrastructureManager; token = token-2"
    assert counter.read_text() == "2"
    assert "token-2" in auth.secrets()
    assert mask("got token-2") == "got ***"  # refresh registered the new value


def test_refresh_without_change_or_commands_returns_false() -> None:
    steady = AuthData.from_lines(["type = InfrastructureManager; token = command(echo same-token)"])
    assert steady.refresh() is False
    plain = AuthData.from_lines([IM_LINE])
    assert not plain.has_commands
    assert plain.refresh() is False


def test_failing_command_message_hides_stdout(tmp_path: Path) -> None:
    leaked = unique("STDOUT")
    prog = script(tmp_path, "fail.py", f"import sys\nprint({leaked!r})\nsys.exit(3)\n")
    with pytest.raises(CredentialsError) as err:
        AuthData.from_lines([IM_LINE, f"id = e; type = EGI; token = command({prog} --flag)"], source="a.dat")
    message = f"{err.value} {err.value.hint}"
    assert leaked not in message
    assert "line 2" in message
    assert "token" in message
    assert str(prog) in message
    assert "exit status 3" in message


def test_failing_command_stderr_repeating_stdout_is_hidden(tmp_path: Path) -> None:
    leaked = unique("TOKEN")
    prog = script(
        tmp_path,
        "fail2.py",
        f"import sys\nprint({leaked!r})\nprint('bad ' + {leaked!r}, file=sys.stderr)\nsys.exit(1)\n",
    )
    with pytest.raises(CredentialsError) as err:
        AuthData.from_lines([f"type = InfrastructureManager; token = command({prog})"])
    assert leaked not in str(err.value)


def test_failing_command_stderr_is_shown(tmp_path: Path) -> None:
    prog = script(tmp_path, "fail3.py", "import sys\nprint('account egi not loaded', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(CredentialsError, match="account egi not loaded"):
        AuthData.from_lines([f"type = InfrastructureManager; token = command({prog})"])


def test_missing_command(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"line 1: token: cannot run command /nonexistent/oidc-token"):
        AuthData.from_lines(["type = InfrastructureManager; token = command(/nonexistent/oidc-token egi)"])


def test_command_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secretcmd, "COMMAND_TIMEOUT", 0.3)
    prog = script(tmp_path, "slow.py", "import time\nprint('never-seen-token', flush=True)\ntime.sleep(10)\n")
    with pytest.raises(CredentialsError) as err:
        AuthData.from_lines([f"type = InfrastructureManager; token = command({prog})"])
    assert "did not finish" in str(err.value)
    assert "never-seen-token" not in str(err.value)


def test_command_gets_no_stdin(tmp_path: Path) -> None:
    prog = script(tmp_path, "stdin.py", "import sys\nprint('empty' if sys.stdin.read() == '' else 'had-data')\n")
    read_end, write_end = os.pipe()
    os.write(write_end, b"data on our stdin\n")
    os.close(write_end)
    saved = os.dup(0)
    os.dup2(read_end, 0)  # if the command inherited our stdin it would read this
    try:
        auth = AuthData.from_lines([f"type = InfrastructureManager; token = command({prog})"])
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read_end)
    assert auth.credentials[0].fields["token"] == "empty"


def test_failed_refresh_keeps_old_values(tmp_path: Path) -> None:
    flag = tmp_path / "fail-now"
    prog = script(
        tmp_path,
        "flaky.py",
        f"import sys\nfrom pathlib import Path\nsys.exit(2) if Path({str(flag)!r}).exists() else print('good-token')\n",
    )
    auth = AuthData.from_lines([f"type = InfrastructureManager; token = command({prog})"])
    flag.touch()
    with pytest.raises(CredentialsError):
        auth.refresh()
    assert auth.credentials[0].fields["token"] == "good-token"


# --- the header ---------------------------------------------------------------------------------------------------


def test_header_for_a_multi_line_file() -> None:
    auth = AuthData.from_lines(
        [
            "# IM first",
            "id = im; type = InfrastructureManager; username = user; password = 'a;b'",
            "",
            r"id = k8s; type = Kubernetes; host = https://k:6443; token = x\ny",
            "id = dummy; type = Dummy",
        ]
    )
    expected = (
        "id = im; type = InfrastructureManager; username = user; password = 'a;b'"
        "\\n"
        "id = k8s; type = Kubernetes; host = https://k:6443; token = x\\\\ny"
        "\\n"
        "id = dummy; type = Dummy"
    )
    assert auth.header() == expected
    assert "\n" not in auth.header()  # never a real newline in an HTTP header


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("a=b", "'a=b'"),
        ("it's", '"it\'s"'),
        ("both ' and \"", "'both '\"'\"' and \"'"),
        ("ends\\", "'ends\\'"),
        ("", "''"),
    ],
)
def test_header_quotes_values_im_would_split(value: str, rendered: str) -> None:
    auth = AuthData([credentials.Credential(fields={"type": "InfrastructureManager", "username": "u", "x": value})])
    assert auth.header() == f"type = InfrastructureManager; username = u; x = {rendered}"


def test_bearer_form() -> None:
    auth = AuthData.from_lines(["# my token", "Bearer abc.def-123"])
    assert auth.bearer
    assert auth.header() == "Bearer abc.def-123"
    assert auth.secrets() == {"abc.def-123"}
    assert auth.im_credential.fields["token"] == "abc.def-123"


def test_bearer_form_with_command() -> None:
    auth = AuthData.from_lines(["Bearer command(echo cmd-token-9)"])
    assert auth.header() == "Bearer cmd-token-9"
    assert auth.has_commands
    assert auth.refresh() is False


def test_bearer_among_other_lines_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="line 2"):
        AuthData.from_lines([IM_LINE, "Bearer abc"])


# --- identity, ids, secrets, repr ---------------------------------------------------------------------------------


def test_im_identity() -> None:
    assert AuthData.from_lines([IM_LINE]).im_identity() == "user"
    odd = AuthData.from_lines(["type = InfrastructureManager; username = a b/c; password = pw"]).im_identity()
    assert odd.startswith("user-")
    assert "/" not in odd
    first = AuthData.from_lines(
        [f"Bearer {unsigned_jwt({'iss': 'https://aai/', 'sub': 'u1', 'exp': 1})}"]
    ).im_identity()
    renewed = AuthData.from_lines(
        [f"Bearer {unsigned_jwt({'iss': 'https://aai', 'sub': 'u1', 'exp': 2})}"]
    ).im_identity()
    other = AuthData.from_lines([f"Bearer {unsigned_jwt({'iss': 'https://aai', 'sub': 'u2', 'exp': 1})}"]).im_identity()
    assert first == renewed
    assert first.startswith("oidc-")
    assert other != first
    opaque = AuthData.from_lines(["Bearer opaque-token-value"]).im_identity()
    assert opaque.startswith("token-")
    assert "opaque-token-value" not in opaque


def test_cloud_ids_and_secrets() -> None:
    auth = AuthData.from_lines(
        [
            IM_LINE,
            "id = ost; type = OpenStack; username = u; password = os-pass; public_key = ssh-rsa AAA",
            "type = VMRC; host = h",
            "id = egi; type = EGI; Token = egi-tok",
            "type = Dummy",
        ]
    )
    assert auth.cloud_ids() == ["ost", "egi"]
    assert auth.secrets() == {"pass1234", "os-pass", "egi-tok"}
    assert {"password", "token", "private_key", "secret_key"} <= SECRET_KEYS
    assert "public_key" not in SECRET_KEYS


def test_repr_has_no_secrets() -> None:
    auth = AuthData.from_lines([IM_LINE, "id = e; type = EGI; token = command(echo cmd-secret-1)"])
    text = repr(auth) + repr(auth.credentials)
    assert "pass1234" not in text
    assert "cmd-secret-1" not in text
    assert "EGI" in text


# --- the auth file --------------------------------------------------------------------------------------------------


def test_load_refuses_open_permissions(tmp_path: Path) -> None:
    path = write_auth(tmp_path, IM_LINE + "\n", mode=0o644)
    with pytest.raises(CredentialsError) as err:
        AuthData.load(path)
    assert str(path) in str(err.value)
    assert "0644" in str(err.value)
    assert err.value.hint == f"chmod 600 {path}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602])
def test_load_refuses_any_group_or_other_bit(tmp_path: Path, mode: int) -> None:
    with pytest.raises(CredentialsError, match="group or others"):
        AuthData.load(write_auth(tmp_path, IM_LINE + "\n", mode=mode))


def test_load_accepts_0600_and_registers_secrets(tmp_path: Path) -> None:
    secret = unique("pw")
    path = write_auth(tmp_path, f"# c\ntype = InfrastructureManager; username = u; password = {secret}\n")
    auth = AuthData.load(path)
    assert auth.source == str(path)
    assert auth.credentials[0].fields["password"] == secret
    assert mask(f"password is {secret}!") == "password is ***!"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"auth file .*missing\.dat does not exist"):
        AuthData.load(tmp_path / "missing.dat")


def test_load_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(CredentialsError, match=r"auth file .*dir is a directory$"):
        AuthData.load(folder)


def test_load_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_auth(tmp_path, IM_LINE)

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # works even as root
    with pytest.raises(CredentialsError) as err:
        AuthData.load(path)
    assert str(err.value) == f"cannot read auth file {path}: Permission denied"


def test_load_error_names_file_and_line(tmp_path: Path) -> None:
    path = write_auth(tmp_path, IM_LINE + "\n\nid = d; type = Dummy; broken\n")
    with pytest.raises(CredentialsError, match=rf"{path}: line 3"):
        AuthData.load(path)


# --- masking --------------------------------------------------------------------------------------------------------


def test_mask_registered_secrets_longest_first() -> None:
    short, long = unique("tok"), None
    long = short + "-and-more"
    register_secret(short)
    register_secret(long)
    assert mask(f"a {long} b {short} c") == "a *** b *** c"


def test_mask_ignores_short_values_and_takes_extra() -> None:
    register_secret("on")
    assert mask("turn on the lights") == "turn on the lights"
    extra = unique("extra")
    assert mask(f"x {extra} y", extra=[extra]) == "x *** y"
    assert mask(f"x {extra} y") == f"x {extra} y"  # extra values are not remembered


def test_mask_multiline_secret_in_header_form() -> None:
    key = f"-----BEGIN-----\n{unique('body')}\n-----END-----"
    register_secret(key)
    assert mask("k = " + key.replace("\n", "\\\\n")) == "k = ***"
    assert mask("k = " + key) == "k = ***"


def test_mask_auth_header_without_registry() -> None:
    header = (
        "id = im; type = InfrastructureManager; username = bob; password = 'x;y'"
        "\\nid = e; type = EGI; host = h; token = abc\\\\ndef; vo = v"
        "\\ntype = OpenStack; PASSWORD = zzz; tenant = t"
    )
    assert mask_auth_header(header) == (
        "id = im; type = InfrastructureManager; username = bob; password = ***"
        "\\nid = e; type = EGI; host = h; token = ***; vo = v"
        "\\ntype = OpenStack; PASSWORD = ***; tenant = t"
    )
    assert mask_auth_header("Bearer eyJ.abc.def") == "Bearer ***"


def _capture_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.filters.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, stream


def test_log_records_are_masked() -> None:
    secret = unique("logsecret")
    register_secret(secret)
    logger, stream = _capture_logger(f"test.credentials.{uuid.uuid4().hex}")
    installed = install_log_masking(logger)
    assert install_log_masking(logger) is installed  # idempotent
    assert sum(isinstance(f, SecretFilter) for f in logger.handlers[0].filters) == 1
    logger.info("in the message %s", "x" + secret)
    logger.warning("in args: %s and %d", secret, 7)
    logging.getLogger(logger.name + ".child").error("child record %s", secret)  # through the handler's filter
    try:
        raise ValueError(f"boom {secret}")
    except ValueError:
        logger.exception("failed")
    output = stream.getvalue()
    assert secret not in output
    assert "in the message x***" in output
    assert "in args: *** and 7" in output
    assert "child record ***" in output
    assert "ValueError: boom ***" in output


def test_log_masking_with_caplog(caplog: pytest.LogCaptureFixture) -> None:
    secret = unique("capsecret")
    register_secret(secret)
    logger = logging.getLogger(f"test.credentials.cap.{uuid.uuid4().hex}")
    logger.addFilter(SecretFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("token=%s", secret)
    assert caplog.records[0].getMessage() == "token=***"
    assert secret not in caplog.text


# --- secret files -------------------------------------------------------------------------------------------------


def test_write_secret_file_mode_and_atomic_replace(tmp_path: Path) -> None:
    target = tmp_path / "kubeconfig"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o644)
    write_secret_file(target, "new secret text")
    assert target.read_text(encoding="utf-8") == "new secret text"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubeconfig"]  # no temp file left behind


def test_write_secret_file_new_file_under_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_secret_file(tmp_path / "fresh", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o600


def test_write_secret_file_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_secret_file(tmp_path / "no" / "such", "x")
