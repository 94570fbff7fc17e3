"""A stand-in for one OSCAR cluster (OSCAR needs Kubernetes, which cannot run here), for the tests and the demo.

It answers OSCAR v4.1's REST API in OSCAR's own shapes (``pkg/handlers``, ``pkg/types``): ``/health``,
``/system/info``, ``/system/config`` (with ``minio_provider``), ``/system/services`` (POST 201 / PUT / GET /
DELETE 204), ``/system/logs/<service>`` (paginated with ``next_page``), ``/system/logs/<service>/<job>``,
``/job/<service>`` (asynchronous, what MinIO's webhook calls) and ``/run/<service>`` (synchronous, base64 in and
out). It is stricter than OSCAR in one way on purpose: a service definition with a field OSCAR v4.1 does not
have (Go's JSON reader would drop it without a word) is refused with 400, so a client that sends one is caught.

Its MinIO is a real S3 server (moto's, on loopback) reached with boto3. OSCAR registers a MinIO webhook for each
input of a service; moto cannot call webhooks, so the stand-in watches each input prefix instead (every
``poll`` seconds) and makes one job per new object, as the webhook would. A job runs the service's script as a
subprocess the way OSCAR's supervisor runs it in the job's container: the object downloaded to
``INPUT_FILE_PATH``, an empty ``TMP_OUTPUT_DIR``, the service's environment variables; then every file the script
wrote there is uploaded to each output (the cluster's own MinIO, or another provider named in the service's
``storage_providers`` with the credentials the client filled in). The container image is not run: the script
runs on this machine, under ``sh``.

Run it alone: ``python -m standin.oscar --port 8080 --password PW --minio http://127.0.0.1:5000``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.client import BaseClient
from botocore.config import Config

# OSCAR v4.1 types.Service's JSON fields (pkg/types/service.go), and those of the types inside it.
SERVICE_FIELDS = {
    "name", "cluster_id", "memory", "cpu", "total_memory", "total_cpu", "ephemeral_storage_request", "enable_gpu",
    "enable_sgx", "image_prefetch", "synchronous", "federation", "log_level", "image", "alpine", "token",
    "file_stage_in", "input", "output", "script", "image_pull_secrets", "expose", "environment", "annotations", "vo",
    "labels", "storage_providers", "clusters", "owner", "interlink_node_name", "visibility", "allowed_users",
    "isolation_level", "bucket_list", "mount", "volume", "kserve",
}  # fmt: skip
NESTED_FIELDS: dict[str, set[str]] = {
    "synchronous": {"min_scale", "max_scale"},
    "federation": {"group_id", "topology", "delegation", "rescheduler_threshold", "members"},
    "expose": {
        "min_scale", "max_scale", "api_port", "cpu_threshold", "rewrite_target", "nodePort", "default_command",
        "set_auth", "auth_type", "health_path", "probe_mode",
    },
    "environment": {"variables", "secrets"},
    "volume": {"name", "size", "mount_path", "lifecycle_policy"},
    "mount": {"storage_provider", "path", "suffix", "prefix", "options"},
}  # fmt: skip
IO_FIELDS = {"storage_provider", "path", "suffix", "prefix", "options"}
PROVIDER_FIELDS = {
    "minio": {"endpoint", "verify", "access_key", "secret_key", "region"},
    "s3": {"access_key", "secret_key", "region"},
    "onedata": {"oneprovider_host", "token", "space"},
    "webdav": {"hostname", "login", "password"},
    "rucio": {"host", "account", "rse", "refresh_token", "auth_host", "oidc_audience", "token_endpoint"},
}
CLUSTER_FIELDS = {"endpoint", "auth_user", "auth_password", "ssl_verify"}
STRING_FIELDS = {"name", "image", "script", "memory", "cpu", "log_level", "visibility", "isolation_level", "vo"}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_definition(body: object) -> dict[str, Any]:
    """A service definition as OSCAR v4.1 would bind it, refusing what it would not (and unknown fields)."""
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    unknown = sorted(set(body) - SERVICE_FIELDS)
    if unknown:
        raise Refused(400, f"unknown field(s) for OSCAR v4.1's service: {', '.join(unknown)}")
    for key, allowed in NESTED_FIELDS.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise Refused(400, f"{key} must be an object")
        extra = sorted(set(value) - allowed)
        if extra:
            raise Refused(400, f"unknown field(s) in {key}: {', '.join(extra)}")
    for key in STRING_FIELDS:
        if key in body and not isinstance(body[key], str):
            raise Refused(400, f"json: cannot unmarshal {type(body[key]).__name__} into Go struct field {key} string")
    for direction in ("input", "output"):
        for entry in body.get(direction) or []:
            if not isinstance(entry, dict) or set(entry) - IO_FIELDS or not entry.get("path"):
                raise Refused(400, f"{direction}: each entry is {{storage_provider, path, suffix, prefix}}")
    providers = body.get("storage_providers") or {}
    if not isinstance(providers, dict):
        raise Refused(400, "storage_providers must be an object")
    for kind, entries in providers.items():
        if kind not in PROVIDER_FIELDS or not isinstance(entries, dict):
            raise Refused(400, f"storage_providers: unknown provider type {kind}")
        for ident, settings in entries.items():
            if not isinstance(settings, dict) or set(settings) - PROVIDER_FIELDS[kind]:
                raise Refused(400, f"storage_providers.{kind}.{ident}: unknown field(s)")
    for ident, cluster in (body.get("clusters") or {}).items():
        if not isinstance(cluster, dict) or set(cluster) - CLUSTER_FIELDS:
            raise Refused(400, f"clusters.{ident}: unknown field(s)")
    for key in ("name", "image", "script"):  # binding:"required"
        if not body.get(key):
            raise Refused(400, f"Key: 'Service.{key.capitalize()}' Error:Field validation for '{key}' failed")
    if len(body["name"]) > 39:
        raise Refused(400, "Key: 'Service.Name' Error:Field validation for 'Name' failed on the 'max' tag")
    return dict(body)


@dataclass(frozen=True)
class MinioAccess:
    endpoint: str
    access_key: str = "minio"
    secret_key: str = "minio-secret"  # noqa: S105 - moto takes any credentials
    region: str = "us-east-1"

    def client(self) -> BaseClient:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}),
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Job:
    name: str
    service: str
    bucket: str
    key: str
    status: str = "Pending"
    creation_time: str = field(default_factory=_now)
    start_time: str | None = None
    finish_time: str | None = None
    log: str = ""
    outputs: list[str] = field(default_factory=list)  # "provider:bucket/key" written
    data: bytes | None = None  # the input itself, for a job posted to /job/<service> with a body that is no S3 event

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "creation_time": self.creation_time}
        if self.start_time:
            out["start_time"] = self.start_time
        if self.finish_time:
            out["finish_time"] = self.finish_time
        return out


class StandInOscar:
    """One stand-in OSCAR cluster: its services, their jobs, and its MinIO (an S3 server given by endpoint)."""

    def __init__(
        self,
        *,
        password: str,
        minio: MinioAccess,
        address: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 70,
        poll: float = 0.1,
        name: str = "oscar",
        script_timeout: float = 60.0,
        oidc_tokens: frozenset[str] = frozenset(),
        aws_endpoint: str | None = None,
    ) -> None:
        self.aws_endpoint = aws_endpoint  # where s3.<id> outputs go (AWS itself when None: boto3's resolution)
        self.password = password
        self.oidc_tokens = set(oidc_tokens)  # bearer tokens taken as a logged-in OIDC user's
        self.minio = minio
        self.address = address
        self.port = port
        self.page_size = page_size
        self.poll = poll
        self.name = name
        self.script_timeout = script_timeout
        self.services: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Job]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        # (service, bucket/prefix) -> key -> (ETag, LastModified) of the version already taken: a new object, or an
        # object written again, makes a job (MinIO notifies every PUT).
        self._seen: dict[tuple[str, str], dict[str, tuple[str, float]]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._s3 = minio.client()

    # --- life -----------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> StandInOscar:
        self._stop.clear()
        server = ThreadingHTTPServer((self.address, self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        watching = threading.Thread(target=self._watch, daemon=True)
        self._threads = [serving, watching]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (the port is closed; :meth:`start` again serves the same services on it)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> StandInOscar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def writes(self) -> list[tuple[str, str]]:
        """The requests that change something (POST, PUT, DELETE) on /system/services."""
        return [(m, p) for m, p in self.requests if m in ("POST", "PUT", "DELETE") and p.startswith("/system/services")]

    # --- services -------------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "config": {
                "name": self.name,
                "namespace": "oscar",
                "services_namespace": "oscar-svc",
                "gpu_available": False,
                "serverless_backend": "knative",
                "yunikorn_enable": False,
            },
            "minio_provider": {
                "endpoint": self.minio.endpoint,
                "verify": False,
                "access_key": self.minio.access_key,
                "secret_key": self.minio.secret_key,
                "region": self.minio.region,
            },
            "allowed_image_repositories": [],
        }

    def create(self, body: object) -> None:
        definition = check_definition(body)
        with self._lock:
            if definition["name"] in self.services:
                raise Refused(409, f"service {definition['name']!r} already exists")
            definition["token"] = secrets.token_hex(32)
            definition["owner"] = "cluster_admin"
            self._set(definition)

    def update(self, body: object) -> None:
        definition = check_definition(body)
        with self._lock:
            current = self.services.get(definition["name"])
            if current is None:
                raise Refused(404, f"service {definition['name']!r} not found")
            definition["token"] = current["token"]  # kept: a new token would break the bucket's webhook
            definition["owner"] = current.get("owner", "cluster_admin")
            self._set(definition)

    def delete(self, name: str) -> None:
        with self._lock:
            if self.services.pop(name, None) is None:
                raise Refused(404, f"service {name!r} not found")
            self._seen = {k: v for k, v in self._seen.items() if k[0] != name}

    def _set(self, definition: dict[str, Any]) -> None:
        """Store ``definition``; make its own-MinIO buckets, and watch its inputs from now on (as the webhook)."""
        for direction in ("input", "output"):
            for entry in definition.get(direction) or []:
                if entry.get("storage_provider", "minio") in ("minio", "minio.default"):
                    self._ensure_bucket(str(entry["path"]).strip("/").split("/", 1)[0])
        self.services[definition["name"]] = definition
        self.jobs.setdefault(definition["name"], {})
        for entry in _own_inputs(definition):
            where = (definition["name"], entry)
            if where not in self._seen:
                self._seen[where] = self._list(*_split(entry))

    def _ensure_bucket(self, bucket: str) -> None:
        with contextlib.suppress(self._s3.exceptions.BucketAlreadyOwnedByYou, self._s3.exceptions.BucketAlreadyExists):
            self._s3.create_bucket(Bucket=bucket)

    def _list(self, bucket: str, prefix: str) -> dict[str, tuple[str, float]]:
        """key -> (ETag, LastModified) of every object under ``prefix``."""
        keys: dict[str, tuple[str, float]] = {}
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
            )
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        keys[item["Key"]] = (str(item.get("ETag")), item["LastModified"].timestamp())
        except self._s3.exceptions.NoSuchBucket:
            return {}
        return keys

    # --- jobs -----------------------------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            with self._lock:
                watched = [(service, entry) for (service, entry) in self._seen]
            for service, entry in watched:
                try:
                    keys = self._list(*_split(entry))
                except Exception:  # noqa: BLE001, S112 - the S3 server went away: look again next time
                    continue
                with self._lock:
                    seen = self._seen.get((service, entry))
                    if seen is None:
                        continue
                    new = [key for key, version in keys.items() if seen.get(key) != version]
                    seen.update({key: keys[key] for key in new})
                for key in new:
                    self.submit(service, _split(entry)[0], key)

    def submit(self, service: str, bucket: str, key: str, data: bytes | None = None) -> Job:
        job = Job(name=f"{service}-{uuid.uuid4().hex[:12]}", service=service, bucket=bucket, key=key, data=data)
        with self._lock:
            self.jobs.setdefault(service, {})[job.name] = job
        threading.Thread(target=self._run_job, args=(job,), daemon=True).start()
        return job

    def _run_job(self, job: Job) -> None:
        with self._lock:
            definition = dict(self.services.get(job.service) or {})
        if not definition:
            job.status, job.log = "Failed", "the service was deleted"
            return
        job.status, job.start_time = "Running", _now()
        work = Path(tempfile.mkdtemp(prefix="standin-job-"))
        try:
            infile = work / "input" / Path(job.key).name
            infile.parent.mkdir()
            if job.data is not None:
                infile.write_bytes(job.data)
            else:
                self._s3.download_file(job.bucket, job.key, str(infile))
            code, log, outdir = self._script(definition, infile, work)
            job.log = log
            if code != 0:
                job.status = "Failed"
                return
            job.outputs = self._upload(definition, outdir)
            job.status = "Succeeded"
        except Exception as exc:  # noqa: BLE001 - a job that breaks is a failed job, with the reason in its log
            job.log += f"\nstand-in: {type(exc).__name__}: {exc}"
            job.status = "Failed"
        finally:
            job.finish_time = _now()
            shutil.rmtree(work, ignore_errors=True)

    def _script(self, definition: Mapping[str, Any], infile: Path, work: Path) -> tuple[int, str, Path]:
        outdir = work / "output"
        outdir.mkdir(exist_ok=True)
        script = work / "script.sh"
        script.write_text(str(definition.get("script", "")))
        env_vars = (definition.get("environment") or {}).get("variables") or {}
        secrets_ = (definition.get("environment") or {}).get("secrets") or {}
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(work),
            **{str(k): str(v) for k, v in {**env_vars, **secrets_}.items()},
            "INPUT_FILE_PATH": str(infile),
            "TMP_OUTPUT_DIR": str(outdir),
            "OSCAR_SERVICE_NAME": str(definition["name"]),
        }
        try:
            done = subprocess.run(
                ["sh", str(script)],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=self.script_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 124, f"the script ran longer than {self.script_timeout:g} s", outdir
        return done.returncode, done.stdout + done.stderr, outdir

    def _upload(self, definition: Mapping[str, Any], outdir: Path) -> list[str]:
        written: list[str] = []
        files = sorted(p for p in outdir.rglob("*") if p.is_file())
        for entry in definition.get("output") or []:
            client = self._client_for(definition, str(entry.get("storage_provider", "minio")))
            bucket, prefix = _split(str(entry["path"]).strip("/"))
            for path in files:
                rel = path.relative_to(outdir).as_posix()
                if entry.get("suffix") and not any(rel.endswith(s) for s in entry["suffix"]):
                    continue
                if entry.get("prefix") and not any(path.name.startswith(p) for p in entry["prefix"]):
                    continue
                key = f"{prefix}/{rel}" if prefix else rel
                client.upload_file(str(path), bucket, key)
                written.append(f"{entry.get('storage_provider', 'minio')}:{bucket}/{key}")
        return written

    def _client_for(self, definition: Mapping[str, Any], provider: str) -> BaseClient:
        if provider in ("minio", "minio.default"):
            return self._s3
        kind, _, ident = provider.partition(".")
        settings = ((definition.get("storage_providers") or {}).get(kind) or {}).get(ident)
        if kind == "s3" and settings is not None:
            return boto3.client(
                "s3",
                endpoint_url=self.aws_endpoint,
                aws_access_key_id=str(settings.get("access_key") or "") or None,
                aws_secret_access_key=str(settings.get("secret_key") or "") or None,
                region_name=str(settings.get("region") or "us-east-1"),
                config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}),
            )
        if kind != "minio" or not settings:
            raise RuntimeError(f"output provider {provider}: no credentials in the service's storage_providers")
        return MinioAccess(
            endpoint=str(settings["endpoint"]),
            access_key=str(settings.get("access_key", "")),
            secret_key=str(settings.get("secret_key", "")),
            region=str(settings.get("region") or "us-east-1"),
        ).client()

    def run_sync(self, name: str, body: bytes) -> bytes:
        """``/run/<service>``: the body (base64) is the input file; the answer is the output file (base64)."""
        with self._lock:
            definition = dict(self.services.get(name) or {})
        if not definition:
            raise Refused(404, f"service {name!r} not found")
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error:
            data = body
        work = Path(tempfile.mkdtemp(prefix="standin-run-"))
        try:
            infile = work / "input" / "input"
            infile.parent.mkdir()
            infile.write_bytes(data)
            code, log, outdir = self._script(definition, infile, work)
            if code != 0:
                raise Refused(500, f"the script exited {code}: {log[-500:]}")
            files = sorted(p for p in outdir.rglob("*") if p.is_file())
            answer = files[0].read_bytes() if files else log.encode()
            return base64.b64encode(answer)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _own_inputs(definition: Mapping[str, Any]) -> list[str]:
    return [
        str(entry["path"]).strip("/")
        for entry in definition.get("input") or []
        if entry.get("storage_provider", "minio") in ("minio", "minio.default")
    ]


def _split(path: str) -> tuple[str, str]:
    bucket, _, prefix = path.strip("/").partition("/")
    return bucket, prefix.strip("/")


def _handler(oscar: StandInOscar) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as Go's HTTP server (OSCAR's): no 40 ms wait for a body's delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: object = None, *, raw: bytes | None = None) -> None:
            data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if raw is None else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authorized(self, path: str) -> bool:
            given = self.headers.get("Authorization", "")
            if given.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(given[6:]).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    return False
                return user == "oscar" and secrets.compare_digest(password, oscar.password)
            if given.startswith("Bearer ") and given[7:] in oscar.oidc_tokens:
                return True
            if given.startswith("Bearer ") and path.startswith(("/job/", "/run/")):
                service = unquote(path.split("/")[2])
                token = oscar.services.get(service, {}).get("token", "")
                return bool(token) and secrets.compare_digest(given[7:], token)
            return False

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            oscar.requests.append((method, path))
            body = self._body()
            if path == "/health" and method == "GET":
                self._send(200, raw=b"Ok")
                return
            if not self._authorized(path):
                self._send(401, {"error": "unauthorized"})
                return
            try:
                self._dispatch(method, path, parse_qs(parts.query), body)
            except Refused as exc:
                self._send(exc.status, raw=str(exc).encode())

        def _dispatch(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
            segments = [unquote(s) for s in path.strip("/").split("/")]
            if path == "/system/info" and method == "GET":
                self._send(200, {"version": "v4.1.2-standin", "git_commit": "standin", "architecture": "amd64"})
            elif path == "/system/config" and method == "GET":
                self._send(200, oscar.config())
            elif path == "/system/services" and method == "GET":
                with oscar._lock:
                    self._send(200, list(oscar.services.values()))
            elif path == "/system/services" and method in ("POST", "PUT"):
                try:
                    parsed = json.loads(body or b"null")
                except ValueError:
                    raise Refused(400, "the body is not JSON") from None
                if method == "POST":
                    oscar.create(parsed)
                    self._send(201)
                else:
                    oscar.update(parsed)
                    self._send(204)
            elif segments[:2] == ["system", "services"] and len(segments) == 3:
                if method == "GET":
                    service = oscar.services.get(segments[2])
                    if service is None:
                        raise Refused(404, "service not found")
                    self._send(200, service)
                elif method == "DELETE":
                    oscar.delete(segments[2])
                    self._send(204)
                else:
                    raise Refused(405, "method not allowed")
            elif segments[:2] == ["system", "logs"] and len(segments) == 3 and method == "GET":
                self._send(200, self._jobs_page(segments[2], query))
            elif segments[:2] == ["system", "logs"] and len(segments) == 4 and method == "GET":
                job = oscar.jobs.get(segments[2], {}).get(segments[3])
                if job is None:
                    raise Refused(404, "job not found")
                self._send(200, raw=job.log.encode())
            elif len(segments) == 2 and segments[0] == "job" and method == "POST":
                if segments[1] not in oscar.services:
                    raise Refused(404, "service not found")
                try:
                    event = json.loads(body or b"{}")
                except ValueError:
                    event = None
                records = event.get("Records") if isinstance(event, dict) else None
                record = (records or [{}])[0].get("s3", {}) if isinstance(records, list) else {}
                bucket, key = record.get("bucket", {}).get("name"), record.get("object", {}).get("key")
                if bucket and key:
                    oscar.submit(segments[1], bucket, unquote(key))
                else:  # not a MinIO event: the body is the input (base64, as the supervisor reads it)
                    try:
                        data = base64.b64decode(body, validate=True)
                    except binascii.Error:
                        data = body
                    oscar.submit(segments[1], "", "event", data=data)
                self._send(201)
            elif len(segments) == 2 and segments[0] == "run" and method == "POST":
                self._send(200, raw=oscar.run_sync(segments[1], body))
            else:
                raise Refused(404, f"{method} {path}: no such route")

        def _jobs_page(self, service: str, query: dict[str, list[str]]) -> dict[str, Any]:
            if service not in oscar.services:
                raise Refused(404, "service not found")
            with oscar._lock:
                jobs = list(oscar.jobs.get(service, {}).values())
            start = int((query.get("page") or ["0"])[0] or 0)
            page = jobs[start : start + oscar.page_size]
            answer: dict[str, Any] = {"jobs": {job.name: job.info() for job in page}}
            rest = len(jobs) - start - len(page)
            if rest > 0:
                answer["next_page"] = str(start + len(page))
                answer["remaining_jobs"] = rest
            return answer

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


@contextlib.contextmanager
def moto_server(
    address: str = "127.0.0.1",
    *,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    """moto's server (every AWS API on one port) in a process of its own on a free loopback port, each one a
    separate store; ``env``: its environment (else this process's); ``log``: where its output goes (else none)."""
    import socket
    import sys

    import requests

    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "moto.server", "-H", address, "-p", str(port)],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
    )
    url = f"http://{address}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/moto-api/", timeout=1)
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not isinstance(output, int):
            output.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in OSCAR cluster over an S3 server (moto).")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--minio", help="the S3 endpoint standing in for the cluster's MinIO")
    where.add_argument("--with-moto", action="store_true", help="start a moto S3 server of its own as its MinIO")
    parser.add_argument("--name", default="oscar")
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        minio = stack.enter_context(moto_server(args.address)) if args.with_moto else args.minio
        oscar = StandInOscar(
            password=args.password, minio=MinioAccess(minio), address=args.address, port=args.port, name=args.name
        ).start()
        stack.callback(oscar.stop)
        if args.ready_file:
            args.ready_file.write_text(oscar.url + "\n")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stopped.wait(0.5):
                pass


if __name__ == "__main__":
    main()
