"""A fault-injecting HTTP proxy on loopback, between a client and the real IM.

Each incoming request takes the next planned fault (or forwards cleanly when none is planned):
``refuse`` closes the connection before answering, ``reset`` forwards to IM and then resets the
connection half-way through the response, ``delay:<s>`` waits before forwarding, ``status:<code>``
answers that status without forwarding, ``html:<code>`` answers that status with an HTML error page (a web
server's, with a traceback in it: :data:`HTML_PAGE`), ``garbage`` answers 200 with a body that is not JSON
(:data:`GARBAGE`). It records every request it saw and what it did with it, and counts the client connections it
accepted (a client that keeps its connection alive sends all its requests over one).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
HTML_TITLE = "500 Internal Server Error"
HTML_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head>\n<title>%s</title>\n</head>\n<body>\n<h1>Internal Server Error</h1>\n"
    "<p>The server encountered an internal error.</p>\n<pre>Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.11/site-packages/IM/rest/REST.py", line 412, in get_infrastructure\n'
    "    sel_inf = InfrastructureManager.get_infrastructure(infid, auth)\n"
    "KeyError: 'the server's own words'\n</pre>\n</body>\n</html>\n"
)
GARBAGE = "\x1b[31m<<< ~~ upstream sent something that is not JSON ~~ >>>\nand a second line of it\n"


@dataclass
class Seen:
    method: str
    path: str
    fault: str
    forwarded: bool
    answered: int | None = None  # the upstream's status, once it has answered the forwarded request


@dataclass
class FaultProxy:
    upstream: str
    plan: deque[str] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0  # TCP connections accepted from clients
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: int = 0  # requests being forwarded (a delayed one may still reach the upstream after its client left)
    _idle: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, *faults: str) -> None:
        with self._lock:
            self.plan.extend(faults)

    def _next(self) -> str:
        with self._lock:
            return self.plan.popleft() if self.plan else "pass"

    def wait_answered(self, method: str, timeout: float = 30.0) -> Seen:
        """The first forwarded ``method`` request, once the upstream has answered it (however late it was sent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((s for s in list(self.seen) if s.method == method and s.forwarded), None)
            if found is not None and found.answered is not None:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {method} answered by the upstream within {timeout} s (seen: {self.seen})")

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between them

            def log_message(self, *args: object) -> None:
                return

            def setup(self) -> None:  # once per accepted connection, however many requests it carries
                with proxy._lock:
                    proxy.connections += 1
                super().setup()

            def _handle(self) -> None:
                with proxy._idle:
                    proxy._in_flight += 1
                try:
                    self._handle_one()
                finally:
                    with proxy._idle:
                        proxy._in_flight -= 1
                        proxy._idle.notify_all()

            def _handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._next()
                forwarded = fault in ("pass", "reset") or fault.startswith("delay:")
                seen = Seen(self.command, self.path, fault, forwarded)
                proxy.seen.append(seen)
                if fault == "refuse":
                    self._abort()
                    return
                if fault.startswith("status:"):
                    code = int(fault.split(":", 1)[1])
                    payload = b'{"message": "injected by the fault proxy", "code": %d}' % code
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault.startswith("html:"):
                    code = int(fault.split(":", 1)[1])
                    self._answer(code, "text/html; charset=utf-8", (HTML_PAGE % HTML_TITLE).encode())
                    return
                if fault == "garbage":
                    self._answer(200, "text/plain", GARBAGE.encode())
                    return
                if fault.startswith("delay:"):
                    time.sleep(float(fault.split(":", 1)[1]))
                target = urlsplit(proxy.upstream)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                seen.answered = resp.status
                payload = resp.read()
                conn.close()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "reset":
                    self.wfile.write(payload[: max(1, len(payload) // 2)])
                    self.wfile.flush()
                    self._abort()
                    return
                self.wfile.write(payload)

            def _answer(self, code: int, content_type: str, payload: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _abort(self) -> None:
                # SO_LINGER 0: close with a TCP reset, as a crashed peer or a broken proxy would.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle
            do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting, after the requests in flight are through: a delayed request still reaches the upstream
        inside the test that planned it, never during the next one."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=60)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
