"""Keeping secrets out of text: a process-wide registry of secret values, masking, and a log filter.

Whoever reads or makes a secret (the auth file, generated passwords, tokens fetched for a run) registers it with
:func:`register_secret`; :func:`mask` and :class:`SecretFilter` then hide it wherever it shows up, including with
its newlines escaped. :func:`mask_auth_header` also hides the values of secret keys in ``key = value`` text and
Bearer/Basic tokens, registry or not. Bottom layer: imports nothing of the project but ``errors``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "MIN_SECRET_LEN",
    "NEWLINE_IN_VALUE",
    "SECRET_KEYS",
    "SecretFilter",
    "install_log_masking",
    "is_secret_key",
    "mask",
    "mask_auth_header",
    "redact_url",
    "register_secret",
    "register_url_password",
]

MASK = "***"
MIN_SECRET_LEN = 4  # shorter values are not registered: masking "on" or "1" would mangle every message
# IM's auth header carries a newline inside a value as these three characters (see im.auth).
NEWLINE_IN_VALUE = "\\\\n"

# Keys whose values are secret (compared case-insensitively). Not secret: username (for EC2 it is the access key
# id, which identifies but does not authenticate), public_key, client_id, tenant, host, ... Besides these, every
# value produced by ``command(...)`` is treated as secret: such commands print tokens.
SECRET_KEYS = frozenset(
    {
        "password",
        "token",
        "access_token",
        "refresh_token",
        "key",
        "private_key",
        "secret",
        "secret_key",
        "client_secret",
        "api_key",
        "apikey",
        "passphrase",
        "proxy",  # an X.509 proxy: certificate *and* its private key
    }
)


def is_secret_key(key: str) -> bool:
    """Whether the value of ``key`` is secret."""
    return key.strip().lower() in SECRET_KEYS


# --- masking ----------------------------------------------------------------------------------------------------------

_registry: set[str] = set()
_registry_lock = threading.Lock()
_registry_pattern: re.Pattern[str] | None = None


def _variants(value: str) -> set[str]:
    """The forms in which a secret may show up in text: as is, and with its newlines escaped two ways."""
    forms = {value, value.strip()}
    if "\n" in value:
        forms.add(value.replace("\n", NEWLINE_IN_VALUE))
        forms.add(value.replace("\n", "\\n"))
    return {form for form in forms if len(form) >= MIN_SECRET_LEN}


def _compile(secrets: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(secrets), key=len, reverse=True)  # longest first: a secret may contain another
    if not ordered:
        return None
    return re.compile("|".join(re.escape(secret) for secret in ordered))


def register_secret(value: str) -> None:
    """Remember ``value`` as a secret so that :func:`mask` hides it. Values shorter than 4 characters are ignored."""
    global _registry_pattern
    forms = _variants(value)
    if not forms:
        return
    with _registry_lock:
        if forms <= _registry:
            return
        _registry.update(forms)
        _registry_pattern = _compile(_registry)


def mask(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and every value in ``extra``) replaced by ``***``."""
    extra_forms: set[str] = set()
    for value in extra:
        extra_forms |= _variants(value)
    with _registry_lock:
        pattern = _compile(_registry | extra_forms) if extra_forms else _registry_pattern
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


# A key = value pair inside a header or an auth line. The value is quoted segments and unquoted characters up to a
# ``;``, a real newline or IM's two-character line separator; IM's three-character escaped newline stays inside it.
_PAIR_RE = re.compile(
    r"""(?P<lead>(?:^|(?<=[;\n])|(?<=\\n))[ \t]*(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)[ \t]*=[ \t]*)"""
    r"""(?P<value>(?:'[^']*'|"[^"]*"|\\\\n|\\(?!n)|[^;\n\\'"])*)"""
)
_AUTH_SCHEME_RE = re.compile(r"\b(Bearer|Basic)([ \t]+)[^\s;]+", re.IGNORECASE)


def mask_auth_header(header: str) -> str:
    """``header`` (or auth-file text) with the values of secret keys and Bearer/Basic tokens replaced by ``***``.

    Works without the registry, so a header built elsewhere can be shown; registered secrets are masked as well.
    """

    def pair(match: re.Match[str]) -> str:
        if not is_secret_key(match["key"]):
            return match[0]
        value = match["value"]
        trailing = value[len(value.rstrip()) :]
        return f"{match['lead']}{MASK}{trailing}" if value.strip() else match[0]

    masked = _PAIR_RE.sub(pair, header)
    masked = _AUTH_SCHEME_RE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", masked)
    return mask(masked)


# --- URLs with a password (a database URL: postgresql://user:password@host/db) ------------------------------------

_URL_PASSWORD_PARAMS = frozenset({"password"})


def _url_passwords(url: str) -> list[str]:
    """The password in ``url``'s user info and in a ``password=`` query parameter, as written and decoded."""
    parts = urlsplit(url)
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    found += [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key in _URL_PASSWORD_PARAMS]
    return [form for secret in found if secret for form in {secret, unquote(secret)}]


def register_url_password(url: str) -> None:
    """Register the password of ``url`` (user info or ``password=`` parameter) as a secret, if it has one."""
    for secret in _url_passwords(url):
        register_secret(secret)


def redact_url(url: str) -> str:
    """``url`` with its password (user info, ``password=`` parameter) replaced by ``***``, whatever its length."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hosts}"
    query = "&".join(
        f"{key}={MASK}" if key in _URL_PASSWORD_PARAMS else pair
        for pair in parts.query.split("&")
        for key in [unquote(pair.split("=", 1)[0])]
    )
    if "://" not in url:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    # Built by hand: urlunsplit drops the "//" of an empty host (sqlite:///path, postgresql:///db?host=/run).
    scheme, _, _ = url.partition("://")
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{scheme}://{netloc}{parts.path}{'?' if query else ''}{query}{fragment}"


_exception_formatter = logging.Formatter()


class SecretFilter(logging.Filter):
    """Masks registered secrets in a record's message, arguments, traceback and stack text. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # arguments that do not fit the format: keep both, masked
            message = f"{record.msg} {record.args!r}"
        record.msg = mask(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


def install_log_masking(logger: logging.Logger | None = None) -> SecretFilter:
    """Attach a :class:`SecretFilter` to ``logger`` (default: the root logger) and to each of its handlers.

    A filter on a logger sees only records logged on that very logger; a filter on a handler sees every record the
    handler emits, including those propagated from child loggers. Call this after the handlers are configured
    (again if handlers are added later); calling it twice adds nothing.
    """
    target = logger if logger is not None else logging.getLogger()
    existing = [f for f in target.filters if isinstance(f, SecretFilter)]
    secret_filter = existing[0] if existing else SecretFilter()
    if not existing:
        target.addFilter(secret_filter)
    for handler in target.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(secret_filter)
    return secret_filter
