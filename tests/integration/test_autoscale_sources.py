"""The autoscaler's signal sources against real servers on loopback.

* Kubernetes: the kubeconfig is fetched from a real sshd (the front-end, a plain one of this module's own), and the
  API server -- a TLS server with a generated CA on another loopback address -- is asked through an SSH tunnel from
  that front-end, its certificate checked against the kubeconfig's CA and host. The front-end's sshd log proves the
  tunnel was used (and the certificate names 127.0.0.20 while the client connects to the tunnel's 127.0.0.1).
* OSCAR: a fake OSCAR over HTTP that pages its job lists as OSCAR does (``next_page``, ``?page=``).
"""

from __future__ import annotations

import base64
import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from provisioner.ansible import inventory as inv_mod
from provisioner.ansible import ssh
from provisioner.autoscale.signals import (
    KubernetesSource,
    OscarSource,
    Reading,
    SourceContext,
    SourceError,
    kube_cache_path,
)
from provisioner.im.models import VMInfo
from tests.conftest import lab_address, only_loopback
from tests.kubeapi import CA, FakeAPIServer, kubeconfig, make_ca
from tests.sshd import SSHHost, free_port, keygen, sshd_available

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
FRONT_ADDRESS = lab_address(30)  # this module's front-end (sshd), on this xdist worker's addresses
API_ADDRESS = "127.0.0.20"  # the API server, as the front-end sees it
TOKEN = "kube-admin-token-0123456789"


# --- Kubernetes, through the front-end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHHost]:
    """A front-end: sshd on its own loopback address, logging forwarded connections (DEBUG1)."""
    if not only_loopback():
        pytest.fail("SSH tests run in the loopback-only namespace: use `make test`", pytrace=False)
    if not sshd_available():
        pytest.fail("Debian's openssh-server is needed (as root): run .ci/system-deps", pytrace=False)
    base = tmp_path_factory.mktemp("kube-front")
    key = keygen(base / "client_key")
    host = SSHHost("kfront", FRONT_ADDRESS, 22, base / "kfront", key, log_level="DEBUG1").start()
    yield host
    host.stop()


class LabFront:
    """The front-end as a :class:`~provisioner.autoscale.signals.FrontEnd` (what ``Stack`` gives in use)."""

    def __init__(self, front: SSHHost, home: Path) -> None:
        self.home = home
        self.front = front

    def build_inventory(self, name: str) -> inv_mod.Inventory:
        host = inv_mod.Host("fe", "front", self.front.address, user=self.front.user, key_file=self.front.client_key)
        return inv_mod.Inventory(name, (host,))

    def pins(self, name: str) -> ssh.HostKeyPins:
        return ssh.HostKeyPins(self.home, name)


def node(name: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
PODS = {
    "kind": "PodList",
    "items": [
        {
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"nodeName": "wn-1"},
            "status": {"phase": "Running"},
        },
        {
            "metadata": {"namespace": "oscar-svc", "name": "job", "labels": {"oscar_service": "s", "job-name": "s-1"}},
            "spec": {},
            "status": {"phase": "Pending", "conditions": [UNSCHEDULABLE]},
        },
        {
            "metadata": {"namespace": "default", "name": "big"},
            "spec": {},
            "status": {"phase": "Pending", "conditions": [UNSCHEDULABLE]},
        },
    ],
}  # fmt: skip
NODES = {"kind": "NodeList", "items": [node("wn-1", "10.9.0.1"), node("wn-2", "10.9.0.2")]}
WORKERS = [VMInfo("1", "configured", "wn", ["10.9.0.1"], [], {}), VMInfo("2", "configured", "wn", ["10.9.0.2"], [], {})]


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_ca()


@pytest.fixture
def front_dir(tmp_path: Path) -> Path:
    """Where the "front-end" keeps its kubeconfig (the lab's sshd runs on this machine)."""
    path = tmp_path / "front-fs"
    path.mkdir()
    return path


def context(cluster: str = "lab") -> SourceContext:
    return SourceContext(cluster=cluster, workers=WORKERS, now=NOW, idle_since={})


def source(front: SSHHost, home: Path, front_dir: Path, **kwargs: Any) -> KubernetesSource:
    paths = (str(front_dir / "admin.conf"), str(front_dir / "k3s.yaml"))  # kubeadm's missing, K3s' present
    return KubernetesSource(LabFront(front, home), timeout=10, paths=paths, **kwargs)


@pytest.fixture
def api(ca: CA) -> Iterator[FakeAPIServer]:
    with FakeAPIServer(API_ADDRESS, ca, TOKEN, pods=PODS, nodes=NODES) as server:
        yield server


