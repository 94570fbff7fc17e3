"""The IM REST client: one method per REST call, typed results, explicit timeouts, safe retries.

- Requests go through a ``Transport`` (``provisioner.im.transport``: kept-alive connections on the standard
  library; the tests hand in an in-memory IM instead).
- Every request has a (connect, read) timeout.
- Idempotent calls are retried with exponential backoff and jitter on connection errors and 502/503/504.
  Non-idempotent calls (POST) are retried only when the request provably never left this machine
  (connection refused / connect timeout): a create that timed out may have succeeded, and the lifecycle
  adopts it by its deployment id instead.
- Every failure is raised as a ``provisioner.errors.IMError`` subclass carrying IM's message and status.
- Nothing here logs a header or a body: the Authorization header carries credentials.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from provisioner import __version__
from provisioner.errors import (
    ConfigError,
    IMAuthError,
    IMBadRequest,
    IMError,
    IMForbidden,
    IMNotFound,
    IMServerError,
    IMTimeout,
    IMUnreachable,
)
from provisioner.im.models import (
    CloudImage,
    CreateResult,
    DryRunCloud,
    InfraState,
    Quota,
    VMInfo,
    dry_run_cloud,
    vm_info_from_radl,
)
from provisioner.im.transport import (
    AnswerTimeout,
    BadProxy,
    HTTPTransport,
    NotConnected,
    Response,
    TLSFailed,
    Transport,
    TransportError,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})


class AuthProvider(Protocol):
    """What the client needs from credentials (``provisioner.im.auth.AuthData`` is one)."""

    def header(self) -> str: ...

    def refresh(self) -> bool: ...


@dataclass(frozen=True)
class StaticAuth:
    """A fixed Authorization header (tests, or a header built elsewhere)."""

    value: str

    def header(self) -> str:
        return self.value

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticAuth(***)"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and for how long a request is retried (connection errors, 502/503/504), with backoff."""

    attempts: int = 5
    max_delay: float = 60.0
    backoff: float = 0.5
    backoff_cap: float = 8.0

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for IM: for the connection, and for each read of its answer."""

    connect: float = 5.0
    read: float = 120.0

    def as_tuple(self) -> tuple[float, float]:
        return (self.connect, self.read)


def _ids_from_uris(uris: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(item["uri"]).rstrip("/").rsplit("/", 1)[-1] for item in uris if "uri" in item]


class IMClient:
    """A client of one IM endpoint for one set of credentials. ``verify`` (TLS) goes to the transport the client
    makes; a ``transport`` handed in brings its own."""

    def __init__(
        self,
        url: str,
        auth: AuthProvider,
        *,
        timeouts: Timeouts | None = None,
        verify: bool | str = True,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.auth = auth
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.request_count = 0
        self._sleep = sleep
        # One transport for the client's life: it keeps the connection to IM open between calls (keep-alive), so a
        # command's requests share one TCP connection. A transport handed in is shared and closed by its owner.
        self._owns_transport = transport is None
        self._transport: Transport = transport if transport is not None else HTTPTransport(verify=verify)
        self._headers = {"User-Agent": f"provisioner/{__version__}"}

    def __repr__(self) -> str:
        return f"IMClient({self.url!r})"

    def close(self) -> None:
        """Close the connections, when the transport is this client's own (a shared one is closed by its owner)."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> IMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------------------------------

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: str | None,
        content_type: str | None,
        accept: str,
        timeouts: Timeouts,
    ) -> Response:
        headers = {**self._headers, "Authorization": self.auth.header(), "Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        url = self.url + path + (f"?{urlencode(params)}" if params else "")
        started = time.monotonic()
        self.request_count += 1
        try:
            resp = self._transport.send(
                method,
                url,
                headers=headers,
                body=body.encode("utf-8") if body is not None else None,
                timeouts=timeouts.as_tuple(),
            )
        except NotConnected as exc:
            raise _Unsent(f"cannot connect to IM at {self.url}: {exc.reason}") from exc
        except AnswerTimeout as exc:
            raise IMTimeout(
                f"IM at {self.url} did not answer {method} {path} within {timeouts.read:g} s",
                hint="IM may be overloaded; raise --read-timeout or try again",
            ) from exc
        except BadProxy as exc:
            raise ConfigError(
                exc.reason,
                field=exc.variable,
                hint="point it at an http:// proxy, or add the IM host to no_proxy",
            ) from exc
        except TLSFailed as exc:
            raise IMUnreachable(
                f"TLS verification of {self.url} failed: {exc.reason}",
                hint="fix the server certificate, point PROVISION_CA_BUNDLE at your CA, or (unsafe) use --insecure",
            ) from exc
        except TransportError as exc:
            raise IMUnreachable(f"connection to IM at {self.url} broke during {method} {path}: {exc.reason}") from exc
        log.debug("%s %s -> %s in %.3f s", method, path, resp.status, time.monotonic() - started)
        if resp.status >= 400:
            raise _error_from_response(resp, method, path)
        return resp

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: str | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        idempotent: bool,
        timeouts: Timeouts | None = None,
    ) -> Response:
        """Send, retrying what is safe to retry (see the module docstring) with full-jitter exponential backoff:
        before retry ``n`` a random wait up to ``min(backoff_cap, backoff * 2**(n-1))`` s; at most ``attempts``
        attempts, and none started after ``max_delay`` s."""
        chosen = timeouts or self.timeouts
        started = time.monotonic()
        auth_refreshed = False
        attempt = 0

        def send() -> Response:
            return self._send_once(
                method, path, params=params, body=body, content_type=content_type, accept=accept, timeouts=chosen
            )

        while True:
            attempt += 1
            try:
                try:
                    return send()
                except IMAuthError:
                    # An expired token given by command(...) is refreshed once, then the call is repeated.
                    if auth_refreshed or not self.auth.refresh():
                        raise
                    auth_refreshed = True
                    log.info("IM refused the credentials; re-read them and retrying once")
                    return send()
            except (_Unsent, IMError) as exc:
                failure: _Unsent | IMError = exc
            if (
                not _retriable(failure, idempotent)
                or attempt >= self.retry.attempts
                or time.monotonic() - started >= self.retry.max_delay
            ):
                if isinstance(failure, _Unsent):
                    raise IMUnreachable(
                        str(failure), hint="check the IM URL (--im-url / PROVISION_IM_URL) and that IM is running"
                    ) from failure.__cause__
                raise failure
            delay = random.uniform(0, min(self.retry.backoff_cap, self.retry.backoff * 2 ** (attempt - 1)))  # noqa: S311 - backoff jitter
            log.info("%s %s failed (%s); retry %d", method, path, type(failure).__name__, attempt)
            self._sleep(delay)

    def _json(self, resp: Response, key: str | None = None) -> Any:
        try:
            data = resp.json()
        except ValueError as exc:
            said = one_line(resp.text) or "an empty body"
            raise IMServerError(
                f"IM answered {resp.method} {_path_of(resp)} with a body that is not JSON: {said}",
                status=resp.status,
                body=resp.text,
            ) from exc
        if key is None:
            return data
        if not isinstance(data, dict) or key not in data:
            raise IMServerError(
                f"IM's answer to {resp.method} {_path_of(resp)} has no {key!r} field: {one_line(resp.text)}",
                status=resp.status,
                body=resp.text,
            )
        return data[key]

    @staticmethod
    def _inf(infra_id: str) -> str:
        return f"/infrastructures/{quote(str(infra_id), safe='')}"

    def _vm(self, infra_id: str, vm_id: str) -> str:
        return f"{self._inf(infra_id)}/vms/{quote(str(vm_id), safe=',')}"

    # --- infrastructures --------------------------------------------------------------------------------------------

    def version(self) -> str:
        return str(self._json(self._request("GET", "/version", idempotent=True), "version"))

    def list_infrastructures(self) -> list[str]:
        """The infrastructure ids of this IM user (IM 2.0.0's REST API takes no filter)."""
        resp = self._request("GET", "/infrastructures", idempotent=True)
        return _ids_from_uris(self._json(resp, "uri-list"))

    def create(
        self,
        tosca: str,
        *,
        async_: bool = False,
        content_type: str = "text/yaml",
        timeouts: Timeouts | None = None,
    ) -> CreateResult:
        """POST /infrastructures. Never retried once sent (see module doc): the caller adopts by deployment id."""
        resp = self._request(
            "POST",
            "/infrastructures",
            params={"async": "1"} if async_ else None,
            body=tosca,
            content_type=content_type,
            idempotent=False,
            timeouts=timeouts,
        )
        data = self._json(resp)
        uri = str(data.get("uri", "")) if isinstance(data, dict) else ""
        infra_id = resp.header("InfID") or (uri.rstrip("/").rsplit("/", 1)[-1] if uri else "")
        if not infra_id:
            raise IMServerError("IM created an infrastructure but did not say its id", status=resp.status)
        return CreateResult(infra_id=infra_id, uri=uri)

    def dry_run(self, tosca: str, *, content_type: str = "text/yaml") -> list[DryRunCloud]:
        """POST /infrastructures?dry_run=1: IM parses the template and says what it would launch, per cloud."""
        resp = self._request(
            "POST",
            "/infrastructures",
            params={"dry_run": "1"},
            body=tosca,
            content_type=content_type,
            idempotent=True,
        )
        data = self._json(resp)
        if not isinstance(data, dict):
            raise IMServerError("IM's dry-run answer is not a mapping", status=resp.status)
        return [dry_run_cloud(str(cloud_id), plan) for cloud_id, plan in data.items() if isinstance(plan, dict)]

    def state(self, infra_id: str) -> InfraState:
        data = self._json(self._request("GET", f"{self._inf(infra_id)}/state", idempotent=True), "state")
        vm_states = {str(k): str(v) for k, v in (data.get("vm_states") or {}).items()}
        return InfraState(state=str(data.get("state")), vm_states=vm_states)

    def contmsg(self, infra_id: str) -> str:
        return str(self._json(self._request("GET", f"{self._inf(infra_id)}/contmsg", idempotent=True), "contmsg"))

    def outputs(self, infra_id: str) -> dict[str, Any]:
        data = self._json(self._request("GET", f"{self._inf(infra_id)}/outputs", idempotent=True), "outputs")
        return dict(data or {})

    def tosca(self, infra_id: str) -> str:
        return str(self._json(self._request("GET", f"{self._inf(infra_id)}/tosca", idempotent=True), "tosca"))

    def radl(self, infra_id: str) -> str:
        return str(self._json(self._request("GET", f"{self._inf(infra_id)}/radl", idempotent=True), "radl"))

    def vm_ids(self, infra_id: str) -> list[str]:
        resp = self._request("GET", self._inf(infra_id), idempotent=True)
        return _ids_from_uris(self._json(resp, "uri-list"))

    def vm_info(self, infra_id: str, vm_id: str) -> VMInfo:
        data = self._json(self._request("GET", self._vm(infra_id, vm_id), idempotent=True))
        radl = data.get("radl") if isinstance(data, dict) else data
        if not isinstance(radl, list):
            raise IMServerError(f"IM's VM info for {infra_id}/{vm_id} is not a RADL list")
        return vm_info_from_radl(str(vm_id), radl)

    def vm_attribute(self, infra_id: str, vm_id: str, attribute: str) -> str:
        path = f"{self._vm(infra_id, vm_id)}/{quote(attribute, safe='.')}"
        resp = self._request("GET", path, accept="text/plain", idempotent=True)
        return resp.text

    def vm_contmsg(self, infra_id: str, vm_id: str) -> str:
        resp = self._request("GET", f"{self._vm(infra_id, vm_id)}/contmsg", accept="text/plain", idempotent=True)
        return resp.text

    def add_resources(
        self, infra_id: str, tosca: str, *, context: bool = True, content_type: str = "text/yaml"
    ) -> list[str]:
        """POST a COMPLETE TOSCA to an infrastructure: IM adds/removes VMs to match it. Returns new VM ids."""
        params = None if context else {"context": "0"}
        resp = self._request(
            "POST", self._inf(infra_id), params=params, body=tosca, content_type=content_type, idempotent=False
        )
        return _ids_from_uris(self._json(resp, "uri-list"))

    rescale = add_resources

    def remove_vms(self, infra_id: str, vm_ids: Iterable[str], *, context: bool = True) -> None:
        ids = ",".join(str(v) for v in vm_ids)
        if not ids:
            raise ValueError("remove_vms needs at least one VM id")
        params = None if context else {"context": "0"}
        self._request("DELETE", self._vm(infra_id, ids), params=params, accept="text/plain", idempotent=True)

    def alter_vm(self, infra_id: str, vm_id: str, radl_or_tosca: str, *, content_type: str = "text/plain") -> VMInfo:
        resp = self._request(
            "PUT", self._vm(infra_id, vm_id), body=radl_or_tosca, content_type=content_type, idempotent=True
        )
        data = self._json(resp)
        radl = data.get("radl") if isinstance(data, dict) else data
        if isinstance(radl, list):
            return vm_info_from_radl(str(vm_id), radl)
        return self.vm_info(infra_id, vm_id)

    def reconfigure(
        self,
        infra_id: str,
        *,
        vm_list: Iterable[str] | None = None,
        radl: str | None = None,
        content_type: str = "text/plain",
    ) -> None:
        params = {"vm_list": ",".join(str(v) for v in vm_list)} if vm_list is not None else None
        self._request(
            "PUT",
            f"{self._inf(infra_id)}/reconfigure",
            params=params,
            body=radl,
            content_type=content_type if radl is not None else None,
            accept="text/plain",
            idempotent=True,
        )

    def start(self, infra_id: str) -> None:
        self._request("PUT", f"{self._inf(infra_id)}/start", accept="text/plain", idempotent=True)

    def stop(self, infra_id: str) -> None:
        self._request("PUT", f"{self._inf(infra_id)}/stop", accept="text/plain", idempotent=True)

    def start_vm(self, infra_id: str, vm_id: str) -> None:
        self._request("PUT", f"{self._vm(infra_id, vm_id)}/start", accept="text/plain", idempotent=True)

    def stop_vm(self, infra_id: str, vm_id: str) -> None:
        self._request("PUT", f"{self._vm(infra_id, vm_id)}/stop", accept="text/plain", idempotent=True)

    def reboot_vm(self, infra_id: str, vm_id: str) -> None:
        self._request("PUT", f"{self._vm(infra_id, vm_id)}/reboot", accept="text/plain", idempotent=True)

    def destroy(self, infra_id: str, *, force: bool = False, async_: bool = False) -> None:
        params = {}
        if force:
            params["force"] = "1"
        if async_:
            params["async"] = "1"
        self._request(
            "DELETE",
            self._inf(infra_id),
            params=params or None,
            accept="text/plain",
            idempotent=True,
        )

    def authorization(self, infra_id: str) -> list[str]:
        """The owners of an infrastructure (IM user names or token identities)."""
        data = self._json(self._request("GET", f"{self._inf(infra_id)}/authorization", idempotent=True))
        owners = data.get("authorization", data) if isinstance(data, dict) else data
        if isinstance(owners, str):
            return [line for line in owners.splitlines() if line.strip()]
        if isinstance(owners, list):
            return [str(item.get("uri", item)) if isinstance(item, dict) else str(item) for item in owners]
        raise IMServerError(f"IM's owners of {infra_id} are not a list")

    def replace_authorization(self, infra_id: str, credential: Mapping[str, str], *, overwrite: bool = True) -> None:
        """Set the IM credential that owns an infrastructure (e.g. push a fresh EGI token)."""
        import json

        params = {"overwrite": "1"} if overwrite else None
        self._request(
            "POST",
            f"{self._inf(infra_id)}/authorization",
            params=params,
            body=json.dumps(dict(credential)),
            content_type="application/json",
            accept="text/plain",
            idempotent=True,
        )

    # --- clouds -----------------------------------------------------------------------------------------------------

    def cloud_images(self, cloud_id: str, *, filters: Mapping[str, str] | None = None) -> list[CloudImage]:
        params = {"filters": ",".join(f"{k}={v}" for k, v in filters.items())} if filters else None
        resp = self._request("GET", f"/clouds/{quote(cloud_id, safe='')}/images", params=params, idempotent=True)
        images = self._json(resp, "images") or []
        result = []
        for item in images:
            if isinstance(item, dict):
                result.append(CloudImage(uri=str(item.get("uri", "")), name=item.get("name"), raw=item))
            else:
                result.append(CloudImage(uri=str(item)))
        return result

    def cloud_quotas(self, cloud_id: str) -> dict[str, Quota]:
        resp = self._request("GET", f"/clouds/{quote(cloud_id, safe='')}/quotas", idempotent=True)
        data = self._json(resp, "quotas") or {}
        quotas: dict[str, Quota] = {}
        for name, value in data.items():
            if isinstance(value, dict):
                quotas[str(name)] = Quota(used=_num(value.get("used")), limit=_num(value.get("limit")))
        return quotas


