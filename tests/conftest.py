"""Shared test fixtures: a real IM 2.0.0 on loopback (Dummy cloud), started once per test session.

IM tests must run inside a network namespace that has only loopback (``make test`` does that through
``.ci/netns``): the Dummy cloud hands out made-up addresses, and in there nothing can leave the machine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import localim
from provisioner.im import IMClient, RetryPolicy, Timeouts
from provisioner.im.auth import AuthData
from provisioner.settings import ENV_IM_VENV
from tests import pglab, stubkube
from tests.faultproxy import FaultProxy
from tests.sshd import SSHHost, keygen, sshd_available

REPO = Path(__file__).resolve().parent.parent


def only_loopback() -> bool:
    """True inside a network namespace whose only interface is lo."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def worker_index() -> int:
    """This pytest-xdist worker's number (0 without xdist): each worker has its own IM and sshd lab."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def lab_address(last: int) -> str:
    """An address of this worker's sshd lab: 127.0.<1 + worker>.<last> (other tests' hosts live in 127.0.0.x)."""
    return f"127.0.{1 + worker_index()}.{last}"


def im_venv() -> Path:
    return Path(os.environ.get(ENV_IM_VENV) or REPO / ".im-venv")


@dataclass(frozen=True)
class RunningIM:
    url: str
    auth_file: Path
    run_dir: Path
    venv: Path
    home: Path

    def client(self, *, auth_file: Path | None = None, retry: RetryPolicy | None = None) -> IMClient:
        return IMClient(
            self.url,
            AuthData.load(auth_file or self.auth_file),
            timeouts=Timeouts(connect=2, read=60),
            retry=retry or RetryPolicy(attempts=3, max_delay=10, backoff=0.05, backoff_cap=0.2),
        )

    def restart(self) -> None:
        """Stop IM (SIGTERM) and start it again on the same port with the same database."""
        port = int(self.url.rsplit(":", 1)[1])
        localim.stop(self.run_dir)
        localim.start(self.run_dir, self.venv, port=port)

    def crash_and_restart(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        localim.kill(self.run_dir)
        localim.start(self.run_dir, self.venv, port=port)


@pytest.fixture(scope="session")
def local_im(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIM]:
    if not only_loopback():
        pytest.fail(
            "IM tests must run in a loopback-only network namespace: use `make test` "
            "(or .ci/netns .venv/bin/pytest ...)",
            pytrace=False,
        )
    venv = im_venv()
    if not localim.is_installed(venv):
        pytest.fail(f"IM {localim.IM_VERSION} is not installed in {venv}: run `make setup`", pytrace=False)
    home = tmp_path_factory.mktemp("provision-home")
    run_dir = home / "local-im"
    info = localim.start(run_dir, venv, fresh=True)
    running = RunningIM(url=info.url, auth_file=Path(info.auth_file), run_dir=run_dir, venv=venv, home=home)
    yield running
    localim.stop(running.run_dir)


@pytest.fixture
def im_client(local_im: RunningIM) -> Iterator[IMClient]:
    client = local_im.client()
    yield client
    client.close()


@pytest.fixture
def proxy(local_im: RunningIM) -> Iterator[FaultProxy]:
    """A fault proxy in front of this worker's IM (it forwards everything until a test tells it otherwise)."""
    running = FaultProxy(local_im.url).start()
    yield running
    running.stop()


# --- real SSH hosts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSHLab:
    """Three sshd hosts on loopback: a front-end (127.0.W.2, W = 1 + the xdist worker) and two workers.

    ``wn1`` (127.0.W.3) is reachable directly; ``wn2`` (127.0.W.4) has no public address: it lives in a network
    namespace of its own, so from here its address refuses connections, and only sessions of the front-end (whose
    sshd serves them inside that namespace) reach it, as an SSH jump does. The front-end's sessions have stand-in
    ``kubectl`` and ``helm`` first on PATH (:mod:`tests.stubkube`, state in ``kube_state``).
    """

    front: SSHHost
    wn1: SSHHost
    wn2: SSHHost
    client_key: Path
    kube_state: Path
    stub_bin: Path

    @property
    def hosts(self) -> list[SSHHost]:
        return [self.front, self.wn1, self.wn2]


# sshd's own default PATH for sessions, after the stand-ins.
SESSION_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHLab]:
    if not only_loopback():
        pytest.fail("SSH tests run in the loopback-only namespace: use `make test`", pytrace=False)
    if not sshd_available():
        pytest.fail("Debian's openssh-server is needed (as root): run .ci/system-deps", pytrace=False)
    base = tmp_path_factory.mktemp("sshd")
    key = keygen(base / "client_key")
    kube_state = base / "kube-state"
    kube_state.mkdir()
    stub_bin = stubkube.install(base / "stub-bin")
    started: list[SSHHost] = []
    try:
        wn2 = SSHHost("wn2", lab_address(4), 22, base / "wn2", key, private=True)
        started.append(wn2.start())
        wn1 = SSHHost("wn1", lab_address(3), 22, base / "wn1", key)
        started.append(wn1.start())
        # The front-end logs forwarded connections (DEBUG1), so tests can prove a jump went through it.
        front = SSHHost(
            "front",
            lab_address(2),
            22,
            base / "front",
            key,
            log_level="DEBUG1",
            env={"PATH": f"{stub_bin}:{SESSION_PATH}", stubkube.STATE_ENV: str(kube_state)},
            sessions_in=wn2,
        )
        started.append(front.start())
        lab = SSHLab(front=front, wn1=wn1, wn2=wn2, client_key=key, kube_state=kube_state, stub_bin=stub_bin)
        yield lab
    finally:
        for host in reversed(started):
            host.stop()


# --- a real PostgreSQL (the shared state backend) ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_lab() -> Iterator[pglab.PgLab]:
    """This worker's throw-away PostgreSQL on 127.0.0.1 (started on first use; see tests/pglab.py)."""
    if not pglab.available():
        pytest.fail("PostgreSQL's initdb, pg_ctl and postgres are needed: run .ci/system-deps", pytrace=False)
    lab = pglab.PgLab()
    try:
        yield lab.start()
    finally:
        lab.stop()


@pytest.fixture
def pg_url(pg_lab: pglab.PgLab) -> str:
    """The URL of a fresh, empty database of this test's own (left for the server's removal: dropping each costs
    more than keeping it)."""
    return pg_lab.url(pg_lab.create_database())


@pytest.fixture
def state_url_reset() -> Iterator[None]:
    """For tests that name a state backend in-process (``use_url``): the embedded default again after them."""
    from provisioner.state import use_url

    yield
    use_url(None)
