"""The IM client's HTTP transport against real sockets on loopback: keep-alive, stale connections, timeouts, what
was sent and what not, redirects, TLS verification, and proxies from the environment (plain and CONNECT)."""

from __future__ import annotations

import base64
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import ConfigError, IMUnreachable
from provisioner.im import IMClient, RetryPolicy, StaticAuth, Timeouts
from provisioner.im.transport import (
    AnswerTimeout,
    BadProxy,
    ConnectionLost,
    HTTPTransport,
    NotConnected,
    TLSFailed,
    no_proxy_matches,
    proxy_for,
)
from tests.kubeapi import issue, make_ca

T = (2.0, 2.0)


@dataclass
class Seen:
    method: str
    target: str  # the request target as sent (absolute through a proxy)
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A loopback HTTP/1.1 server whose answers the test chooses by path; it records requests and connections."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    close_after_answer: bool = False  # close the socket after each answer, without saying so (an idle timeout)
    httpd: ThreadingHTTPServer | None = None

    def answer(self, handler: BaseHTTPRequestHandler, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path = seen.target
        if path.startswith("http"):  # absolute, as a proxy receives it
            rest = path.split("://", 1)[1]
            path = rest[rest.index("/") :] if "/" in rest else "/"
        if path.startswith("/slow"):
            time.sleep(1.5)
        if path.startswith("/hangup"):
            return -1, {}, b""
        if path.startswith("/redirect/"):
            status, where = path.removeprefix("/redirect/").split("/", 1)
            return int(status), {"Location": "/" + where if not where.startswith("http") else where}, b""
        return 200, {"Content-Type": "application/json"}, b'{"path": "%s"}' % path.encode()


def serve(server: Server, context: ssl.SSLContext | None = None) -> Server:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:
            pass

        def setup(self) -> None:
            server.connections += 1
            super().setup()

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            server.seen.append(seen)
            status, headers, data = server.answer(self, seen)
            if status < 0:
                self.close_connection = True
                return
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if server.close_after_answer:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server.httpd = httpd
    scheme = "https" if context is not None else "http"
    server.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server() -> Iterator[Server]:
    s = serve(Server())
    yield s
    assert s.httpd is not None
    s.httpd.shutdown()
    s.httpd.server_close()


def test_requests_share_one_kept_alive_connection(server: Server) -> None:
    t = HTTPTransport()
    for i in range(5):
        resp = t.send("GET", f"{server.url}/x/{i}", headers={"Accept": "application/json"}, body=None, timeouts=T)
        assert resp.status == 200 and resp.json() == {"path": f"/x/{i}"}
    assert (server.connections, t.connections_made) == (1, 1)
    t.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(server: Server) -> None:
    server.close_after_answer = True
    t = HTTPTransport()
    for i in range(3):
        body = b"x" * 10
        resp = t.send("POST", f"{server.url}/p/{i}", headers={}, body=body, timeouts=T)
        assert resp.status == 200
        time.sleep(0.05)  # the server's close arrives before the next request
    assert [s.body for s in server.seen] == [b"x" * 10] * 3  # each POST reached the server exactly once
    assert server.connections == 3 == t.connections_made


def test_refused_connection_was_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(NotConnected) as err:
            HTTPTransport().send("POST", f"http://127.0.0.1:{port}/", headers={}, body=b"x", timeouts=T)
    assert err.value.sent is False and "Connection refused" in err.value.reason


def test_no_answer_within_the_read_timeout(server: Server) -> None:
    with pytest.raises(AnswerTimeout) as err:
        HTTPTransport().send("GET", f"{server.url}/slow", headers={}, body=None, timeouts=(2.0, 0.3))
    assert err.value.sent is True


def test_connection_closed_without_an_answer_is_lost_and_sent(server: Server) -> None:
    with pytest.raises(ConnectionLost) as err:
        HTTPTransport().send("POST", f"{server.url}/hangup", headers={}, body=b"x", timeouts=T)
    assert err.value.sent is True and "closed connection" in err.value.reason


def test_redirects_follow_like_requests_and_keep_credentials_on_the_same_host_only(server: Server) -> None:
    t = HTTPTransport()
    auth = {"Authorization": "Bearer secret"}
    resp = t.send("GET", f"{server.url}/redirect/302/there", headers=auth, body=None, timeouts=T)
    assert resp.json() == {"path": "/there"} and resp.url == f"{server.url}/there"
    assert server.seen[-1].headers["authorization"] == "Bearer secret"

    # 303 after a POST: a GET without the body; 307 keeps both.
    t.send("POST", f"{server.url}/redirect/303/after", headers={"Content-Type": "text/yaml"}, body=b"b", timeouts=T)
    assert (server.seen[-1].method, server.seen[-1].body, "content-type" in server.seen[-1].headers) == (
        "GET",
        b"",
        False,
    )
    t.send("POST", f"{server.url}/redirect/307/kept", headers={}, body=b"b", timeouts=T)
    assert (server.seen[-1].method, server.seen[-1].body) == ("POST", b"b")

    # Another host (localhost is not 127.0.0.1 by name): the credentials stay behind.
    other = server.url.replace("127.0.0.1", "localhost")
    t.send("GET", f"{server.url}/redirect/302/{other}/elsewhere", headers=auth, body=None, timeouts=T)
    assert server.seen[-1].target == "/elsewhere" and "authorization" not in server.seen[-1].headers

    with pytest.raises(ConnectionLost, match="redirects"):
        loop = "/".join(["redirect/302"] * 8) + "/end"
        t.send("GET", f"{server.url}/{loop}", headers={}, body=None, timeouts=T)


# --- TLS -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    ca = make_ca("test-ca")
    cert, key = issue(ca, ips=["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    s = serve(Server(), context)
    yield s, tmp_path / "ca.pem"
    assert s.httpd is not None
    s.httpd.shutdown()
    s.httpd.server_close()


def test_tls_is_verified_against_the_given_ca_and_refused_otherwise(tls_server: tuple[Server, Path]) -> None:
    server, ca = tls_server
    ok = HTTPTransport(verify=str(ca)).send("GET", f"{server.url}/v", headers={}, body=None, timeouts=T)
    assert ok.json() == {"path": "/v"}
    via_env = HTTPTransport(environ={"REQUESTS_CA_BUNDLE": str(ca)})  # as requests honoured it
    assert via_env.send("GET", f"{server.url}/v", headers={}, body=None, timeouts=T).status == 200
    with pytest.raises(TLSFailed) as err:
        HTTPTransport(environ={}).send("GET", f"{server.url}/v", headers={}, body=None, timeouts=T)  # certifi's CAs
    assert err.value.sent is False and "certificate verify failed" in err.value.reason
    insecure = HTTPTransport(verify=False).send("GET", f"{server.url}/v", headers={}, body=None, timeouts=T)
    assert insecure.status == 200
    assert [s.target for s in server.seen] == ["/v", "/v", "/v"]  # the refused handshake sent nothing


def test_the_client_names_a_tls_failure_with_the_way_out(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    client = IMClient(server.url, StaticAuth("Bearer t"), retry=RetryPolicy.none(), timeouts=Timeouts(2, 2))
    with pytest.raises(IMUnreachable) as err:
        client.version()
    assert "TLS verification" in str(err.value) and "--insecure" in (err.value.hint or "")
    assert server.seen == []


# --- proxies -------------------------------------------------------------------------------------------------------


@dataclass
class Proxy:
    """A forward proxy on loopback: absolute-URI requests are forwarded, CONNECT is tunnelled byte for byte."""

    url: str = ""
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, target, Proxy-Authorization
    httpd: ThreadingHTTPServer | None = None


def run_proxy() -> Proxy:
    proxy = Proxy()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_CONNECT(self) -> None:
            proxy.requests.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization")))
            host, port = self.path.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=5)
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            pair = [self.connection, upstream]
            try:
                while True:
                    readable, _, _ = select.select(pair, [], [], 5)
                    if not readable:
                        return
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is self.connection else self.connection).sendall(data)
            finally:
                upstream.close()
                self.close_connection = True

        def do_GET(self) -> None:
            proxy.requests.append(("GET", self.path, self.headers.get("Proxy-Authorization")))
            import http.client
            from urllib.parse import urlsplit

            parts = urlsplit(self.path)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
            conn.request(
                "GET", parts.path, headers={k: v for k, v in self.headers.items() if k != "Proxy-Authorization"}
            )
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
            self.send_response(answer.status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    proxy.httpd = httpd
    proxy.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return proxy


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = run_proxy()
    yield p
    assert p.httpd is not None
    p.httpd.shutdown()
    p.httpd.server_close()


def test_http_goes_through_the_environments_proxy_with_its_credentials(server: Server, proxy: Proxy) -> None:
    with_user = proxy.url.replace("http://", "http://ann:p%40ss@")
    t = HTTPTransport(environ={"HTTP_PROXY": with_user})
    resp = t.send("GET", f"{server.url}/via", headers={"Authorization": "Bearer t"}, body=None, timeouts=T)
    assert resp.json() == {"path": "/via"}
    method, target, auth = proxy.requests[0]
    assert (method, target) == ("GET", f"{server.url}/via")
    assert auth == "Basic " + base64.b64encode(b"ann:p@ss").decode()
    assert "proxy-authorization" not in server.seen[0].headers and server.seen[0].headers["authorization"] == "Bearer t"


def test_https_goes_through_a_connect_tunnel_and_is_still_verified(
    tls_server: tuple[Server, Path], proxy: Proxy
) -> None:
    server, ca = tls_server
    t = HTTPTransport(verify=str(ca), environ={"https_proxy": proxy.url})
    for _ in range(2):
        assert t.send("GET", f"{server.url}/tunnel", headers={}, body=None, timeouts=T).json() == {"path": "/tunnel"}
    host_port = server.url.removeprefix("https://")
    assert proxy.requests == [("CONNECT", host_port, None)]  # one tunnel, kept alive for both requests
    with pytest.raises(TLSFailed):  # the tunnel does not switch verification off
        HTTPTransport(verify=True, environ={"https_proxy": proxy.url}).send(
            "GET", f"{server.url}/tunnel", headers={}, body=None, timeouts=T
        )


def test_no_proxy_sends_direct(server: Server, proxy: Proxy) -> None:
    t = HTTPTransport(environ={"http_proxy": proxy.url, "no_proxy": "example.org,127.0.0.0/8"})
    t.send("GET", f"{server.url}/direct", headers={}, body=None, timeouts=T)
    assert proxy.requests == [] and server.seen[0].target == "/direct"


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypass"),
    [
        ("im.example.org", "example.org", True),
        ("im.example.org", ".example.org", True),
        ("example.org", ".example.org", True),
        ("badexample.org", "example.org", False),
        ("im.example.org", "other.org, *", True),
        ("im.example.org", "im.example.org:8800", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("::1", "::1", True),
        ("im.example.org", "", False),
    ],
)
def test_no_proxy_rules(host: str, no_proxy: str, bypass: bool) -> None:
    assert no_proxy_matches(host, no_proxy) is bypass


def test_which_proxy_the_environment_names() -> None:
    env: dict[str, Any] = {"https_proxy": "proxy.lan:3128", "HTTP_PROXY": "http://up:8080", "ALL_PROXY": "http://a:1"}
    assert proxy_for("https", "im.example.org", env) == "http://proxy.lan:3128"
    assert proxy_for("http", "im.example.org", env) == "http://up:8080"
    assert proxy_for("http", "im.example.org", {"all_proxy": "http://a:1"}) == "http://a:1"
    assert proxy_for("http", "im.example.org", {}) is None
    with pytest.raises(BadProxy, match="SOCKS") as err:
        proxy_for("https", "im.example.org", {"all_proxy": "socks5://user:pw@s:1080"})
    assert "pw" not in str(err.value) and err.value.sent is False and err.value.variable == "all_proxy"


def test_a_proxy_the_transport_cannot_use_is_said_at_once_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5h://proxy.lan:1080")
    monkeypatch.delenv("all_proxy", raising=False)
    slept: list[float] = []
    client = IMClient("https://im.example.org:8800", StaticAuth("Bearer t"), sleep=slept.append)
    with pytest.raises(ConfigError) as err:
        client.version()
    assert str(err.value).startswith("ALL_PROXY: the proxy socks5h://proxy.lan:1080 is not an http:// proxy")
    assert err.value.exit_code == 2 and "no_proxy" in (err.value.hint or "")
    assert slept == [] and client.request_count == 1


# --- the wire: answers framed every way HTTP/1.1 allows, from a server that writes raw bytes -----------------------


@dataclass
class Raw:
    """A loopback server that answers each request (read up to its blank line and Content-Length body) with the
    next scripted bytes, then closes the connection when the script says so. Records the raw requests."""

    script: list[tuple[bytes, bool]]  # (answer bytes, close after it)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    url: str = ""

    def start(self) -> Raw:
        listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()
        return self

    def _serve(self, listener: socket.socket) -> None:
        with listener:
            while self.script:
                conn, _ = listener.accept()
                self.connections += 1
                with conn, conn.makefile("rb") as reader:
                    while self.script:
                        head = b""
                        while not head.endswith(b"\r\n\r\n"):
                            line = reader.readline()
                            if not line:
                                break
                            head += line
                        if not head:
                            break
                        length = 0
                        for line in head.split(b"\r\n"):
                            if line.lower().startswith(b"content-length:"):
                                length = int(line.split(b":", 1)[1])
                        self.requests.append(head + reader.read(length))
                        answer, close = self.script.pop(0)
                        conn.sendall(answer)
                        if close:
                            break


def raw_get(raw: Raw, path: str = "/x", method: str = "GET", transport: HTTPTransport | None = None) -> Any:
    t = transport or HTTPTransport()
    return t.send(method, raw.url + path, headers={"Accept": "application/json"}, body=None, timeouts=T)


def test_the_request_is_one_http_1_1_message_with_host_length_and_identity() -> None:
    raw = Raw([(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", True)]).start()
    t = HTTPTransport()
    resp = t.send("POST", raw.url + "/infrastructures?async=1", headers={"A": "b"}, body=b"tosca", timeouts=T)
    assert (resp.status, resp.reason, resp.json()) == (200, "OK", {})
    port = raw.url.rsplit(":", 1)[1]
    assert raw.requests == [
        b"POST /infrastructures?async=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\nA: b\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 5\r\n\r\ntosca"
    ]


def test_a_chunked_answer_is_joined_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\nX-T: 1\r\n\r\n'
    )
    raw = Raw([(chunked, False), (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", True)]).start()
    t = HTTPTransport()
    assert raw_get(raw, transport=t).json() == {"a": 1}
    assert raw_get(raw, transport=t).json() == []
    assert raw.connections == 1 == t.connections_made


def test_an_answer_without_length_runs_to_the_close_and_the_next_request_reconnects() -> None:
    raw = Raw([(b"HTTP/1.0 200 OK\r\n\r\nall of it", True), (b"HTTP/1.1 204 No Content\r\n\r\n", True)]).start()
    t = HTTPTransport()
    assert raw_get(raw, transport=t).body == b"all of it"
    resp = raw_get(raw, transport=t)
    assert (resp.status, resp.body) == (204, b"")
    assert raw.connections == 2 == t.connections_made


def test_interim_answers_are_skipped_and_headers_kept_as_sent() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=latin-1\r\nX-Many: a\r\nx-many: b\r\n"
        b'X-Folded: one\r\n  two\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"caf\xe9"'
    )
    raw = Raw([(answer, True)]).start()
    resp = raw_get(raw)
    assert resp.json() == "café"
    assert resp.header("X-MANY") == "a, b" and resp.header("x-folded") == "one two"


def test_a_head_answer_has_no_body_even_with_a_length() -> None:
    raw = Raw([(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", False)]).start()
    resp = raw_get(raw, method="HEAD")  # reading the 100 bytes the length names would fail: none come
    assert (resp.status, resp.body) == (200, b"")


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "cut short (5 bytes read)"),
        (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "did not end where"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", "longer than 64 KiB"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "cut short in its headers"),
    ],
)
def test_a_malformed_or_cut_answer_is_a_lost_connection_that_was_sent(answer: bytes, said: str) -> None:
    raw = Raw([(answer, True)]).start()
    with pytest.raises(ConnectionLost) as err:
        raw_get(raw)
    assert said in err.value.reason and err.value.sent is True


def test_a_line_break_in_a_header_is_refused_before_anything_is_sent() -> None:
    raw = Raw([(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True)]).start()
    with pytest.raises(ValueError, match="line break in the X header"):
        HTTPTransport().send("GET", raw.url + "/", headers={"X": "a\r\nInjected: 1"}, body=None, timeouts=T)
    assert raw.requests == []


def test_a_plain_http_command_never_imports_ssl() -> None:
    """ssl costs about 3.5 ms to import: a command talking to an http:// IM does without it."""
    import subprocess
    import sys

    raw = Raw([(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", True)]).start()
    code = (
        "import sys\n"
        "from provisioner.im.transport import HTTPTransport\n"
        f"r = HTTPTransport(environ={{}}).send('GET', {raw.url + '/'!r}, headers={{}}, body=None, timeouts=(2, 2))\n"
        "assert r.json() == {}\n"
        "print(sorted(m for m in ('ssl', '_ssl', 'http.client', 'email', 'encodings.idna') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