class _Unsent(Exception):
    """The request never reached IM (connection refused or connect timeout): safe to retry any method."""


def _retriable(failure: _Unsent | IMError, idempotent: bool) -> bool:
    if isinstance(failure, _Unsent):
        return True  # the request never reached IM: safe for any method
    if not idempotent:
        return False
    if isinstance(failure, IMUnreachable | IMTimeout):
        return True
    return isinstance(failure, IMServerError) and failure.status in RETRY_STATUSES


def _path_of(resp: Response) -> str:
    return urlsplit(resp.url).path


def _error_from_response(resp: Response, method: str, path: str) -> IMError:
    """IM's error answer as one of our errors: its message in ONE line (IM's messages may carry a whole server
    traceback, a proxy's an HTML page); the whole body rides along (``body``) for ``--debug``."""
    status = resp.status
    text = resp.text
    message = ""
    try:
        data = resp.json()
        if isinstance(data, dict):
            detail = data.get("message", data.get("detail", ""))
            message = (
                detail
                if isinstance(detail, str)
                else "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
                if isinstance(detail, list)
                else str(detail)
            )
    except ValueError:
        message = text
    said = one_line(message) or resp.reason or "no message"
    body = text if text.strip() and text.strip() != said else None
    where = f"{method} {path}"
    if status == 401:
        return IMAuthError(
            f"IM refused the credentials ({status}): {said}",
            status=status,
            hint="check the InfrastructureManager line of the auth file; an EGI token may have expired",
            body=body,
        )
    if status == 403:
        return IMForbidden(
            f"IM denied {where} ({status}): {said}",
            status=status,
            hint="the infrastructure belongs to another IM user; use the credentials that created it",
            body=body,
        )
    if status == 404:
        return IMNotFound(f"IM does not know it ({status}): {said}", status=status, body=body)
    if status in (400, 415, 422):
        return IMBadRequest(f"IM refused {where} ({status}): {said}", status=status, body=body)
    if status >= 500:
        return IMServerError(f"IM failed on {where} ({status}): {said}", status=status, body=body)
    return IMError(f"IM answered {where} with {status}: {said}", status=status, body=body)