def test_reads_the_api_server_through_an_ssh_tunnel_from_the_front_end(
    front: SSHHost, tmp_path: Path, front_dir: Path, ca: CA, api: FakeAPIServer
) -> None:
    home = tmp_path / "home"
    (front_dir / "k3s.yaml").write_text(kubeconfig(api.url, ca.pem, TOKEN))
    log = front.directory / "sshd.log"
    before = len(log.read_text(errors="replace"))

    reading = source(front, home, front_dir).read(context())

    assert reading == Reading(
        pending_pods=2, oscar_job_pods=1, idle_since={"2": NOW.isoformat()}, waiting_jobs=None
    )  # wn-1 runs "web"; wn-2 runs nothing: idle
    assert [path for path, _ in api.seen] == ["/api/v1/pods", "/api/v1/nodes"]
    assert all(auth == f"Bearer {TOKEN}" for _, auth in api.seen)
    # The front-end's sshd carried the connection to the API server (a direct-tcpip channel).
    forwarded = log.read_text(errors="replace")[before:]
    assert f"target {API_ADDRESS} port {api.port}" in forwarded, forwarded
    # The kubeconfig is cached, private; the front-end's host key is pinned.
    cache = kube_cache_path(home, "lab")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and TOKEN in cache.read_text()
    assert front.address in ssh.HostKeyPins(home, "lab").path.read_text()


def test_a_certificate_from_another_ca_is_refused(
    front: SSHHost, tmp_path: Path, front_dir: Path, api: FakeAPIServer
) -> None:
    other = make_ca("someone-else")
    (front_dir / "k3s.yaml").write_text(kubeconfig(api.url, other.pem, TOKEN))
    with pytest.raises(SourceError) as err:
        source(front, tmp_path / "home", front_dir).read(context())
    message = str(err.value)
    assert message.startswith(f"kubernetes: TLS with the API server {api.url} failed")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert not [path for path, _ in api.seen]  # nothing was sent to it
    # --insecure (verify=False) reads it anyway, as it does for IM.
    reading = source(front, tmp_path / "home", front_dir, verify=False).read(context())
    assert reading.pending_pods == 2


def test_the_certificate_must_name_the_kubeconfigs_server(
    front: SSHHost, tmp_path: Path, front_dir: Path, ca: CA
) -> None:
    # Right CA, but the certificate is for another address than the kubeconfig's server.
    with FakeAPIServer(API_ADDRESS, ca, TOKEN, cert_ips=["127.0.0.21"]) as api:
        (front_dir / "k3s.yaml").write_text(kubeconfig(api.url, ca.pem, TOKEN))
        with pytest.raises(SourceError) as err:
            source(front, tmp_path / "home", front_dir).read(context())
    assert f"TLS with the API server {api.url} failed" in str(err.value)
    assert str(err.value).endswith("failed: hostname '127.0.0.20' doesn't match '127.0.0.21'")


def test_a_stale_cached_kubeconfig_is_fetched_again_once(
    front: SSHHost, tmp_path: Path, front_dir: Path, ca: CA, api: FakeAPIServer
) -> None:
    home = tmp_path / "home"
    cache = kube_cache_path(home, "lab")
    cache.parent.mkdir(parents=True)
    cache.write_text(kubeconfig(api.url, ca.pem, "an-old-token"))  # rotated since
    (front_dir / "k3s.yaml").write_text(kubeconfig(api.url, ca.pem, TOKEN))
    reading = source(front, home, front_dir).read(context())
    assert reading.pending_pods == 2
    assert [auth for _, auth in api.seen] == ["Bearer an-old-token", f"Bearer {TOKEN}", f"Bearer {TOKEN}"]
    assert TOKEN in cache.read_text()
    # A fresh kubeconfig that is refused too is reported, not fetched again and again.
    (front_dir / "k3s.yaml").write_text(kubeconfig(api.url, ca.pem, "wrong-as-well"))
    cache.unlink()
    with pytest.raises(SourceError, match=r"/api/v1/pods answered 401"):
        source(front, home, front_dir).read(context())


def test_an_answer_that_is_not_json_is_a_source_error(front: SSHHost, tmp_path: Path, front_dir: Path, ca: CA) -> None:
    with FakeAPIServer(API_ADDRESS, ca, TOKEN, body=b"<html>502 Bad Gateway</html>") as api:
        (front_dir / "k3s.yaml").write_text(kubeconfig(api.url, ca.pem, TOKEN))
        with pytest.raises(SourceError) as err:
            source(front, tmp_path / "home", front_dir).read(context())
    assert str(err.value) == f"kubernetes: {api.url}/api/v1/pods answered something that is not JSON (text/html)"


def test_an_api_server_the_front_end_cannot_reach_is_named(
    front: SSHHost, tmp_path: Path, front_dir: Path, ca: CA
) -> None:
    closed = f"https://{API_ADDRESS}:{free_port(API_ADDRESS)}"
    (front_dir / "k3s.yaml").write_text(kubeconfig(closed, ca.pem, TOKEN))
    with pytest.raises(SourceError) as err:
        source(front, tmp_path / "home", front_dir).read(context())
    message = str(err.value)
    assert message.startswith(f"kubernetes: the API server {closed} (through the front-end) does not answer")
    assert f"the front-end cannot connect to {closed.removeprefix('https://')}" in message


