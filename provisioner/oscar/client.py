"""The OSCAR REST client: one method per call, explicit (connect, read) timeouts, one error tree.

- ``/health`` is asked without credentials; every other call with OSCAR's basic auth (user ``oscar`` and the
  cluster's ``oscar_password``) or, when a token is given, an OIDC bearer token. A token that comes from a
  ``token_source`` (an OIDC agent's command) is asked for once, and once more after a 401 (it may have expired):
  the call is then sent again, once.
- ``/run/<service>`` and ``/job/<service>`` (invoking a service) take the service's own token, given per call.
- Nothing is retried: a caller that wants a second URL (``cluster verify``'s NodePort) asks a second client,
  when :attr:`~provisioner.errors.OSCARUnreachable.connect_failed` says the first could not be connected to at all.
- Failures are raised as :class:`~provisioner.errors.OSCARError` subclasses: ``OSCARUnreachable`` (no answer:
  refused, DNS, TLS, timeout), ``OSCARAuthRefused`` (401/403, exit 3), ``OSCARError`` (any other non-2xx, naming
  method, URL and status with OSCAR's answer in one short line; an answer that is not JSON where JSON is due).
- The password and the token are registered with :func:`provisioner.redact.register_secret`; nothing here logs a
  header or a body.

Driver layer: imports only the bottom layer (errors, redact, text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests

from provisioner.errors import OSCARAuthRefused, OSCARError, OSCARUnreachable
from provisioner.redact import mask, register_secret
from provisioner.text import shorten

__all__ = ["DEFAULT_USER", "MAX_PAGES", "OscarClient", "jobs_page"]

DEFAULT_USER = "oscar"
MAX_PAGES = 10_000  # a server whose continuation tokens never end is refused, not followed forever
CONNECT_TIMEOUT_MAX = 5.0
ANSWER_LIMIT = 200  # OSCAR's answer in an error message: one line of at most this many characters


def jobs_page(answer: object, service: str) -> tuple[dict[str, Any], str | None]:
    """One answer of OSCAR's ``GET /system/logs/<service>``: (job name -> job info, the next page's token or None).

    Current OSCAR (``pkg/handlers/logs.go``) answers ``{"jobs": {...}, "next_page": "<token>", "remaining_jobs":
    n}``, a page of at most ``JOB_LISTING_LIMIT`` jobs (70 by default), the next one asked with ``?page=<token>``;
    ``next_page`` is absent on the last page. Older releases answered the job map itself, in one page.
    An answer of another shape raises :class:`~provisioner.errors.OSCARError` (pure: no I/O)."""
    if not isinstance(answer, dict):
        raise OSCARError(f"/system/logs/{service} answered something that is not a JSON object")
    if "jobs" in answer:
        jobs = answer["jobs"] or {}
        if not isinstance(jobs, dict):
            raise OSCARError(f"/system/logs/{service}: jobs is not a JSON object")
        token = answer.get("next_page")
        if token is not None and not isinstance(token, str):
            raise OSCARError(f"/system/logs/{service}: next_page is not a text")
        return dict(jobs), token or None
    return dict(answer), None


def _reason(exc: BaseException) -> str:
    """A transport error's first line, shortened (requests' texts carry the whole urllib3 chain)."""
    text = str(exc) or type(exc).__name__
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(exc).__name__)
    return shorten(mask(line), ANSWER_LIMIT)


def _said(resp: requests.Response) -> str:
    """OSCAR's answer in one masked, shortened line ("" when it said nothing)."""
    try:
        text = resp.text
    except (UnicodeDecodeError, LookupError):
        return ""
    line = next((" ".join(part.split()) for part in text.splitlines() if part.strip()), "")
    return shorten(mask(line), ANSWER_LIMIT) if line else ""