LINE_LIMIT = 200
_HTML_RE = re.compile(r"<(?:!doctype|html|head|body|title)\b", re.IGNORECASE)
_TITLE_RE = re.compile(r"<title[^>]*>(?P<title>.*?)</title>", re.IGNORECASE | re.DOTALL)
_HIDDEN_RE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]*>")
_ANSI_RE = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
_ERROR_LINE_RE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exc)\b: ")
_URL_FAILED_RE = re.compile(r'Failed to reach server "(?P<url>[^"]+)"\.(?: Reason is: (?P<why>.*?))?\.?$')


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """What an answer of IM (or of a proxy before it) says, in one trimmed line.

    An HTML page gives its ``<title>`` (else its first line of text); a text gives its first line, and when that
    line only announces what follows (``Error parsing TOSCA template:``), the first error line after it, not the
    traceback; an import IM could not fetch is said as such.
    """
    text = text.strip()
    if _HTML_RE.search(text):
        title = _TITLE_RE.search(text)
        if title is not None and title.group("title").strip():
            text = title.group("title")
        else:
            text = _TAG_RE.sub("\n", _HIDDEN_RE.sub("", text))
        import html  # only for an HTML error page: its entity table costs every command about 1.5 ms at import

        text = html.unescape(text)
    text = "".join(ch for ch in _ANSI_RE.sub("", text) if ch.isprintable() or ch in "\n\t")  # no terminal codes
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    for line in lines:
        failed = _URL_FAILED_RE.search(line)
        if failed is not None:
            why = f": {failed.group('why')}" if failed.group("why") else ""
            return _cut(f"IM could not fetch import URL {failed.group('url')}{why}", limit)
    chosen = lines[0]
    if chosen.endswith(":"):
        cause = next((line for line in lines[1:] if _ERROR_LINE_RE.match(line)), None)
        chosen = f"{chosen} {cause}" if cause else chosen.rstrip(":")
    return _cut(chosen, limit)


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