def test_no_kubeconfig_on_the_front_end(front: SSHHost, tmp_path: Path, front_dir: Path) -> None:
    with pytest.raises(SourceError) as err:
        source(front, tmp_path / "home", front_dir).read(context())
    assert str(err.value).startswith(f"kubernetes: no kubeconfig on the front-end {front.user}@{front.address}")
    assert "admin.conf" in str(err.value) and "k3s.yaml" in str(err.value)


def test_an_unreadable_kubeconfig_says_why(front: SSHHost, tmp_path: Path, front_dir: Path) -> None:
    # The tests' sshd user is root, who reads any file: a directory in the kubeconfig's place is refused instead
    # (the permission-denied + sudo -n path is tested with a fake shell in tests/unit/test_autoscale_signals.py).
    (front_dir / "k3s.yaml").mkdir()
    with pytest.raises(SourceError) as err:
        source(front, tmp_path / "home", front_dir).read(context())
    message = str(err.value)
    assert "cannot read the kubeconfig on the front-end" in message and "Is a directory" in message
    assert "with sudo -n:" in message


def test_a_changed_front_end_host_key_is_a_source_error(front: SSHHost, tmp_path: Path, front_dir: Path) -> None:
    home = tmp_path / "home"
    pins = ssh.HostKeyPins(home, "lab")
    pins.path.parent.mkdir(parents=True)
    other = keygen(tmp_path / "other_host_key").with_suffix(".pub").read_text().split()
    pins.path.write_text(f"{front.address} {other[0]} {other[1]}\n")  # someone else's key, pinned
    with pytest.raises(SourceError, match=r"host key of .* changed"):
        source(front, home, front_dir).read(context())


# --- OSCAR --------------------------------------------------------------------------------------------------------


class FakeOscar:
    """OSCAR's ``/system/services`` and paged ``/system/logs/<service>`` (``JOB_LISTING_LIMIT`` jobs a page)."""

    def __init__(self, jobs: dict[str, dict[str, str]], *, limit: int = 70, password: str = "s3cret") -> None:  # noqa: S107
        self.jobs = jobs  # service -> job name -> status
        self.limit = limit
        self.password = password
        self.raw: bytes | None = None  # answer this instead (not JSON)
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        oscar = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def reply(self, code: int, body: object) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                oscar.requests.append(self.path)
                expected = "Basic " + base64.b64encode(f"oscar:{oscar.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self.reply(401, b"")
                if oscar.raw is not None:
                    return self.reply(200, oscar.raw)
                parts = urlsplit(self.path)
                if parts.path == "/system/services":
                    return self.reply(200, [{"name": name, "image": "x"} for name in oscar.jobs])
                service = parts.path.removeprefix("/system/logs/")
                if service not in oscar.jobs:
                    return self.reply(404, b"")
                names = sorted(oscar.jobs[service])
                start = int(parse_qs(parts.query).get("page", ["0"])[0].removeprefix("tok-") or 0)
                chunk = names[start : start + oscar.limit]
                body: dict[str, Any] = {"jobs": {n: {"status": oscar.jobs[service][n]} for n in chunk}}
                if start + oscar.limit < len(names):
                    body["next_page"] = f"tok-{start + oscar.limit}"
                    body["remaining_jobs"] = len(names) - start - oscar.limit
                return self.reply(200, body)

        return Handler

    def __enter__(self) -> FakeOscar:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def statuses(prefix: str, **counts: int) -> dict[str, str]:
    jobs: dict[str, str] = {}
    for status, count in counts.items():
        jobs.update({f"{prefix}-{status.lower()}-{i:03d}": status for i in range(count)})
    return jobs


def test_oscar_counts_pending_and_suspended_jobs_on_every_page() -> None:
    jobs = {
        "big": statuses("b", Pending=60, Suspended=40, Running=30, Succeeded=20, Failed=5),  # 155 jobs: 3 pages
        "small": statuses("s", Pending=2, Succeeded=1),
        "idle": {},
    }
    with FakeOscar(jobs) as oscar:
        reading = OscarSource(lambda _: oscar.url + "/", lambda _: "s3cret").read(context())
    assert reading == Reading(waiting_jobs=60 + 40 + 2, jobs_without_pod=40)
    big = [r for r in oscar.requests if r.startswith("/system/logs/big")]
    assert big == ["/system/logs/big", "/system/logs/big?page=tok-70", "/system/logs/big?page=tok-140"]


def test_oscar_answers_that_are_not_json_or_refused_are_source_errors() -> None:
    with FakeOscar({"svc": statuses("x", Pending=1)}) as oscar:
        oscar.raw = b"<html>maintenance</html>"
        with pytest.raises(SourceError, match=r"^oscar: .*/system/services answered something that is not JSON$"):
            OscarSource(lambda _: oscar.url, lambda _: "s3cret").read(context())
        oscar.raw = b'{"not": "a list"}'
        with pytest.raises(SourceError, match="not a list"):
            OscarSource(lambda _: oscar.url, lambda _: "s3cret").read(context())
        oscar.raw = None
        with pytest.raises(SourceError, match=r"/system/services answered 401"):
            OscarSource(lambda _: oscar.url, lambda _: "wrong").read(context())
