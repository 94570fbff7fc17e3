"""Failure triage fed with REAL messages from a real IM 2.0.0 on loopback.

Each test makes IM (or our IM client) fail in one way, reads what IM really says (an HTTP error answer, the
infrastructure's contextualization log, a failed VM's message, our client's exception), checks that it still has the
key phrase of the committed sample in ``tests/data/im-messages/<case>.json``, and that
``provisioner.triage.classify_text`` puts both the live text and the committed one in the expected class.

``PROVISION_REGEN_IM_MESSAGES=1`` rewrites the committed samples from this run (review the diff before committing).

What runs here, all inside the loopback-only namespace:

- a second IM of our own (``triage_im``) with short waits (``MAX_VM_FAILS=1``, ``WAIT_SSH_ACCCESS_TIMEOUT=3``,
  1 s check intervals), a user DB (so a wrong password is refused) and a world-writable ``REMOTE_CONF_DIR``;
- a stub Kubernetes API server (``tests/stubk8s.py``) that refuses Deployments with a ResourceQuota 403, for IM's
  Kubernetes connector.

Two samples (an Ansible task failing during IM's contextualization, and IM's Ansible refusing an unknown host key)
were collected once, by this IM, contextualizing an existing host over real SSH as a non-root account. They are not
re-made in every run: IM then runs its own bootstrap playbook on that host, which is this very machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner import localim
from provisioner.errors import IMAuthError, IMForbidden, IMUnreachable
from provisioner.im import IMClient, RetryPolicy, Timeouts
from provisioner.im.auth import AuthData
from tests.conftest import im_venv, only_loopback
from tests.jwt import expired_jwt
from tests.stubk8s import StubK8s

pytestmark = [pytest.mark.im, pytest.mark.slow]

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "im-messages"
REGENERATE = os.environ.get("PROVISION_REGEN_IM_MESSAGES") == "1"

UNREACHABLE_IP = "127.0.0.77"  # nothing listens there: IM's SSH wait times out
SLOW_IP = "127.0.0.78"  # same, for the maximum-contextualization-time case

OPTIONS = {
    "MAX_VM_FAILS": "1",
    "DELAY_BETWEEN_VM_RETRIES": "0",
    "WAIT_SSH_ACCCESS_TIMEOUT": "3",  # IM sleeps a fixed 10 s between SSH attempts: ~10 s to give up
    "CHECK_CTXT_PROCESS_INTERVAL": "1",
    "CONFMAMAGER_CHECK_STATE_INTERVAL": "1",
}


# --- the cases -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    expected: str  # provisioner.triage.Cause value
    source: str  # http-error | contmsg | vm-error | client-exception
    keys: tuple[str, ...]  # phrases the live text and the committed sample must both contain
    how: str


CASES = {
    case.name: case
    for case in [
        Case(
            "auth-wrong-password",
            "auth",
            "http-error",
            ("Invalid InfrastructureManager credentials",),
            "GET /infrastructures with a wrong password for a user of IM's USER_DB (USER_DB set, as on any shared IM; "
            "without USER_DB IM 2.0.0 accepts any username/password).",
        ),
        Case(
            "auth-token-expired",
            "auth",
            "http-error",
            ("Invalid InfrastructureManager credentials. OIDC auth Token expired.",),
            "GET /infrastructures with 'id = im; type = InfrastructureManager; token = <JWT>' where the hand-made "
            "JWT's exp is one hour in the past (IM checks exp before any network call).",
        ),
        Case(
            "auth-not-owner",
            "auth",
            "http-error",
            ("Access to this infrastructure not granted.",),
            "GET /infrastructures/<id>/state with valid credentials of another IM user than the one who created "
            "the infrastructure (403).",
        ),
        Case(
            "im-unreachable-refused",
            "im-unreachable",
            "client-exception",
            ("cannot connect to IM at", "Connection refused"),
            "str() of the IMUnreachable our IMClient raises for GET /version on a 127.0.0.1 port nothing listens on "
            "(what a stopped IM looks like); the port number is whatever was free.",
        ),
        Case(
            "im-unreachable-reset",
            "im-unreachable",
            "client-exception",
            ("connection to IM at", "Remote end closed connection"),
            "str() of the IMUnreachable our IMClient raises for GET /version when the endpoint accepts the TCP "
            "connection and closes it without answering (IM crashing mid-request, a proxy dropping it).",
        ),
        Case(
            "quota-create",
            "quota",
            "http-error",
            ("Error launching the VMs of type", "exceeded quota"),
            "Synchronous POST /infrastructures of a RADL whose only VM goes to IM's Kubernetes connector (auth "
            "'id = k8s; type = Kubernetes; host = http://127.0.0.1:<stub>; token = x', image docker://busybox:1.36), "
            "MAX_VM_FAILS=1; the loopback stub API answers the Deployment POST with the apiserver's ResourceQuota "
            "403 Status (the Status body is the stub's, in the real format; everything around it is IM's).",
        ),
        Case(
            "quota-contmsg",
            "quota",
            "contmsg",
            ("All VMs failed. No contextualize.", "exceeded quota"),
            "GET .../contmsg of the same RADL created with ?async=1 (IM deletes the failed VM; the infrastructure "
            "state is 'failed' with no VMs).",
        ),
        Case(
            "quota-vm-error",
            "quota",
            "vm-error",
            ("Error launching the VMs of type wn to cloud ID k8s of type Kubernetes", "exceeded quota"),
            "GET .../vms/1/contmsg of an infrastructure with a Dummy VM (deploy front 1 sim) and a Kubernetes VM "
            "(deploy wn 1 k8s) refused by the stub's quota 403: VM 1 state 'failed', infrastructure state 'failed'.",
        ),
        Case(
            "image-no-vmi",
            "image-not-found",
            "http-error",
            ("No VMI obtained from Sites to system 'wn'",),
            "POST /infrastructures of a RADL system without disk.0.image.url and no cloud line in the auth data.",
        ),
        Case(
            "image-no-concrete-system",
            "image-not-found",
            "http-error",
            ("no concrete system to deploy", "Check if a correct image is being used"),
            "POST /infrastructures of a RADL system with image ost://cloud.example/1234 and only a Kubernetes cloud "
            "(which accepts only docker:// images).",
        ),
        Case(
            "ssh-unreachable-timeout",
            "ssh-unreachable",
            "contmsg",
            ("Error Waiting the Master VM to have the SSH active",),
            "GET .../contmsg of a DeployedNode VM (net_interface.0.ip = 127.0.0.77, nothing listening) with a "
            "configure section, WAIT_SSH_ACCCESS_TIMEOUT=3; read ~10 s after create, when the infrastructure state "
            "is still 'running' (IM goes on retrying SSH to install Ansible for minutes).",
        ),
        Case(
            "ssh-no-master-vm",
            "ssh-unreachable",
            "contmsg",
            ("No correct Master VM found",),
            "GET .../contmsg of a Dummy VM on a private network only, with a configure section: no VM with a public "
            "IP to SSH to; state 'unconfigured' at once.",
        ),
        Case(
            "ssh-unreachable-ansible-hostkey",
            "ssh-unreachable",
            "contmsg",
            ("UNREACHABLE!", "Host key verification failed"),
            "GET .../contmsg of a DeployedNode VM on a real sshd (127.0.0.62, non-root account, key login) whose "
            "host key IM's own Ansible does not know (ANSIBLE_HOST_KEY_CHECKING=True in IM's environment); IM's "
            "paramiko SSH got in, its Ansible run of conf-ansible.yml did not. State 'unconfigured'.",
        ),
        Case(
            "timeout-max-ctxt-time",
            "timeout",
            "contmsg",
            ("ERROR: Max contextualization time passed.",),
            "GET .../contmsg of a DeployedNode VM at 127.0.0.78 (nothing listening) with 'contextualize 2 (...)' "
            "(a 2 s maximum contextualization time) while IM still waits for SSH; state 'unconfigured'.",
        ),
        Case(
            "ansible-task-failed",
            "ansible-task-failed",
            "contmsg",
            ("Error configuring the master VM", "FAILED! =>", "failed=1"),
            "GET .../contmsg of a DeployedNode VM on a real sshd (127.0.0.61, non-root account without sudo, key "
            "login, host key known): IM's bootstrap playbook conf-ansible.yml fails its first non-ignored task "
            "(Get Facts, become: sudo); the template's own configure task is never reached. State 'unconfigured'.",
        ),
    ]
}


def check(name: str, text: str, http_status: int | None = None) -> None:
    """The live ``text`` has the case's key phrases, matches the committed sample's, and both classify right."""
    from provisioner.triage import classify_text

    case = CASES[name]
    for key in case.keys:
        assert key in text, f"{name}: IM's live text lost {key!r}:\n{text}"
    path = SAMPLES / f"{name}.json"
    if REGENERATE:
        SAMPLES.mkdir(parents=True, exist_ok=True)
        sample = {
            "case": name,
            "expected": case.expected,
            "source": case.source,
            "http_status": http_status,
            "text": text,
            "how": case.how,
        }
        path.write_text(json.dumps(sample, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    sample = json.loads(path.read_text(encoding="utf-8"))
    assert (sample["case"], sample["expected"], sample["source"]) == (name, case.expected, case.source)
    assert sample["http_status"] == http_status
    for key in case.keys:
        assert key in sample["text"], f"{name}: committed sample lost {key!r}"
    for label, candidate in (("live", text), ("committed", sample["text"])):
        found = classify_text(candidate)
        got = found.cause.value if found else None
        assert got == case.expected, f"{name} ({label}): classified as {got}, expected {case.expected}:\n{candidate}"


# --- IM, stub cloud and sshd -----------------------------------------------------------------------------------------


@dataclass
class TriageIM:
    url: str
    im_line: str  # the InfrastructureManager line of the auth file
    user: str
    password: str
    known_hosts: Path  # IM's Ansible trusts the host keys listed here (and only these)
    remote_dir: Path  # IM's REMOTE_CONF_DIR, on the "VMs" (this machine, through our sshd)

    def header(self, *cloud_lines: str, im_line: str | None = None) -> str:
        return AuthData.from_lines([im_line or self.im_line, *cloud_lines]).header()

    def call(
        self,
        method: str,
        path: str,
        *cloud_lines: str,
        body: str | None = None,
        im_line: str | None = None,
        async_: bool = False,
    ) -> tuple[int, Any]:
        """One raw REST call: IM's status and JSON body, exactly as answered."""
        resp = requests.request(
            method,
            self.url + path,
            params={"async": "1"} if async_ else None,
            data=body.encode() if body is not None else None,
            headers={
                "Authorization": self.header(*cloud_lines, im_line=im_line),
                "Accept": "application/json",
                "Content-Type": "text/plain",
            },
            timeout=60,
        )
        return resp.status_code, resp.json()

    def create(self, radl: str, *cloud_lines: str, async_: bool = False) -> str:
        status, body = self.call("POST", "/infrastructures", *cloud_lines, body=radl, async_=async_)
        assert status == 200, body
        return str(body["uri"]).rsplit("/", 1)[-1]

    def client(self, *cloud_lines: str) -> IMClient:
        return IMClient(
            self.url,
            AuthData.from_lines([self.im_line, *cloud_lines]),
            timeouts=Timeouts(connect=2, read=60),
            retry=RetryPolicy(attempts=2, max_delay=5, backoff=0.05, backoff_cap=0.2),
        )