class OscarClient:
    """A client of one OSCAR endpoint (its base URL, e.g. ``https://front/`` or ``http://front:30301/``)."""

    def __init__(
        self,
        base_url: str,
        *,
        user: str = DEFAULT_USER,
        password: str | None = None,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        token_source: Callable[[], str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self._password = password
        self._token = token
        self._token_source = token_source
        for secret in (password, token):
            if secret:
                register_secret(secret)
        self.verify = verify
        self.timeout = timeout
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"OscarClient({self.base_url!r})"

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) timeout of every request."""
        return (min(CONNECT_TIMEOUT_MAX, self.timeout), self.timeout)

    def close(self) -> None:
        """Close the session (only one this client made: an injected session is its owner's to close)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> OscarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------------------------------

    def _fresh_token(self) -> None:
        """Ask the token source for a token (at first use, and after a 401)."""
        if self._token_source is not None:
            self._token = self._token_source()
            register_secret(self._token)

    def _credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        if self._token is None and self._token_source is not None:
            self._fresh_token()
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}, None
        if self._password is not None:
            return {}, (self.user, self._password)
        return {}, None

    def _request(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        bearer: str | None = None,
        allow: frozenset[int] = frozenset(),
        refreshed: bool = False,
    ) -> requests.Response:
        """One request; a non-2xx status not in ``allow`` is raised as an error.

        ``bearer``: a token for this call only (a service's token), instead of the client's credentials."""
        url = self.base_url + path
        if bearer is not None:
            headers, auth = {"Authorization": f"Bearer {bearer}"}, None
        else:
            headers, auth = self._credentials() if authenticated else ({}, None)
        headers = {"Accept": "application/json", **headers}
        connect, read = self.timeouts
        try:
            resp = self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                auth=auth,
                timeout=(connect, read),
                verify=self.verify,
            )
        except requests.exceptions.SSLError as exc:
            reason = _reason(exc)
            raise OSCARUnreachable(
                f"TLS verification of OSCAR at {self.base_url} failed ({method} {path}): {reason}",
                tls=True,
                reason=reason,
                hint="fix the server certificate, point PROVISION_CA_BUNDLE at your CA, or (unsafe) use --insecure",
            ) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise OSCARUnreachable(
                f"OSCAR at {self.base_url} did not accept a connection within {connect:g} s ({method} {path})",
                connect_failed=True,
                reason=_reason(exc),
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            reason = _reason(exc)
            raise OSCARUnreachable(
                f"cannot connect to OSCAR at {self.base_url} ({method} {path}): {reason}",
                connect_failed=True,
                reason=reason,
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise OSCARUnreachable(
                f"OSCAR at {self.base_url} did not answer {method} {path} within {read:g} s", reason=_reason(exc)
            ) from exc
        except requests.exceptions.RequestException as exc:
            reason = _reason(exc)
            raise OSCARUnreachable(f"request to OSCAR at {self.base_url} failed ({method} {path}): {reason}") from exc
        status = resp.status_code
        if 200 <= status < 300 or status in allow:
            return resp
        if status == 401 and bearer is None and authenticated and self._token_source is not None and not refreshed:
            self._fresh_token()  # an expired OIDC token: one new one, one more try
            return self._request(
                method, path, authenticated=authenticated, params=params, json_body=json_body, data=data,
                allow=allow, refreshed=True,
            )  # fmt: skip
        said = _said(resp)
        where = f"{method} {url} answered {status}{f': {said}' if said else ''}"
        if status in (401, 403):
            raise OSCARAuthRefused(
                where,
                status=status,
                body=said or None,
                hint="check the cluster's oscar_password (or the OIDC token) and that this user may make the call",
            )
        raise OSCARError(where, status=status, body=said or None)

    def _json(self, method: str, path: str, *, params: Mapping[str, str] | None = None) -> object:
        resp = self._request(method, path, params=params)
        try:
            return resp.json()
        except ValueError:
            raise OSCARError(f"{method} {self.base_url}{path} answered something that is not JSON") from None

    # --- calls --------------------------------------------------------------------------------------------------------

    def health(self) -> str:
        """``GET /health`` (no credentials): OSCAR's answer text (``Ok``)."""
        return self._request("GET", "/health", authenticated=False).text

    def config(self) -> dict[str, Any]:
        """``GET /system/config``: the server's settings (``{"config": {...}, "minio_provider": {...}, ...}``)."""
        answer = self._json("GET", "/system/config")
        if not isinstance(answer, dict):
            raise OSCARError(f"GET {self.base_url}/system/config answered something that is not a JSON object")
        return answer

    def services(self) -> list[dict[str, Any]]:
        """``GET /system/services``: the service definitions (entries that are not objects are left out)."""
        answer = self._json("GET", "/system/services")
        if not isinstance(answer, list):
            raise OSCARError(f"GET {self.base_url}/system/services answered something that is not a list")
        return [dict(item) for item in answer if isinstance(item, dict)]

    def get_service(self, name: str) -> dict[str, Any] | None:
        """``GET /system/services/<name>``: the service's definition; None when OSCAR does not know it (404)."""
        path = f"/system/services/{quote(name, safe='')}"
        resp = self._request("GET", path, allow=frozenset({404}))
        if resp.status_code == 404:
            return None
        try:
            answer = resp.json()
        except ValueError:
            raise OSCARError(f"GET {self.base_url}{path} answered something that is not JSON") from None
        if not isinstance(answer, dict):
            raise OSCARError(f"GET {self.base_url}{path} answered something that is not a JSON object")
        return answer

    def create_service(self, definition: Mapping[str, Any]) -> None:
        """``POST /system/services``: create the service ``definition`` describes (never retried)."""
        self._request("POST", "/system/services", json_body=dict(definition))

    def update_service(self, definition: Mapping[str, Any]) -> None:
        """``PUT /system/services``: replace the definition of the service ``definition`` names."""
        self._request("PUT", "/system/services", json_body=dict(definition))

    def delete_service(self, name: str) -> bool:
        """``DELETE /system/services/<name>``: True when deleted, False when OSCAR did not know it (404)."""
        resp = self._request("DELETE", f"/system/services/{quote(name, safe='')}", allow=frozenset({404}))
        return resp.status_code != 404

    def service_logs(
        self,
        name: str,
        *,
        max_pages: int = MAX_PAGES,
        parse: Callable[[object, str], tuple[dict[str, Any], str | None]] = jobs_page,
    ) -> dict[str, Any]:
        """``GET /system/logs/<name>``, every page (``?page=<token>``) merged: job name -> job info.

        More than ``max_pages`` pages raises :class:`~provisioner.errors.OSCARError`."""
        path = f"/system/logs/{quote(name, safe='')}"
        jobs: dict[str, Any] = {}
        token: str | None = None
        for _ in range(max_pages):
            answer = self._json("GET", path, params={"page": token} if token else None)
            page, token = parse(answer, name)
            jobs.update(page)
            if token is None:
                return jobs
        raise OSCARError(f"GET {self.base_url}{path} still has more pages after {max_pages}")

    def job_log(self, service: str, job: str) -> str:
        """``GET /system/logs/<service>/<job>``: the job's log text."""
        path = f"/system/logs/{quote(service, safe='')}/{quote(job, safe='')}"
        return self._request("GET", path).text

    def run_service(self, name: str, body: bytes, *, token: str) -> bytes:
        """``POST /run/<name>`` (synchronous) with the service's ``token``: OSCAR's answer, as sent."""
        register_secret(token)
        return self._request("POST", f"/run/{quote(name, safe='')}", data=body, bearer=token).content

    def job_service(self, name: str, body: bytes, *, token: str) -> None:
        """``POST /job/<name>`` (asynchronous) with the service's ``token``: OSCAR makes a job of ``body``."""
        register_secret(token)
        self._request("POST", f"/job/{quote(name, safe='')}", data=body, bearer=token)
