"""A tiny threaded reverse proxy on loopback that forwards every request to IM and counts it."""

from __future__ import annotations

import http.client
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27,}|/\d+(?=/|$)")


def kind(method: str, path: str) -> str:
    """``GET /infrastructures/<id>/state`` -> ``GET /infrastructures/*/state`` (ids and VM numbers folded)."""
    return f"{method} {_ID.sub('/*', urlsplit(path).path)}"


class CountingProxy:
    """Forwards to ``upstream`` (http://host:port); ``count``/``by_kind``/``connections`` (client connections
    accepted: a client that keeps its connection alive sends all its requests over one) since the last ``reset``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._kinds: Counter[str] = Counter()
        self._connections = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:  # once per accepted connection
                with proxy._lock:
                    proxy._connections += 1
                super().setup()

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy._kinds[kind(self.command, self.path)] += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self._kinds.clear()
            self._connections = 0

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._kinds.values())

    def by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._kinds)

    def polls(self) -> int:
        return self.by_kind().get("GET /infrastructures/*/state", 0)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
