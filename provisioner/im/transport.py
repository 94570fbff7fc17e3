"""HTTP/1.1 for the IM client, on sockets: kept-alive connections, timeouts, TLS, proxies.

The IM client sends a handful of small requests to one host per command. Importing requests (with urllib3,
charset_normalizer, idna and cookies) cost more than all of them together on a create (about 70 ms), and even
``http.client`` cost 13 ms of every command (it imports the ``email`` package to parse headers, and ``ssl``), so
the client speaks HTTP/1.1 itself, here (``_Connection``: a request line and headers out; a status line, headers
and a body delimited by ``Content-Length``, chunks or the end of the connection back). ``ssl`` is imported only
for an https URL. ``Transport`` is the seam: the client takes any object with ``send`` and ``close`` (the tests'
in-memory IM is one), and ``HTTPTransport`` is the real one. It does what requests did for the client:

- **Keep-alive.** Connections are pooled per origin (scheme, host, port): a command's requests share one TCP
  connection, and concurrent threads take one each (at most ``POOL_SIZE`` are kept idle). A connection the server
  closed while it sat idle is noticed before reuse (its socket reads as ready) and replaced. ``TCP_NODELAY`` is set,
  as urllib3 sets it: a small request is never held back waiting for the previous answer's ACK.
- **Timeouts.** ``connect`` bounds making the connection (with a proxy: reaching the proxy and its tunnel, and
  the TLS handshake); ``read`` bounds every wait for the answer.
- **TLS.** Verified unless ``verify=False`` (the CLI's ``--insecure``). The CA bundle is ``verify`` when it is a
  path (a file or a directory), else, as requests chose it, ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` from the
  environment, else certifi's when installed, else the system's.
- **Proxies** from the environment, as requests and curl read them: ``https_proxy`` / ``http_proxy`` /
  ``all_proxy`` (lower case first, then upper case) and ``no_proxy`` (host names, domain suffixes with or without
  a leading dot, IP addresses and networks, ``*``). HTTPS goes through a CONNECT tunnel, HTTP by absolute URI;
  a user and password in the proxy URL become a ``Proxy-Authorization`` header. SOCKS proxies are refused by name.
- **Redirects.** Up to ``MAX_REDIRECTS``, as requests follows them: 303, and 301/302 after a POST, become a GET
  without a body; 307/308 keep the method and body. The ``Authorization`` header is dropped when the host changes,
  and also on a downgrade from https to http.
- No content encoding is asked for (``Accept-Encoding: identity``): IM's answers are small.

Errors: every failure is a ``TransportError``; what the caller must know is whether the request may have reached
the server (``sent``)::

    TransportError
    ├── NotConnected      refused, name not resolved, connect timeout, a proxy refused the tunnel   (sent=False)
    ├── BadProxy          the environment names a proxy this transport cannot use (SOCKS)           (sent=False)
    ├── TLSFailed         the certificate did not verify, or the handshake failed                    (sent=False)
    ├── AnswerTimeout     sent; no answer within ``read`` s                                           (sent=True)
    └── ConnectionLost    sent; the connection broke before the whole answer arrived                 (sent=True)

Nothing here logs a header or a body (the Authorization header carries credentials).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

POOL_SIZE = 16  # idle connections kept per origin
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_LINE = 65536  # the longest status or header line read, as http.client allows
_MAX_HEADERS = 100
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with a Content-Length even when empty


class TransportError(Exception):
    """The request failed below HTTP; ``reason`` is the short cause (``Connection refused``, ``timed out`` ...)."""

    sent = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConnected(TransportError):
    """No connection was made: the request never left this machine (safe to send again, whatever the method)."""

    sent = False


class BadProxy(TransportError):
    """The environment variable ``variable`` names a proxy this transport cannot speak to. Nothing was sent, and
    nothing will be until the environment changes: not worth retrying."""

    sent = False

    def __init__(self, reason: str, variable: str) -> None:
        super().__init__(reason)
        self.variable = variable


class TLSFailed(TransportError):
    """The TLS handshake failed (most often: the certificate did not verify). Nothing was sent."""

    sent = False


class AnswerTimeout(TransportError):
    """The request was sent and no answer came within the read timeout."""


class ConnectionLost(TransportError):
    """The request was (or may have been) sent, and the connection broke before the whole answer arrived."""


@dataclass(frozen=True)
class Response:
    """An answer: ``url`` is where it came from (after redirects), ``headers`` has lower-case names."""

    method: str
    url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return self.body.decode(_charset(self.header("content-type")), errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.text)


class Transport(Protocol):
    """What the IM client sends its requests through."""

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: tuple[float, float],
    ) -> Response: ...

    def close(self) -> None: ...


Origin = tuple[str, str, int]  # scheme, host, port


class HTTPTransport:
    """The real transport (see the module docstring). Thread-safe: each request holds its own connection."""

    def __init__(self, *, verify: bool | str = True, environ: Mapping[str, str] | None = None) -> None:
        self.verify = verify
        self._environ = os.environ if environ is None else environ
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self.connections_made = 0

    def __repr__(self) -> str:
        return f"HTTPTransport(verify={self.verify!r})"

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: tuple[float, float],
    ) -> Response:
        sent_headers = dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send_once(method, url, sent_headers, body, timeouts)
            location = resp.header("location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            target = urljoin(url, location)
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
                sent_headers = {k: v for k, v in sent_headers.items() if k.lower() != "content-type"}
            if _auth_must_drop(url, target):
                sent_headers = {k: v for k, v in sent_headers.items() if k.lower() != "authorization"}
            log.debug("%s redirected (%d) to %s", urlsplit(url).path, resp.status, urlsplit(target).path)
            url = target
        raise ConnectionLost(f"more than {MAX_REDIRECTS} redirects")

    # --- one request on one connection ---------------------------------------------------------------------------

    def _send_once(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeouts: tuple[float, float]
    ) -> Response:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise NotConnected(f"not an http(s) URL: {url}")
        default_port = 443 if scheme == "https" else 80
        origin: Origin = (scheme, parts.hostname, parts.port or default_port)
        proxy = proxy_for(scheme, parts.hostname, self._environ)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        extra: dict[str, str] = {}
        if proxy is not None and scheme == "http":
            target = f"http://{parts.netloc}{target}"  # absolute URI: the proxy forwards it
            auth = _proxy_auth(proxy)
            if auth:
                extra["Proxy-Authorization"] = auth
        conn = self._take(origin) or self._connect(origin, proxy, timeouts[0])
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        request_headers = {"Host": host if origin[2] == default_port else f"{host}:{origin[2]}"}
        request_headers.update(headers)
        request_headers.update(extra)
        if not any(k.lower() == "accept-encoding" for k in request_headers):
            request_headers["Accept-Encoding"] = "identity"
        if body is not None or method in _BODY_METHODS:
            request_headers["Content-Length"] = str(len(body or b""))
        try:
            conn.sock.settimeout(timeouts[1])
            conn.send_request(method, target, request_headers, body)
            answer = conn.read_answer(method)
        except TimeoutError as exc:
            conn.close()
            raise AnswerTimeout("timed out") from exc
        except ConnectionLost:
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            raise ConnectionLost(_reason(exc)) from exc
        if answer.will_close:
            conn.close()
        else:
            self._give_back(origin, conn)
        return Response(method, url, answer.status, answer.reason, answer.headers, answer.body)

    def _take(self, origin: Origin) -> _Connection | None:
        while True:
            with self._lock:
                pool = self._idle.get(origin)
                conn = pool.pop() if pool else None
            if conn is None:
                return None
            if _still_open(conn):
                return conn
            conn.close()  # the server closed it while it sat idle

    def _give_back(self, origin: Origin, conn: _Connection) -> None:
        with self._lock:
            pool = self._idle.setdefault(origin, [])
            if len(pool) < POOL_SIZE:
                pool.append(conn)
                return
        conn.close()

    def _connect(self, origin: Origin, proxy: str | None, timeout: float) -> _Connection:
        scheme, host, port = origin
        where = f"{host}:{port}" if proxy is None else f"{host}:{port} through the proxy {_without_password(proxy)}"
        if scheme == "https":
            import ssl  # only for https: its import costs a plain-http command about 3.5 ms

            tls_errors: tuple[type[BaseException], ...] = (ssl.SSLError,)
        else:
            tls_errors = ()
        sock: socket.socket | None = None
        try:
            if proxy is None:
                sock = _open_socket(host, port, timeout)
            else:
                p = urlsplit(proxy)
                sock = _open_socket(p.hostname or "", p.port or 80, timeout)
                if scheme == "https":
                    _tunnel(sock, host, port, _proxy_auth(proxy))
            if scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)
        except tls_errors as exc:
            if sock is not None:
                sock.close()
            verify_message = getattr(exc, "verify_message", None)
            if verify_message is not None:
                raise TLSFailed(f"certificate verify failed: {verify_message}") from exc
            raise TLSFailed(f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}") from exc
        except TimeoutError as exc:
            if sock is not None:
                sock.close()
            raise NotConnected(f"no connection within {timeout:g} s (timed out)") from exc
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise NotConnected(_reason(exc)) from exc
        self.connections_made += 1
        log.debug("new connection to %s", where)
        return _Connection(sock)

    def _tls(self) -> ssl.SSLContext:
        import ssl

        if self._context is None:
            if self.verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                bundle = self.verify if isinstance(self.verify, str) else _bundle_from(self._environ)
                if bundle is not None and os.path.isdir(bundle):
                    context = ssl.create_default_context(capath=bundle)
                else:
                    context = ssl.create_default_context(cafile=bundle)
            self._context = context
        return self._context


# --- proxies -------------------------------------------------------------------------------------------------------


def proxy_for(scheme: str, host: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL for a request to ``host`` over ``scheme``, from the environment (None: go direct).

    Raises ``BadProxy`` for a proxy this transport cannot speak to (SOCKS, or a URL without a host)."""

    def get(name: str) -> tuple[str, str]:
        for variable in (name, name.upper()):
            value = (environ.get(variable) or "").strip()
            if value:
                return variable, value
        return name, ""

    if no_proxy_matches(host, get("no_proxy")[1]):
        return None
    variable, proxy = get(f"{scheme}_proxy")
    if not proxy:
        variable, proxy = get("all_proxy")
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urlsplit(proxy)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise BadProxy(
            f"the proxy {_without_password(proxy)} is not an http:// proxy (SOCKS and https proxies are not supported)",
            variable,
        )
    return proxy


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma- or space-separated) exempts ``host``: ``*``, the host itself, a domain it is in
    (``example.org`` or ``.example.org``), or an IP network holding it (``10.0.0.0/8``). A ``:port`` is ignored."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", ",").lower().split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
        name = entry.lstrip(".").rstrip(".")
        if name.count(":") == 1:
            name = name.split(":", 1)[0]
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _proxy_auth(proxy: str) -> str | None:
    parts = urlsplit(proxy)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


