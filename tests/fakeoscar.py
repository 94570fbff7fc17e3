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

# What OSCAR reports for a cluster installed by our roles with Knative, without YuniKorn: the shape of
# grycap/oscar's types.ConfigForUser (pkg/types/config.go): the server settings under "config" (serverless_backend
# is omitempty, yunikorn_enable a bool), the MinIO provider and the allowed image repositories beside it.
GOOD_CONFIG: dict[str, Any] = {
    "config": {
        "name": "oscar",
        "namespace": "oscar",
        "services_namespace": "oscar-svc",
        "gpu_available": False,
        "serverless_backend": "knative",
        "yunikorn_enable": False,
    },
    "minio_provider": {"endpoint": "http://minio.minio:9000", "verify": True, "region": "us-east-1"},
    "allowed_image_repositories": [],
}


def oscar_config(**settings: Any) -> dict[str, Any]:
    """GOOD_CONFIG with some server settings changed (None: the setting is left out, as omitempty does)."""
    inner = {**GOOD_CONFIG["config"], **settings}
    return {**GOOD_CONFIG, "config": {k: v for k, v in inner.items() if v is not None}}


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The same answer in the flat shape of OSCAR releases before ConfigForUser (settings at the top level)."""
    return {**config["config"], **{k: v for k, v in config.items() if k != "config"}}


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
