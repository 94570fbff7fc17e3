"""IM credentials: the auth file, the Authorization header, and keeping secrets out of output.

The auth file is im-client's format, so the files users already have work unchanged::

    # comment
    id = im; type = InfrastructureManager; username = user; password = 'pa;ss'
    id = egi; type = EGI; host = SITE; vo = VO; token = command(oidc-token egi)
    id = ost; type = OpenStack; host = https://keystone:5000; username = u; password = file(~/.ost-pass)

One credential per line, ``key = value`` pairs separated by ``;``. Single or double quotes delimit a token so
that ``;`` and ``=`` can appear in a value (the quotes are not part of the value). A literal ``\\n`` (two
characters) in a value is a newline. ``file(PATH)`` is the stripped contents of PATH and ``command(CMD)`` the
output of CMD with newlines removed; CMD is split with shlex, so a CMD with quotes must reach it intact: the whole
value quoted, the other kind of quote inside (``password = "command(sh -c 'a; b')"``), else it is refused.
A file whose only line is ``Bearer TOKEN`` is an OIDC token for IM.

Where this differs from im_client on purpose: a token without ``=`` or an unbalanced quote is an error (im_client
silently drops the rest of the line), a duplicate key on one line is an error, quotes never end up in a value, an
unreadable ``file(...)`` is an error, and a command is run without a shell, with a timeout and without stdin.

Every secret value read here is registered with the masking registry (:mod:`provisioner.redact`), which keeps
them out of messages and logs.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import logging
import os
import re
import shlex
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.errors import CredentialsError
from provisioner.redact import MASK, NEWLINE_IN_VALUE, is_secret_key, mask, register_secret
from provisioner.secretcmd import COMMAND_TIMEOUT, OIDC_ADVICE, command_of, run_command, run_secret_command

__all__ = [
    "CLOUD_TYPES",
    "COMMAND_TIMEOUT",
    "IM_TYPE",
    "KNOWN_TYPES",
    "NON_CLOUD_TYPES",
    "AuthData",
    "Credential",
    "run_secret_command",
]

log = logging.getLogger(__name__)

IM_TYPE = "InfrastructureManager"

# Auth-line types that are not clouds (IM's CloudInfo skips the first three; Vault holds other credentials).
NON_CLOUD_TYPES = frozenset({IM_TYPE, "VMRC", "EGIIS", "Vault"})

# Cloud types IM 2.0.0 has a connector for (IM/connectors/<type>.py): any other type makes an infrastructure that
# can never launch a VM, so it is refused before anything is sent.
CLOUD_TYPES = frozenset(
    {
        "Azure",
        "CloudStack",
        "DeployedNode",
        "Docker",
        "Dummy",
        "EC2",
        "EGI",
        "GCE",
        "KubeVirt",
        "Kubernetes",
        "Lambda",
        "LibCloud",
        "Linode",
        "OSCAR",
        "OpenNebula",
        "OpenStack",
        "Orange",
        "UpCloud",
        "vSphere",
    }
)
KNOWN_TYPES = CLOUD_TYPES | NON_CLOUD_TYPES

_BEARER = "Bearer "
_LINE_SEP = "\\n"  # IM splits the header into lines on these two characters


# --- parsing ----------------------------------------------------------------------------------------------------------


def _split_pairs(line: str, where: str) -> list[str]:
    """Split ``line`` on the ``;`` outside quotes, keeping the quotes (IM's split_line with maintain_quotes)."""
    tokens: list[str] = []
    token: list[str] = []
    quote: str | None = None
    for char in line:
        if quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
        elif char == ";" and quote is None:
            tokens.append("".join(token))
            token = []
            continue
        token.append(char)
    if quote is not None:
        raise CredentialsError(
            f"{where}: unbalanced {quote} quote",
            hint="close the quote, or wrap a value that contains a quote in the other kind of quotes",
        )
    tokens.append("".join(token))
    return tokens


def _split_pair(token: str) -> tuple[str, str] | None:
    """``key = value`` → (key, value) with the quotes removed and both stripped; None if there is no ``=``.

    The first ``=`` outside quotes separates key and value; a later one belongs to the value (so ``token = abc==``
    reads as IM's users mean it).
    """
    key: list[str] = []
    value: list[str] | None = None
    quote: str | None = None
    for char in token:
        if quote is None and char in "'\"":
            quote = char
            continue
        if char == quote:
            quote = None
            continue
        if char == "=" and quote is None and value is None:
            value = []
            continue
        (key if value is None else value).append(char)
    if value is None:
        return None
    return "".join(key).strip(), "".join(value).strip()


def _check_command_quoting(token: str, key: str, value: str, where: str) -> None:
    """Refuse a ``command(...)`` value whose quotes the parser would eat before the command is split.

    Quotes in a value delimit it and are removed, so ``command(sh -c "a; b")`` written bare would run
    ``sh -c a; b`` split as ``sh``, ``-c``, ``a;``, ``b``: another command. Only a value quoted whole, with the other
    kind of quote inside, reaches the command as written (``"command(sh -c 'a; b')"``)."""
    if not value.startswith("command("):
        return
    written = token.split("=", 1)[1].strip() if "=" in token else ""
    if not any(quote in written for quote in "'\""):
        return
    outer = written[0]
    if outer in "'\"" and len(written) > 1 and written[-1] == outer and outer not in written[1:-1]:
        return
    raise CredentialsError(
        f"{where}: {key}: quotes inside command(...) are removed by the auth-file parser, so the command would "
        f"not run as written; quote the whole value and use the other kind of quote inside, e.g. "
        f"{key} = \"command(sh -c 'a; b')\""
    )


def _read_file_value(path_text: str, where: str) -> str:
    path = Path(path_text.strip()).expanduser()
    try:
        return path.read_text(encoding="utf-8").replace("\r\n", "\n").strip()
    except OSError as exc:
        raise CredentialsError(f"{where}: cannot read file({path}): {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{where}: file({path}) is not UTF-8 text") from None


def _is_command(raw: str) -> bool:
    return command_of(raw) is not None


def _is_file(raw: str) -> bool:
    return raw.startswith("file(") and raw.endswith(")")


def _resolve(raw: str, where: str) -> str:
    """The true value of ``raw``: the output of ``command(...)``, the contents of ``file(...)``, or ``raw``."""
    command = command_of(raw)
    if command is not None:
        value = run_command(command, where, advice=OIDC_ADVICE)
    elif _is_file(raw):
        value = _read_file_value(raw[len("file(") : -1], where)
    else:
        return raw  # a literal value cannot hold a two-character \n: the parser made those newlines
    if "\\n" in value:
        raise CredentialsError(
            f"{where}: the value contains the two characters \\n, which IM always reads as a newline",
            hint="IM's auth format cannot carry a literal backslash-n",
        )
    if _is_file(value):  # IM would read that file on its own host
        raise CredentialsError(f"{where}: the value read is itself a file(...)")
    return value


@dataclass(repr=False)
class Credential:
    """One auth line: ``raw`` as written (quotes removed, ``\\n`` made newlines), ``fields`` with values resolved."""

    fields: dict[str, str]
    raw: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def type(self) -> str:
        return self.fields.get("type", "")

    @property
    def id(self) -> str | None:
        return self.fields.get("id")

    @property
    def has_commands(self) -> bool:
        return any(_is_command(raw) for raw in self.raw.values())

    def secret_keys(self) -> list[str]:
        """The keys whose values are secret: the SECRET_KEYS, and every key given by a command."""
        return [k for k in self.fields if is_secret_key(k) or _is_command(self.raw.get(k, ""))]

    def secrets(self) -> set[str]:
        return {self.fields[k] for k in self.secret_keys() if self.fields[k]}

    def __repr__(self) -> str:
        hidden = set(self.secret_keys())
        shown = {k: (MASK if k in hidden else mask(v)) for k, v in self.fields.items()}
        return f"Credential(line={self.line}, fields={shown!r})"


def _quote(text: str) -> str:
    """``text`` quoted for IM's split_line: single quotes, or double quotes around runs of single quotes."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    pieces = re.findall(r"'+|[^']+", text)
    return "".join(f'"{piece}"' if piece.startswith("'") else f"'{piece}'" for piece in pieces)


def _render(text: str) -> str:
    """A key or value as IM's header parser reads it back unchanged."""
    needs_quotes = (
        text == ""
        or text != text.strip()
        or text.endswith("\\")
        or text.startswith("#")
        or any(char in text for char in ";='\"")
    )
    rendered = _quote(text) if needs_quotes else text
    return rendered.replace("\n", NEWLINE_IN_VALUE)


def _jwt_claims(token: str) -> dict[str, object] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class AuthData:
    """The credentials of an auth file, and the Authorization header they make."""

    def __init__(self, credentials: list[Credential], *, source: str = "<string>", bearer: bool = False) -> None:
        self.credentials = credentials
        self.source = source
        self.bearer = bearer  # the file is a single ``Bearer TOKEN`` line (kept as an IM credential with a token)
        self._register()

    # construction

    @classmethod
    def load(cls, path: Path | str) -> AuthData:
        """Read an auth file; refuse one that is missing, unreadable, or open to group or others."""
        path = Path(path).expanduser()
        hint = f"chmod 600 {shlex.quote(str(path))}"
        try:
            with path.open("rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise CredentialsError(f"auth file {path} is not a regular file")
                if info.st_mode & 0o077:
                    raise CredentialsError(
                        f"auth file {path} can be read or written by group or others "
                        f"(mode {stat.S_IMODE(info.st_mode):04o}); it holds secrets",
                        hint=hint,
                    )
                data = handle.read()
        except FileNotFoundError:
            raise CredentialsError(
                f"auth file {path} does not exist", hint="set --auth or PROVISION_AUTH_FILE to your IM auth file"
            ) from None
        except IsADirectoryError:
            raise CredentialsError(f"auth file {path} is a directory") from None
        except OSError as exc:
            raise CredentialsError(f"cannot read auth file {path}: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CredentialsError(f"auth file {path} is not UTF-8 text") from None
        return cls.from_lines(text.splitlines(), source=str(path))

    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = "<string>") -> AuthData:
        """Parse auth-file lines (a single string is split into lines)."""
        if isinstance(lines, str):
            lines = lines.splitlines()
        numbered = [(n, line.strip()) for n, line in enumerate(lines, start=1)]
        content = [(n, line) for n, line in numbered if line and not line.startswith("#")]
        if len(content) == 1 and content[0][1].startswith(_BEARER):
            return cls._bearer(content[0][0], content[0][1], source)
        credentials = [cls._parse_line(n, line, source) for n, line in content]
        im_lines = [c.line for c in credentials if c.type == IM_TYPE]
        if not im_lines:
            raise CredentialsError(
                f"{source}: no 'type = {IM_TYPE}' line; exactly one is required",
                hint=f"add a line such as: id = im; type = {IM_TYPE}; username = USER; password = PASS",
            )
        if len(im_lines) > 1:
            raise CredentialsError(
                f"{source}: {len(im_lines)} 'type = {IM_TYPE}' lines (lines {', '.join(map(str, im_lines))}); "
                "exactly one is allowed"
            )
        im = next(c for c in credentials if c.type == IM_TYPE)
        if not im.fields.get("username") and not im.fields.get("token"):
            raise CredentialsError(f"{source}: line {im.line}: the {IM_TYPE} line needs a username or a token")
        return cls(credentials, source=source)

    @staticmethod
    def _parse_line(number: int, line: str, source: str) -> Credential:
        where = f"{source}: line {number}"
        raw: dict[str, str] = {}
        for position, token in enumerate(_split_pairs(line, where), start=1):
            if not token.strip():
                continue
            pair = _split_pair(token)
            if pair is None:
                raise CredentialsError(
                    f"{where}: item {position} has no '=' (expected key = value pairs separated by ';')"
                )
            key, value = pair
            if not key:
                raise CredentialsError(f"{where}: item {position} has no key before '='")
            if key in raw:
                raise CredentialsError(f"{where}: key {key!r} appears twice")
            _check_command_quoting(token, key, value, where)
            raw[key] = value.replace("\\n", "\n")
        if "type" not in raw:
            raise CredentialsError(f"{where}: no 'type' (every line needs type = ...)")
        if raw["type"] not in KNOWN_TYPES:
            close = difflib.get_close_matches(raw["type"], sorted(KNOWN_TYPES), n=1, cutoff=0.6)
            raise CredentialsError(
                f"{where}: unknown type {raw['type']!r} (IM knows: {', '.join(sorted(KNOWN_TYPES, key=str.lower))})",
                hint=f"did you mean type = {close[0]}?" if close else None,
            )
        fields = {key: _resolve(value, f"{where}: {key}") for key, value in raw.items()}
        return Credential(fields=fields, raw=raw, line=number)

    @classmethod
    def _bearer(cls, number: int, line: str, source: str) -> AuthData:
        where = f"{source}: line {number}: Bearer token"
        raw = line[len(_BEARER) :].strip()
        if not raw:
            raise CredentialsError(f"{where} is empty")
        fields = {"type": IM_TYPE, "token": _resolve(raw, where)}
        return cls(
            [Credential(fields=fields, raw={"type": IM_TYPE, "token": raw}, line=number)], source=source, bearer=True
        )

    # use

    @property
    def im_credential(self) -> Credential:
        return next(c for c in self.credentials if c.type == IM_TYPE)

    @property
    def has_commands(self) -> bool:
        return any(c.has_commands for c in self.credentials)

    def header(self) -> str:
        """The value of the HTTP Authorization header for IM."""
        if self.bearer:
            return _BEARER + self.im_credential.fields["token"]
        return _LINE_SEP.join(
            "; ".join(f"{_render(key)} = {_render(value)}" for key, value in c.fields.items()) for c in self.credentials
        )

    def refresh(self) -> bool:
        """Run every ``command(...)`` again (e.g. for a fresh OIDC token); True if any value changed.

        All commands run before anything changes, so a failing one (CredentialsError) leaves the old values.
        """
        updates: list[tuple[Credential, str, str]] = []
        for credential in self.credentials:
            for key, raw in credential.raw.items():
                if _is_command(raw):
                    where = f"{self.source}: line {credential.line}: {key}"
                    updates.append((credential, key, _resolve(raw, where)))
        changed = False
        for credential, key, value in updates:
            if credential.fields.get(key) != value:
                credential.fields[key] = value
                changed = True
        if changed:
            self._register()
            log.debug("credentials refreshed from their commands")
        return changed

    def secrets(self) -> set[str]:
        """Every secret value: those of SECRET_KEYS, and every command output."""
        found: set[str] = set()
        for credential in self.credentials:
            found |= credential.secrets()
        return found

    def im_identity(self) -> str:
        """A stable, non-secret name for the IM user, fit for a file name (e.g. to name locks).

        A token: ``oidc-<hash of issuer and subject>`` (what IM itself keys ownership on), or ``token-<hash>`` of the
        command that prints it (stable across refreshes) or of the token. A username: itself when it is a plain
        name, else ``user-<hash>``.
        """
        im = self.im_credential
        token = im.fields.get("token")
        if token:
            claims = _jwt_claims(token)
            if claims and isinstance(claims.get("iss"), str) and claims.get("sub") is not None:
                return f"oidc-{_digest(str(claims['iss']).rstrip('/') + '/' + str(claims['sub']))}"
            raw = im.raw.get("token", token)
            return f"token-{_digest(raw if _is_command(raw) else token)}"
        username = im.fields.get("username", "")
        if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}", username):
            return username
        return f"user-{_digest(username)}"

    def cloud_ids(self) -> list[str]:
        """The ids of the cloud credentials (not InfrastructureManager, VMRC, EGIIS, Vault), in file order."""
        return [c.id for c in self.credentials if c.type not in NON_CLOUD_TYPES and c.id]

    def _register(self) -> None:
        for secret in self.secrets():
            register_secret(secret)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{c.id or '-'}:{c.type}" for c in self.credentials)
        form = "bearer" if self.bearer else "lines"
        return f"AuthData(source={self.source!r}, {form}, credentials=[{kinds}])"
