"""OSCAR cannot run here (it needs Kubernetes): a stand-in answering its two documented endpoints.

``GET /health`` answers ``Ok``; ``GET /system/config`` answers ``config`` (JSON) to a basic-auth request for
user ``oscar`` with the right password, 401 otherwise. Serves on a loopback address of the caller's choice
(``cluster verify`` looks for OSCAR on the edge front-end's NodePort 30301).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What OSCAR 4.x reports for a cluster installed by our roles with Knative, without YuniKorn.
GOOD_CONFIG: dict[str, Any] = {
    "minio_provider": {"endpoint": "http://minio.minio:9000", "verify": True},
    "name": "oscar",
    "namespace": "oscar",
    "serverless_backend": "knative",
    "yunikorn_enable": False,
}


@contextlib.contextmanager
def fake_oscar(
    address: str = "127.0.0.1", port: int = 0, *, config: Mapping[str, Any] | None = None, password: str | None = None
) -> Iterator[str]:
    """Serve until the block ends; yields the base URL (``http://address:port/``)."""
    body_config = json.dumps(dict(GOOD_CONFIG if config is None else config)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                body, code = b"Ok", 200
            elif self.path == "/system/config":
                given = self.headers.get("Authorization", "")
                if password is None:
                    authorized = given.startswith("Basic ")
                else:
                    authorized = given == "Basic " + base64.b64encode(f"oscar:{password}".encode()).decode()
                body, code = (body_config, 200) if authorized else (b"", 401)
            else:
                body, code = b"", 404
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
