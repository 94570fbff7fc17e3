"""OscarClient against a tiny in-process OSCAR on 127.0.0.1 (and a recording requests adapter for timeouts)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from provisioner.errors import EXIT_UNREACHABLE, OSCARAuthRefused, OSCARError, OSCARUnreachable
from provisioner.oscar import OscarClient

PASSWORD = "s3cret-oscar-pw"
TOKEN = "oidc-token-abcdef"


class Fake:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.endless = False

    def answer(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        if path == "/health":
            return 200, b"Ok"
        if path == "/boom":
            return 500, b"internal failure\nsecond line"
        if path == "/system/services" and method == "GET":
            return 200, [{"name": "a"}]
        if path.startswith("/system/services/") and method in ("GET", "DELETE"):
            return (404, b"not found") if path.endswith("/gone") else (200 if method == "GET" else 204, {"name": "a"})
        if path.startswith("/system/logs/"):
            page = int(query.get("page", ["0"])[0])
            body: dict[str, Any] = {"jobs": {f"j{page}": {"status": "Pending"}}}
            if self.endless or page < 2:
                body["next_page"] = str(page + 1)
            return 200, body
        return 201, b""


@contextlib.contextmanager
def fake_server() -> Iterator[tuple[str, Fake]]:
    fake = Fake()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def handle_any(self) -> None:
            parts = urlsplit(self.path)
            given = self.headers.get("Authorization", "")
            fake.seen.append((self.command, parts.path, given))
            if self.headers.get("Content-Length"):
                self.rfile.read(int(self.headers["Content-Length"]))
            expected = {"Basic " + base64.b64encode(f"oscar:{PASSWORD}".encode()).decode(), f"Bearer {TOKEN}"}
            if parts.path != "/health" and given not in expected:
                code, body = 401, b"unauthorized"
            else:
                code, body = fake.answer(self.command, parts.path, parse_qs(parts.query))
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def oscar() -> Iterator[tuple[str, Fake]]:
    with fake_server() as served:
        yield served


def test_basic_auth_and_calls(oscar: tuple[str, Fake]) -> None:
    url, fake = oscar
    with OscarClient(url, password=PASSWORD, timeout=5) as client:
        assert client.health() == "Ok"
        assert client.services() == [{"name": "a"}]
        assert client.get_service("a") == {"name": "a"}
        assert client.get_service("gone") is None
        assert client.delete_service("a") is True
        assert client.delete_service("gone") is False
        client.create_service({"name": "a"})
        client.update_service({"name": "a"})
    assert fake.seen[0] == ("GET", "/health", "")  # no credentials for /health
    assert all(auth.startswith("Basic ") for _, _, auth in fake.seen[1:])
    assert ("POST", "/system/services") in [(m, p) for m, p, _ in fake.seen]


def test_bearer_token_sent(oscar: tuple[str, Fake]) -> None:
    url, fake = oscar
    with OscarClient(url, token=TOKEN, timeout=5) as client:
        client.services()
    assert fake.seen[-1][2] == f"Bearer {TOKEN}"


def test_pages_are_merged_and_bounded(oscar: tuple[str, Fake]) -> None:
    url, fake = oscar
    with OscarClient(url, password=PASSWORD, timeout=5) as client:
        assert set(client.service_logs("svc")) == {"j0", "j1", "j2"}
        assert len([p for _, p, _ in fake.seen if p == "/system/logs/svc"]) == 3
        fake.endless = True
        fake.seen.clear()
        with pytest.raises(OSCARError, match="still has more pages after 4"):
            client.service_logs("svc", max_pages=4)
        assert len(fake.seen) == 4


def test_401_is_auth_refused_and_hides_the_password(oscar: tuple[str, Fake]) -> None:
    url, _ = oscar
    wrong = "wrong-password-123"
    with OscarClient(url, password=wrong, timeout=5) as client, pytest.raises(OSCARAuthRefused) as err:
        client.config()
    assert err.value.exit_code == EXIT_UNREACHABLE == 3 and err.value.status == 401
    assert "/system/config answered 401" in str(err.value) and wrong not in str(err.value)


def test_500_names_method_path_and_status(oscar: tuple[str, Fake]) -> None:
    url, _ = oscar
    with OscarClient(url, password=PASSWORD, timeout=5) as client, pytest.raises(OSCARError) as err:
        client._json("GET", "/boom")
    assert not isinstance(err.value, OSCARAuthRefused)
    assert str(err.value) == f"GET {url.rstrip('/')}/boom answered 500: internal failure"
    assert PASSWORD not in str(err.value)


def test_connection_refused_is_unreachable() -> None:
    with (
        OscarClient("http://127.0.0.1:9/", password=PASSWORD, timeout=2) as client,
        pytest.raises(OSCARUnreachable) as err,
    ):
        client.health()
    assert err.value.connect_failed and not err.value.tls
    assert PASSWORD not in str(err.value)


class Recording(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append({"timeout": kwargs.get("timeout"), "auth": request.headers.get("Authorization")})
        resp = requests.Response()
        resp.status_code = 200
        resp._content = b"[]"
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def test_timeouts_are_connect_and_read() -> None:
    session = requests.Session()
    adapter = Recording()
    session.mount("http://", adapter)
    with OscarClient("http://oscar.invalid/", token=TOKEN, timeout=12, session=session) as client:
        assert client.services() == []
    with OscarClient("http://oscar.invalid/", timeout=3, session=session) as client:
        client.services()
    assert [c["timeout"] for c in adapter.calls] == [(5.0, 12), (3, 3)]
    assert adapter.calls[0]["auth"] == f"Bearer {TOKEN}"


def test_a_token_from_a_source_is_asked_for_again_after_a_401(oscar: tuple[str, Fake]) -> None:
    url, fake = oscar
    given = iter(["stale-token-1", TOKEN, "never-asked"])
    asked: list[str] = []

    def source() -> str:
        asked.append(next(given))
        return asked[-1]

    with OscarClient(url, token_source=source, timeout=5) as client:
        assert client.services() == [{"name": "a"}]  # 401 with the stale token, then one more try
        assert client.services() == [{"name": "a"}]  # the fresh token is kept
    assert asked == ["stale-token-1", TOKEN]
    assert [auth for _, _, auth in fake.seen] == ["Bearer stale-token-1", f"Bearer {TOKEN}", f"Bearer {TOKEN}"]


def test_a_refreshed_token_refused_again_is_auth_refused(oscar: tuple[str, Fake]) -> None:
    url, fake = oscar
    with OscarClient(url, token_source=lambda: "always-stale", timeout=5) as client, pytest.raises(OSCARAuthRefused):
        client.services()
    assert len(fake.seen) == 2  # one refresh, never a loop


def test_invocations_carry_the_service_token_not_the_cluster_credentials(oscar: tuple[str, Fake]) -> None:
    url, fake = oscar
    with OscarClient(url, password=PASSWORD, timeout=5) as client:
        client.job_service("svc", b"aGVsbG8=", token=TOKEN)
        client.run_service("svc", b"aGVsbG8=", token=TOKEN)
        assert client.job_log("svc", "job-1").startswith("{")  # the fake answers every logs path alike
    assert [(m, p, a) for m, p, a in fake.seen] == [
        ("POST", "/job/svc", f"Bearer {TOKEN}"),
        ("POST", "/run/svc", f"Bearer {TOKEN}"),
        ("GET", "/system/logs/svc/job-1", "Basic " + base64.b64encode(f"oscar:{PASSWORD}".encode()).decode()),
    ]