@pytest.fixture(scope="module")
def triage_im(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TriageIM]:
    if not only_loopback():
        pytest.fail("IM tests must run in a loopback-only network namespace: use `make test`", pytrace=False)
    venv = im_venv()
    if not localim.is_installed(venv):
        pytest.fail(f"IM {localim.IM_VERSION} is not installed in {venv}: run `make setup`", pytrace=False)
    run_dir = tmp_path_factory.mktemp("triage-im") / "local-im"
    run_dir.mkdir(mode=0o700)
    im = AuthData.load(localim.ensure_auth_file(run_dir)).im_credential
    user, password = im.fields["username"], im.fields["password"]
    users = {"users": [{"username": user, "password": password}, {"username": "intruder", "password": "pw-i"}]}
    user_db = run_dir / "users.json"
    user_db.write_text(json.dumps(users), encoding="utf-8")
    # The contextualization "VMs" are this machine seen through our sshd as a non-root account, which must be able
    # to create IM's REMOTE_CONF_DIR/<infra id> and Ansible's remote temp dirs: a sticky world-writable dir in /tmp
    # (pytest's own temp dirs are 0700 root).
    remote_dir = Path(tempfile.mkdtemp(prefix="provision-triage-remote-"))
    remote_dir.chmod(0o1777)
    (run_dir / "home").mkdir()
    known_hosts = run_dir / "ansible_known_hosts"
    known_hosts.touch()
    env = {
        # IM runs its bootstrap playbook with the Ansible of its venv: keep it off root's ~/.ansible and
        # ~/.ssh/known_hosts, check host keys against our file only, and no lingering SSH control masters.
        "HOME": str(run_dir / "home"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=no -o UserKnownHostsFile={known_hosts}",
        "ANSIBLE_REMOTE_TMP": str(remote_dir / "ansible-tmp"),
    }
    options = {**OPTIONS, "USER_DB": str(user_db), "REMOTE_CONF_DIR": str(remote_dir)}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ANSIBLE_CONFIG", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        info = localim.start(run_dir, venv, fresh=True, options=options)
    try:
        yield TriageIM(
            url=info.url,
            im_line=f"id = im; type = InfrastructureManager; username = {user}; password = {password}",
            user=user,
            password=password,
            known_hosts=known_hosts,
            remote_dir=remote_dir,
        )
    finally:
        localim.stop(run_dir)
        shutil.rmtree(remote_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def k8s() -> Iterator[StubK8s]:
    with StubK8s() as stub:
        yield stub


def k8s_line(stub: StubK8s) -> str:
    return f"id = k8s; type = Kubernetes; host = {stub.url}; token = x"


DUMMY = "id = sim; type = Dummy"
DEPLOYED = "id = onprem; type = DeployedNode"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_contmsg(im: TriageIM, infra: str, phrase: str, *cloud_lines: str, timeout: float = 40) -> str:
    with im.client(*cloud_lines) as client:
        found: str = wait_for(
            lambda: (lambda msg: msg if phrase in msg else None)(client.contmsg(infra)),
            timeout,
            f"{phrase!r} in the contextualization log of {infra}",
            interval=0.5,
        )
        return found


def deployed_node_radl(ip: str, user: str, credential: str, *, max_time: int | None = None) -> str:
    """One existing host (DeployedNode) on a public network, with an Ansible configure step: contextualization on."""
    ctxt = f"contextualize {max_time} (" if max_time else "contextualize ("
    return f"""
network public (outbound = 'yes')
system front (
  net_interface.0.connection = 'public' and
  net_interface.0.ip = '{ip}' and
  disk.0.os.name = 'linux' and
  disk.0.image.url = 'onprem://existing-host' and
  disk.0.os.credentials.username = '{user}' and
  {credential}
)
configure front (
@begin
---
- tasks:
  - name: Check the shared storage is mounted
    command: test -d /srv/shared
@end
)
{ctxt}
  system front configure front
)
deploy front 1
"""


def k8s_system(name: str, net: str, image: str = "docker://busybox:1.36") -> str:
    return f"""
system {name} (
  cpu.count >= 1 and memory.size >= 512m and
  net_interface.0.connection = '{net}' and
  disk.0.os.name = 'linux' and
  disk.0.image.url = '{image}'
)
"""


# --- auth ------------------------------------------------------------------------------------------------------------


def test_auth_wrong_password(triage_im: TriageIM) -> None:
    wrong = f"id = im; type = InfrastructureManager; username = {triage_im.user}; password = not-{triage_im.password}"
    status, body = triage_im.call("GET", "/infrastructures", DUMMY, im_line=wrong)
    assert status == 401
    check("auth-wrong-password", body["message"], status)
    client = IMClient(triage_im.url, AuthData.from_lines([wrong, DUMMY]), retry=RetryPolicy.none())
    with client, pytest.raises(IMAuthError, match="Invalid InfrastructureManager credentials"):
        client.list_infrastructures()


def test_auth_token_expired(triage_im: TriageIM) -> None:
    expired = f"id = im; type = InfrastructureManager; token = {expired_jwt()}"  # IM checks exp, not the signature
    status, body = triage_im.call("GET", "/infrastructures", DUMMY, im_line=expired)
    assert status == 401
    check("auth-token-expired", body["message"], status)
    # Our client sees it as an auth refusal too (no command(...) to refresh the token from).
    client = IMClient(triage_im.url, AuthData.from_lines([expired, DUMMY]), retry=RetryPolicy.none())
    with client, pytest.raises(IMAuthError, match="Token expired"):
        client.list_infrastructures()


def test_auth_not_owner(triage_im: TriageIM) -> None:
    infra = triage_im.create("system front (disk.0.os.name = 'linux')\ncontextualize ()\ndeploy front 1", DUMMY)
    intruder = "id = im; type = InfrastructureManager; username = intruder; password = pw-i"
    status, body = triage_im.call("GET", f"/infrastructures/{infra}/state", DUMMY, im_line=intruder)
    assert status == 403
    check("auth-not-owner", body["message"], status)
    client = IMClient(triage_im.url, AuthData.from_lines([intruder, DUMMY]), retry=RetryPolicy.none())
    with client, pytest.raises(IMForbidden):
        client.state(infra)


# --- IM unreachable --------------------------------------------------------------------------------------------------


def bare_client(url: str) -> IMClient:
    auth = AuthData.from_lines(["id = im; type = InfrastructureManager; username = u; password = p"])
    return IMClient(url, auth, timeouts=Timeouts(connect=2, read=5), retry=RetryPolicy.none())


def test_im_unreachable_refused() -> None:
    url = f"http://127.0.0.1:{localim.free_port()}"  # nothing listens: a stopped IM
    with bare_client(url) as client, pytest.raises(IMUnreachable) as err:
        client.version()
    check("im-unreachable-refused", str(err.value))


def test_im_unreachable_reset() -> None:
    """An endpoint that accepts the connection and closes it before answering."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        with bare_client(url) as client, pytest.raises(IMUnreachable) as err:
            client.version()
    finally:
        stop.set()
        thread.join(5)
        server.close()
    check("im-unreachable-reset", str(err.value))


# --- quota (IM's Kubernetes connector against the stub API) ----------------------------------------------------------


QUOTA_RADL = "network net1 (outbound = 'no')\n" + k8s_system("wn", "net1") + "deploy wn 1\n"


def test_quota_sync_create_is_refused(triage_im: TriageIM, k8s: StubK8s) -> None:
    status, body = triage_im.call("POST", "/infrastructures", k8s_line(k8s), body=QUOTA_RADL)
    assert status == 400
    assert any(r.method == "POST" and r.path.endswith("/deployments") for r in k8s.requests)
    check("quota-create", body["message"], status)


def test_quota_async_contmsg(triage_im: TriageIM, k8s: StubK8s) -> None:
    infra = triage_im.create(QUOTA_RADL, k8s_line(k8s), async_=True)
    text = wait_contmsg(triage_im, infra, "exceeded quota", k8s_line(k8s))
    with triage_im.client(k8s_line(k8s)) as client:
        state = wait_for(lambda: (s := client.state(infra)).state == "failed" and s, 20, "state failed")
        assert state.vm_states == {}
    check("quota-contmsg", text)


def test_quota_failed_vm_error(triage_im: TriageIM, k8s: StubK8s) -> None:
    radl = (
        "network net0 (outbound = 'no')\nnetwork net1 (outbound = 'no')\n"
        "system front (net_interface.0.connection = 'net0' and disk.0.os.name = 'linux' and "
        "disk.0.image.url = 'dummy://front')\n" + k8s_system("wn", "net1") + "contextualize ()\n"
        "deploy front 1 sim\ndeploy wn 1 k8s\n"
    )
    clouds = (DUMMY, k8s_line(k8s))
    infra = triage_im.create(radl, *clouds)
    with triage_im.client(*clouds) as client:
        state = client.state(infra)
        assert (state.state, state.vm_states) == ("failed", {"0": "configured", "1": "failed"})
        assert client.vm_info(infra, "1").state == "failed"
        text = client.vm_contmsg(infra, "1")
        assert "exceeded quota" in client.contmsg(infra)  # the infrastructure's log repeats it under "VM 1:"
    check("quota-vm-error", text)


# --- image not found -------------------------------------------------------------------------------------------------


def test_image_no_vmi(triage_im: TriageIM) -> None:
    radl = "network net1 (outbound = 'no')\nsystem wn (net_interface.0.connection = 'net1' and "
    radl += "disk.0.os.name = 'linux')\ndeploy wn 1\n"
    status, body = triage_im.call("POST", "/infrastructures", body=radl)  # no cloud line at all
    assert status == 400
    check("image-no-vmi", body["message"], status)


def test_image_no_concrete_system(triage_im: TriageIM, k8s: StubK8s) -> None:
    radl = "network net1 (outbound = 'no')\n" + k8s_system("wn", "net1", "ost://cloud.example/1234") + "deploy wn 1\n"
    status, body = triage_im.call("POST", "/infrastructures", k8s_line(k8s), body=radl)
    assert status == 400
    check("image-no-concrete-system", body["message"], status)


# --- SSH unreachable, IM's own timeout ------------------------------------------------------------------------------


def test_ssh_unreachable(triage_im: TriageIM) -> None:
    radl = deployed_node_radl(UNREACHABLE_IP, "cloudadm", "disk.0.os.credentials.password = 'not-a-secret'")
    infra = triage_im.create(radl, DEPLOYED)
    text = wait_contmsg(triage_im, infra, "Contextualization Error", DEPLOYED, timeout=40)
    with triage_im.client(DEPLOYED) as client:
        # IM keeps trying SSH (to install Ansible) for minutes after this: the state says "running" meanwhile.
        assert client.state(infra).state in {"running", "unconfigured"}
    check("ssh-unreachable-timeout", text)


def test_ssh_no_master_vm(triage_im: TriageIM) -> None:
    radl = """
network private (outbound = 'no')
system front (net_interface.0.connection = 'private' and disk.0.os.name = 'linux' and disk.0.image.url = 'dummy://x')
configure front (
@begin
---
- tasks:
  - debug: msg=never
@end
)
deploy front 1
"""
    infra = triage_im.create(radl, DUMMY)
    text = wait_contmsg(triage_im, infra, "No correct Master VM found", DUMMY, timeout=20)
    with triage_im.client(DUMMY) as client:
        assert wait_for(lambda: client.state(infra).state == "unconfigured", 20, "unconfigured")
    check("ssh-no-master-vm", text)


def test_timeout_max_contextualization_time(triage_im: TriageIM) -> None:
    radl = deployed_node_radl(SLOW_IP, "cloudadm", "disk.0.os.credentials.password = 'not-a-secret'", max_time=2)
    infra = triage_im.create(radl, DEPLOYED)
    text = wait_contmsg(triage_im, infra, "Max contextualization time", DEPLOYED, timeout=30)
    with triage_im.client(DEPLOYED) as client:
        assert wait_for(lambda: client.state(infra).state == "unconfigured", 20, "unconfigured")
    check("timeout-max-ctxt-time", text)


# The samples ansible-task-failed and ssh-unreachable-ansible-hostkey were collected once on this machine, by the
# same IM, contextualizing an existing host over real SSH as a non-root account: IM then runs its own Ansible
# bootstrap on that host, which is this machine, so it is not re-run in every test run. tests/unit/test_triage.py
# classifies them with the others.
