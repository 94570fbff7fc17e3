"""A tiny stand-in for a Kubernetes API server on 127.0.0.1, for IM's Kubernetes connector.

It answers just what IM 2.0.0's connector asks while launching a "VM" (a Deployment): ``GET`` of the namespace
(200, so IM does not try to create it) and the ``POST`` of the Deployment, which it refuses the way a real
apiserver does when a ResourceQuota on object counts is exhausted (403 ``Status`` with ``exceeded quota: ...``).
Anything else gets a real-format 404 ``Status``. Every request is recorded (method, path, parsed JSON body).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``metav1.Status`` failure body, as the apiserver writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def quota_exceeded(name: str, quota: str = "object-counts", used: int = 4, limit: int = 4) -> dict[str, Any]:
    """The apiserver's ResourceQuota admission refusal of one more Deployment (quota on count/deployments.apps)."""
    resource = "count/deployments.apps"
    message = (
        f'deployments.apps "{name}" is forbidden: exceeded quota: {quota}, '
        f"requested: {resource}=1, used: {resource}={used}, limited: {resource}={limit}"
    )
    return status(403, "Forbidden", message, {"name": name, "group": "apps", "kind": "deployments"})


@dataclass
class Request:
    method: str
    path: str
    body: Any = None


@dataclass
class StubK8s:
    """``with StubK8s() as k8s: ...`` serves on ``k8s.url`` until the block ends."""

    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> StubK8s:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                stub.requests.append(Request(self.command, self.path, body))
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if self.command == "GET" and parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
                    namespace = {
                        "kind": "Namespace",
                        "apiVersion": "v1",
                        "metadata": {"name": parts[3]},
                        "status": {"phase": "Active"},
                    }
                    self._reply(200, namespace)
                elif self.command == "POST" and parts[:3] == ["apis", "apps", "v1"] and parts[-1] == "deployments":
                    name = str(((body or {}).get("metadata") or {}).get("name", "unnamed"))
                    self._reply(403, quota_exceeded(name))
                else:
                    kind = parts[-2] if len(parts) >= 2 else "unknown"
                    self._reply(404, status(404, "NotFound", f'{kind} "{parts[-1]}" not found', {"kind": kind}))

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="stub-k8s", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
