"""Failure triage end to end: the real ``provision`` command against a real IM 2.0.0, all on loopback.

What the user sees when a command fails for a classified reason: exit code, ``error:`` first, a ``cause: <class>:``
line and the runbook to open
(``see provision runbook NAME (provisioner/data/runbooks/NAME.md)``), no traceback; and for a cluster that ended failed,
the cause in ``cluster status`` and ``cluster logs`` JSON and in the journal. Bad input stays one line, untriaged.

It reuses ``tests/integration/test_triage_im.py``'s IM (``triage_im``: a user DB, ``MAX_VM_FAILS=1``) and its stub
Kubernetes API (``k8s``: every Deployment refused with a ResourceQuota 403).

How a cluster reaches IM's Kubernetes connector: a site of kind ``dummy`` (which inlines our stub types, so no remote
import and no install interfaces: IM needs no network) whose ``cloud_id`` names the auth file's Kubernetes line and
whose image is ``docker://busybox:1.36`` (the connector only takes docker images). The render's Placement policy pins
both nodes to that cloud id. Kind ``other``/``openstack``... would import GRyCAP's types from GitHub: 400 offline.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from provisioner import localim
from provisioner.state import Phase, Store
from tests.clihelper import CLI
from tests.integration import test_triage_im as triage_lab
from tests.integration.test_triage_im import TriageIM, k8s_line, wait_for
from tests.jwt import expired_jwt
from tests.stubk8s import StubK8s

pytestmark = [pytest.mark.im, pytest.mark.slow]

# The IM and the stub Kubernetes API of test_triage_im.py: module-scoped fixtures, so this module gets its own.
triage_im = triage_lab.triage_im
k8s = triage_lab.k8s

IMAGE = "docker://busybox:1.36"
DUMMY = "id = sim; type = Dummy"


# --- a gate in front of the stub: Deployment POSTs wait until released ----------------------------------------------


class GatedK8s:
    """A loopback proxy to ``StubK8s`` that holds every Deployment POST until ``release()`` (IM's launch hangs)."""

    def __init__(self, upstream: StubK8s) -> None:
        self.upstream = urlsplit(upstream.url)
        self.gate = threading.Event()
        self.held = 0
        gated = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST" and self.path.split("?", 1)[0].endswith("/deployments"):
                    gated.held += 1
                    gated.gate.wait(60)
                host, port = gated.upstream.hostname or "127.0.0.1", gated.upstream.port or 80
                conn = http.client.HTTPConnection(host, port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type") or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gated-k8s", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def gated(k8s: StubK8s) -> Iterator[GatedK8s]:
    proxy = GatedK8s(k8s)
    yield proxy
    proxy.close()


# --- the CLI, pointed at the triage IM with sites on the stub clouds ------------------------------------------------


@dataclass
class Lab:
    cli: CLI
    im: TriageIM
    home: Path
    auth_file: Path


@pytest.fixture(scope="module")
def lab(
    triage_im: TriageIM,
    k8s: StubK8s,
    gated: GatedK8s,
    tmp_path_factory: pytest.TempPathFactory,
) -> Lab:
    base = tmp_path_factory.mktemp("triage-cli")
    auth_file = base / "auth.dat"
    lines = [
        triage_im.im_line,
        DUMMY,
        k8s_line(k8s),
        f"id = k8sslow; type = Kubernetes; host = {gated.url}; token = x",
    ]
    auth_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    auth_file.chmod(0o600)
    home = base / "home"
    cli = CLI(home, triage_im.url, auth_file)
    sites = {
        "stubk8s": {"kind": "dummy", "cloud_id": "k8s", "image": IMAGE, "description": "stub k8s: quota refusals"},
        "slowk8s": {"kind": "dummy", "cloud_id": "k8sslow", "image": IMAGE, "description": "stub k8s, held"},
    }
    (home / "config.yaml").write_text(yaml.safe_dump({"sites": sites}), encoding="utf-8")
    return Lab(cli=cli, im=triage_im, home=home, auth_file=auth_file)


def assert_triaged(result: subprocess.CompletedProcess[str], code: int, cause: str, runbook: str) -> list[str]:
    """Exit ``code``; ``error:`` first; ``cause: <cause>:``, then ``see provision runbook <runbook> (...)``."""
    lines = result.stderr.splitlines()
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == code, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert lines and lines[0].startswith("error: "), shown
    causes = [line for line in lines if line.startswith("cause: ")]
    assert len(causes) == 1 and causes[0].startswith(f"cause: {cause}: "), shown
    see = f"see provision runbook {runbook.removesuffix('.md')} (provisioner/data/runbooks/{runbook})"
    assert see in lines, shown
    assert lines.index(causes[0]) + 1 == lines.index(see), shown
    return lines


def state_of(cli: CLI, name: str) -> Any:
    view = cli.json("cluster", "status", name)
    assert isinstance(view, dict)
    return view.get("state")


# --- quota: IM's Kubernetes connector refused by the stub's ResourceQuota --------------------------------------------


def test_quota_create_status_logs_journal_destroy(lab: Lab, k8s: StubK8s) -> None:
    cli = lab.cli
    result = cli("cluster", "create", "q1", "-t", "kubernetes", "-s", "stubk8s", "--set", "wn_num=1", "--timeout", "60")
    lines = assert_triaged(result, 1, "quota", "cloud-refused.md")
    assert "exceeded quota" in lines[0], result.stderr  # IM's evidence, in the error line (or the cause line)
    assert any(r.method == "POST" and r.path.endswith("/deployments") for r in k8s.requests)

    status = cli.json("cluster", "status", "q1")
    assert isinstance(status, dict)
    assert status["state"] == "failed", status
    assert status["cause"]["cause"] == "quota", status
    assert status["cause"]["runbook"] == "cloud-refused"
    assert status["cause"]["runbook_file"] == "provisioner/data/runbooks/cloud-refused.md"
    assert "exceeded quota" in status["cause"]["evidence"]
    assert set(status["cause"]) == {"cause", "summary", "evidence", "runbook", "runbook_file"}

    with Store.open(lab.home) as store:
        ends = [e for e in store.journal("q1") if e.phase in (Phase.FAILED, Phase.UNCONFIGURED)]
    assert ends, "no failed/unconfigured journal entry"
    assert ends[-1].detail["cause"] == "quota", ends[-1].detail
    assert ends[-1].detail["state"] == "failed"

    logs = cli.json("cluster", "logs", "q1")
    assert isinstance(logs, dict)
    assert logs["cause"]["cause"] == "quota", logs
    assert logs["cause"]["runbook"] == "cloud-refused"

    text = cli("cluster", "status", "q1")
    assert text.returncode == 0, text.stderr
    assert "  cause: quota: " in text.stdout and "  see provision runbook cloud-refused (" in text.stdout, text.stdout

    destroyed = cli("cluster", "destroy", "q1", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "q1" not in json.dumps(cli.json("cluster", "list"))


# --- auth: an expired OIDC token in the IM line ----------------------------------------------------------------------


def test_auth_expired_token(lab: Lab, tmp_path: Path) -> None:
    auth_file = tmp_path / "expired.dat"
    auth_file.write_text(f"id = im; type = InfrastructureManager; token = {expired_jwt()}\n{DUMMY}\n", encoding="utf-8")
    auth_file.chmod(0o600)
    env = {"PROVISION_AUTH_FILE": str(auth_file)}

    listed = lab.cli("infra", "list", env=env)
    lines = assert_triaged(listed, 3, "auth", "token-expired.md")
    assert "Token expired" in "\n".join(lines)

    created = lab.cli("cluster", "create", "a1", "-t", "kubernetes", "-s", "local-sim", "--set", "wn_num=1", env=env)
    assert_triaged(created, 3, "auth", "token-expired.md")
    # IM refused the POST itself: nothing was created, so nothing is kept (no record, no generated secrets).
    assert lab.cli.json("cluster", "list") == []
    assert not (lab.cli.home / "secrets" / "a1.yaml").exists()


# --- IM unreachable: nothing listens on the configured port ---------------------------------------------------------


def test_im_unreachable(lab: Lab) -> None:
    env = {"PROVISION_IM_URL": f"http://127.0.0.1:{localim.free_port()}"}
    result = lab.cli("infra", "version", env=env)
    assert_triaged(result, 3, "im-unreachable", "im-down.md")


# --- timeout: IM keeps launching (the cloud holds the Deployment POST) -----------------------------------------------


def test_timeout_waiting(lab: Lab, gated: GatedK8s) -> None:
    cli = lab.cli
    created = cli("cluster", "create", "t1", "-t", "kubernetes", "-s", "slowk8s", "--set", "wn_num=1", "--no-wait")
    assert created.returncode == 0, created.stderr
    try:
        wait_for(lambda: gated.held > 0, 20, "IM to POST a Deployment to the held cloud")
        result = cli("cluster", "status", "t1", "--wait", "--timeout", "1")
        assert_triaged(result, 4, "timeout", "stuck-or-unconfigured.md")
        with Store.open(lab.home) as store:
            assert any(e.phase == Phase.TIMED_OUT for e in store.journal("t1"))
    finally:
        gated.release()
    # Let IM's launch finish (the stub then refuses it: quota) before destroying.
    wait_for(lambda: state_of(cli, "t1") == "failed", 30, "t1 to end failed", interval=0.5)
    destroyed = cli("cluster", "destroy", "t1", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr


# --- bad input: one line, exit 2, no triage --------------------------------------------------------------------------


def test_bad_input_is_not_triaged(lab: Lab) -> None:
    result = lab.cli("cluster", "create", "bad", "-t", "kubernetes", "-s", "local-sim", "--set", "wn_num=-1")
    shown = f"exit {result.returncode}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "cause:" not in result.stderr and "runbook" not in result.stderr, shown
    assert "Traceback" not in result.stderr
    assert "bad" not in json.dumps(lab.cli.json("cluster", "list"))
