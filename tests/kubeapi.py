"""A stand-in Kubernetes API server over TLS on a loopback address, with its own generated CA (``cryptography``).

It answers ``GET /api/v1/pods`` and ``GET /api/v1/nodes`` with the lists it is given, as the apiserver does, and
refuses (401, a real-format ``Status``) a request without the expected bearer token. ``body`` replaces every answer
with raw bytes (e.g. an HTML page from a misconfigured proxy). Every request's path and Authorization header are
recorded.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def make_ca(name: str = "kubernetes") -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return CA(cert, key)


def issue(ca: CA, *, ips: list[str], names: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A server certificate (PEM) and its key (PEM) for these IP addresses and DNS names, signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    alt += [x509.DNSName(name) for name in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def unauthorized() -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


@dataclass
class FakeAPIServer:
    """``with FakeAPIServer(address, ca, ...) as api:`` serves HTTPS on ``api.address:api.port``."""

    address: str
    ca: CA
    token: str
    pods: dict[str, Any] = field(default_factory=lambda: {"kind": "PodList", "items": []})
    nodes: dict[str, Any] = field(default_factory=lambda: {"kind": "NodeList", "items": []})
    cert_ips: list[str] | None = None  # the addresses the certificate names (default: ``address``)
    body: bytes | None = None  # answer this (200, text/html) to everything instead
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def __enter__(self) -> FakeAPIServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, data: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                api.seen.append((self.path, auth))
                if api.body is not None:
                    self._reply(200, api.body, "text/html")
                elif auth != f"Bearer {api.token}":
                    self._reply(401, json.dumps(unauthorized()).encode())
                elif self.path.split("?")[0] == "/api/v1/pods":
                    self._reply(200, json.dumps(api.pods).encode())
                elif self.path.split("?")[0] == "/api/v1/nodes":
                    self._reply(200, json.dumps(api.nodes).encode())
                else:
                    self._reply(404, b'{"kind":"Status","code":404}')

        cert_pem, key_pem = issue(self.ca, ips=self.cert_ips or [self.address])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "cert.pem").write_bytes(cert_pem)
            (Path(tmp) / "key.pem").write_bytes(key_pem)
            context.load_cert_chain(str(Path(tmp) / "cert.pem"), str(Path(tmp) / "key.pem"))
        self._server = ThreadingHTTPServer((self.address, 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def kubeconfig(server: str, ca_pem: bytes, token: str) -> str:
    """A kubeconfig as kubeadm/K3s write it (inline CA, one context), with a bearer token."""
    import base64

    import yaml

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubernetes",
                    "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
                }
            ],
            "contexts": [{"name": "admin@kubernetes", "context": {"cluster": "kubernetes", "user": "admin"}}],
            "current-context": "admin@kubernetes",
            "users": [{"name": "admin", "user": {"token": token}}],
        }
    )