# --- helpers -------------------------------------------------------------------------------------------------------


def _auth_must_drop(old: str, new: str) -> bool:
    a, b = urlsplit(old), urlsplit(new)
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return True
    return a.scheme.lower() == "https" and b.scheme.lower() != "https"


def _still_open(conn: _Connection) -> bool:
    """An idle kept-alive connection is usable when its socket has nothing to read: a readable one was closed by
    the server (or carries bytes nobody asked for)."""
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"Name or service not known ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _charset(content_type: str | None) -> str:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            candidate = value.strip("\"' ")
            try:
                "".encode(candidate)
            except LookupError:
                break
            return candidate
    return "utf-8"


def _bundle_from(environ: Mapping[str, str]) -> str | None:
    """The CA bundle when none is given: the environment's, as requests read it, else certifi's, else None (the
    system's)."""
    named = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    if named:
        return named
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


# --- the wire: one HTTP/1.1 connection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer as read from the socket, and whether its connection can carry another request."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    will_close: bool  # the connection cannot carry another request


class _Connection:
    """A socket (TLS-wrapped for https, through a proxy's tunnel when there is one) that carries one request at a
    time: ``send_request``, then ``read_answer``. A malformed or cut-short answer is ``ConnectionLost``."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3: no wait for the last answer's ACK
        self.sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def send_request(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> None:
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"a line break in the {name} header")  # would split the request (a bug)
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + body if body else head)  # one write: no delayed ACK between head and body

    def read_answer(self, method: str) -> _Answer:
        readline = self._file.readline
        version, status, reason = _status_line(readline)
        while 100 <= status < 200:  # interim answers (100 Continue): their headers, then the real one
            _headers(readline)
            version, status, reason = _status_line(readline)
        headers = _headers(readline)
        connection = headers.get("connection", "").lower()
        will_close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if method == "HEAD" or status in (204, 304):
            return _Answer(status, reason, headers, b"", will_close)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _Answer(status, reason, headers, self._chunks(), will_close)
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length.split(",")[0])
                if size < 0:
                    raise ValueError(size)
            except ValueError:
                raise ConnectionLost(f"a bad Content-Length in the answer: {length[:40]!r}") from None
            return _Answer(status, reason, headers, self._exactly(size), will_close)
        return _Answer(status, reason, headers, self._file.read(), True)  # delimited by the end of the connection

    def _line(self) -> bytes:
        return _read_line(self._file.readline)

    def _exactly(self, size: int) -> bytes:
        data = self._file.read(size)
        if len(data) < size:
            raise ConnectionLost(f"the answer was cut short ({len(data)} bytes read)")
        return data

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self._line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ConnectionLost(f"a bad chunk size in the answer: {line[:40]!r}") from None
            if size == 0:
                break
            parts.append(self._exactly(size))
            if self._line() not in (b"\r\n", b"\n"):
                raise ConnectionLost("a chunk of the answer did not end where its size said")
        while self._line() not in (b"\r\n", b"\n", b""):  # trailer headers, unused
            pass
        return b"".join(parts)


Readline = Callable[[int], bytes]


def _read_line(readline: Readline) -> bytes:
    line = readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ConnectionLost("an answer line longer than 64 KiB")
    return line


def _status_line(readline: Readline) -> tuple[str, int, str]:
    line = _read_line(readline)
    if not line:
        raise ConnectionLost("Remote end closed connection without response")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ConnectionLost(f"not an HTTP/1.x answer: {line[:40]!r}")
    return version, int(code), reason.strip()


def _headers(readline: Readline) -> dict[str, str]:
    """Header lines up to the blank one: lower-case names, a repeated header's values joined with ", "."""
    found: dict[str, str] = {}
    last = ""
    for _ in range(_MAX_HEADERS + 1):
        line = _read_line(readline)
        if line in (b"\r\n", b"\n"):
            return found
        if not line.endswith(b"\n"):
            raise ConnectionLost("the answer was cut short in its headers")
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and last:  # an obsolete folded line continues the header before it
            found[last] = f"{found[last]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise ConnectionLost(f"a malformed header line in the answer: {line[:40]!r}")
        last = name.lower()
        value = value.strip()
        found[last] = f"{found[last]}, {value}" if last in found else value
    raise ConnectionLost(f"more than {_MAX_HEADERS} headers in the answer")


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    # A host given as bytes keeps the socket module from importing the idna codec for a plain ASCII name.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    return socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]


def _tunnel(sock: socket.socket, host: str, port: int, auth: str | None) -> None:
    """Ask the proxy on ``sock`` for a tunnel to ``host:port`` (CONNECT). Refused: ``OSError`` (not connected)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {where} HTTP/1.1", f"Host: {where}"]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    # Read byte by byte (no buffer): nothing of the TLS handshake that follows may be read here.
    reader = sock.makefile("rb", buffering=0)
    try:
        _, status, reason = _status_line(reader.readline)
        _headers(reader.readline)
    except ConnectionLost as exc:
        raise OSError(f"Tunnel connection failed: {exc}") from None
    finally:
        reader.close()
    if status != 200:
        raise OSError(f"Tunnel connection failed: {status} {reason}")
