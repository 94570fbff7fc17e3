"""Inventory, paramiko checks, host-key pinning and ansible-runner against real sshd hosts on loopback.

wn2 has no public address: it is in a network namespace of its own, so a direct connection to it is refused and
only a jump through the front-end reaches it (tests/conftest.py) -- for paramiko and for Ansible alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest
import yaml

from provisioner.ansible import inventory as inv_mod
from provisioner.ansible import runner, ssh
from provisioner.errors import HostKeyChanged, OperationFailed, OperationTimeout
from provisioner.im.models import VMCredentials, VMInfo
from tests import stubkube
from tests.conftest import SSHLab
from tests.playbooks.conftest import SCENARIOS, SECRETS


def vms_for(lab: SSHLab) -> list[VMInfo]:
    """IM-shaped VM info for the lab: the front-end and wn1 have a public address, wn2 only a private one."""
    creds = VMCredentials(username=lab.front.user, private_key=lab.client_key.read_text())
    return [
        VMInfo("0", "configured", "front", [lab.front.address], [lab.front.address], {}, creds),
        VMInfo("1", "configured", "wn", [lab.wn1.address], [lab.wn1.address], {}, creds),
        VMInfo("2", "configured", "wn", [lab.wn2.address], [], {}, creds),
    ]


@pytest.fixture
def lab_inventory(ssh_lab: SSHLab, tmp_path: Path) -> tuple[inv_mod.Inventory, Path, Path]:
    home = tmp_path / "home"
    # The test hosts' own python (interpreter discovery would find the sandbox's pyenv shims).
    inventory = inv_mod.with_pinned(inv_mod.from_vms("lab", vms_for(ssh_lab), home), python="/usr/bin/python3")
    known = inv_mod.known_hosts_path(home, "lab")
    path = inv_mod.write(inventory, tmp_path / "inventories" / "lab" / "hosts.yml", known)
    return inventory, path, home


def test_generated_inventory_is_standard_and_holds_no_secret(ssh_lab: SSHLab, lab_inventory) -> None:
    _, path, home = lab_inventory
    doc = yaml.safe_load(path.read_text())
    groups = doc["all"]["children"]
    assert list(groups["front"]["hosts"]) == ["fe"]
    assert sorted(groups["wn"]["hosts"]) == ["wn-1", "wn-2"]
    front = groups["front"]["hosts"]["fe"]
    assert front["ansible_host"] == ssh_lab.front.address
    assert front["ansible_user"] == ssh_lab.front.user
    key = Path(front["ansible_ssh_private_key_file"])
    assert key.is_relative_to(home) and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "ProxyCommand" not in groups["wn"]["hosts"]["wn-1"]["ansible_ssh_common_args"]
    jumped = groups["wn"]["hosts"]["wn-2"]["ansible_ssh_common_args"]
    assert "ProxyCommand=" in jumped and f"@{ssh_lab.front.address}" in jumped
    # Trust on first use, as our pins: OpenSSH records an unknown key in the cluster's file, refuses a changed one
    # -- for the host and for the jump's ProxyCommand alike.
    assert jumped.count("StrictHostKeyChecking=accept-new") == 2 and "StrictHostKeyChecking=yes" not in jumped
    assert "PRIVATE KEY" not in path.read_text()


def test_paramiko_waits_pins_keys_and_jumps_through_the_front(ssh_lab: SSHLab, lab_inventory) -> None:
    inventory, _, home = lab_inventory
    pins = ssh.HostKeyPins(home, "lab")
    front_log = ssh_lab.front.directory / "sshd.log"
    before = front_log.read_text(errors="replace")
    results = ssh.wait_ready(inventory, pins, timeout=30)
    assert [r.ok for r in results] == [True, True, True]
    assert all(r.new_key for r in results)
    assert stat.S_IMODE(pins.path.stat().st_mode) == 0o600
    known = pins.path.read_text()
    for host in ssh_lab.hosts:
        assert host.address in known
    # wn-2 has no public address: the connection went through the front-end's sshd.
    after = front_log.read_text(errors="replace")[len(before) :]
    assert f"{ssh_lab.wn2.address} port 22" in after
    # Second contact: keys match, nothing new recorded.
    again = ssh.check_all(inventory, pins)
    assert [r.ok for r in again] == [True, True, True]
    assert not any(r.new_key for r in again)
    out = ssh.run_command(inventory, inventory.host("wn-2"), pins, "echo hello-from-$(hostname -I 2>/dev/null || true)")
    assert out.exit_status == 0 and out.stdout.startswith("hello-from")
    # Without the jump, wn-2 cannot be reached at all: the jump is the only way in.
    direct = ssh.check_host(inventory, replace(inventory.host("wn-2"), jump=None), pins, timeout=5)
    assert not direct.ok and direct.detail.endswith("connection refused")


def test_changed_host_key_is_refused_by_paramiko_and_ansible(ssh_lab: SSHLab, tmp_path: Path) -> None:
    # A lab of its own: this test changes a host's identity.
    from tests.sshd import SSHHost, free_port

    host = SSHHost("moved", "127.0.0.9", free_port("127.0.0.9"), tmp_path / "moved", ssh_lab.client_key).start()
    try:
        home = tmp_path / "home"
        inventory = inv_mod.Inventory(
            "moving",
            (
                inv_mod.Host(
                    "fe",
                    "front",
                    host.address,
                    port=host.port,
                    user=host.user,
                    key_file=ssh_lab.client_key,
                    python="/usr/bin/python3",
                ),
            ),
        )
        pins = ssh.HostKeyPins(home, "moving")
        assert ssh.check_all(inventory, pins)[0].ok
        host.replace_host_key()
        with pytest.raises(HostKeyChanged) as err:
            ssh.check_all(inventory, pins)
        assert "changed" in str(err.value) and "ssh-keygen -R" in (err.value.hint or "")
        # For a report (cluster verify): a failed result with the refusal and the ssh-keygen line, not an abort.
        (reported,) = ssh.check_all(inventory, pins, report_key_changes=True)
        assert not reported.ok and reported.key_changed
        assert f"host key of {inventory.front.endpoint} (cluster moving) changed" in reported.detail
        assert f"ssh-keygen -R '{inventory.front.endpoint}' -f {pins.path}" in reported.detail
        # OpenSSH (Ansible) is pointed at the same pins and refuses too.
        path = inv_mod.write(inventory, tmp_path / "inv" / "hosts.yml", pins.path)
        result = runner.run_playbook(
            str(_ping_playbook(tmp_path)),
            path,
            home=home,
            cluster="moving",
            public_vars={},
            secret_vars={},
        )
        assert not result.ok
        assert result.failures and result.failures[0].unreachable
        assert "host key" in result.failures[0].message.lower()
    finally:
        host.stop()


def test_plain_ansible_playbook_records_first_contact_keys(ssh_lab: SSHLab, tmp_path: Path) -> None:
    """`provision cluster inventory` then plain ansible-playbook on a fresh cluster: no key of it is known yet.

    OpenSSH (accept-new) records each key it meets first in the cluster's known_hosts file -- wn-2's through the
    jump's ProxyCommand too -- and paramiko then finds them pinned in the same file."""
    home = tmp_path / "home"
    inventory = inv_mod.with_pinned(inv_mod.from_vms("fresh", vms_for(ssh_lab), home), python="/usr/bin/python3")
    known = inv_mod.known_hosts_path(home, "fresh")
    assert not known.parent.exists()
    path = inv_mod.write(inventory, tmp_path / "inventories" / "fresh" / "hosts.yml", known)
    # Ready for OpenSSH, which creates neither the directory nor a private file: 0700, and an empty 0600 file.
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    assert known.read_text() == "" and stat.S_IMODE(known.stat().st_mode) == 0o600
    book = tmp_path / "hello.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Hello",
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [
                        {"name": "Ping", "ansible.builtin.ping": {}},
                        {"name": "Say hello", "ansible.builtin.command": "echo hello", "changed_when": False},
                    ],
                }
            ]
        )
    )
    # Plain: the venv's ansible-playbook, no ansible-runner, no ANSIBLE_* settings, an empty HOME (no
    # ~/.ssh/known_hosts or config to lean on; short, for the control sockets' paths).
    user_home = Path(tempfile.mkdtemp(prefix="pv-h-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["HOME"] = str(user_home)
    before = ssh_lab.front.log.read_text(errors="replace")
    try:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(path), str(book)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
    finally:
        shutil.rmtree(user_home, ignore_errors=True)
    assert run.returncode == 0, run.stdout + run.stderr
    for host in ("fe", "wn-1", "wn-2"):
        assert re.search(rf"^{host}\s+: ok=2 .*unreachable=0 +failed=0", run.stdout, re.MULTILINE), run.stdout
    # wn-2 was reached through the front-end (its sshd logs the forwarded connection): the jump's ProxyCommand.
    assert f"{ssh_lab.wn2.address} port 22" in ssh_lab.front.log.read_text(errors="replace")[len(before) :]
    # Every host's own key is now recorded in the cluster's file (OpenSSH may hash the names: looked up, not grepped).
    recorded = paramiko.HostKeys(str(known))
    for lab_host, name in ((ssh_lab.front, "fe"), (ssh_lab.wn1, "wn-1"), (ssh_lab.wn2, "wn-2")):
        entry = recorded.lookup(inventory.host(name).endpoint)
        assert entry is not None, f"no key recorded for {name}"
        key_type, key_b64 = Path(f"{lab_host.host_key}.pub").read_text().split()[:2]
        assert entry[key_type].get_base64() == key_b64
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    # Our paramiko checks pin against the same file: every key is known, nothing new recorded.
    again = ssh.check_all(inventory, ssh.HostKeyPins(home, "fresh"))
    assert [r.ok for r in again] == [True, True, True] and not any(r.new_key for r in again)


def test_wait_ready_times_out_naming_the_silent_node(ssh_lab: SSHLab, tmp_path: Path) -> None:
    from tests.sshd import free_port

    home = tmp_path / "home"
    silent = inv_mod.Host("wn-9", "wn", "127.0.0.10", port=free_port("127.0.0.10"), key_file=ssh_lab.client_key)
    front = inv_mod.Host("fe", "front", ssh_lab.front.address, user=ssh_lab.front.user, key_file=ssh_lab.client_key)
    inventory = inv_mod.Inventory("silent", (front, silent))
    with pytest.raises(OperationTimeout) as err:
        ssh.wait_ready(inventory, ssh.HostKeyPins(home, "silent"), timeout=2, connect_timeout=1)
    assert "127.0.0.10" in str(err.value) and "refused" in str(err.value)


def _ping_playbook(tmp_path: Path) -> Path:
    book = tmp_path / "ping.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Reach every node",
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [
                        {"name": "Ping", "ansible.builtin.ping": {}},
                        {
                            "name": "Use a secret",
                            "ansible.builtin.command": "echo {{ planted_secret | default('none') }}",
                            "no_log": True,
                            "changed_when": False,
                        },
                    ],
                }
            ]
        )
    )
    return book


def test_ansible_runner_reaches_every_node_through_the_generated_inventory(ssh_lab: SSHLab, lab_inventory) -> None:
    inventory, path, home = lab_inventory
    ssh.wait_ready(inventory, ssh.HostKeyPins(home, "lab"), timeout=30)  # pins the keys first
    events: list[runner.RunEvent] = []
    secret = "planted-Secret-7f3c9a1e5b"
    front_log = ssh_lab.front.log
    before = front_log.read_text(errors="replace")
    result = runner.run_playbook(
        str(_ping_playbook(path.parent)),
        path,
        home=home,
        cluster="lab",
        public_vars={"provision_cluster_name": "lab"},
        secret_vars={"planted_secret": secret},
        on_event=events.append,
    )
    assert result.ok, result.failures
    assert sorted(result.stats) == ["fe", "wn-1", "wn-2"]
    assert {e.host for e in events if e.kind == "ok"} == {"fe", "wn-1", "wn-2"}
    assert any(e.kind == "task" and e.task == "Ping" for e in events)
    # The artifacts are kept under the state directory, and the secret is in none of them.
    assert result.artifacts.is_relative_to(home / "runs" / "lab")
    assert (result.artifacts / "stdout").exists()
    for file in result.artifacts.rglob("*"):
        if file.is_file():
            assert secret not in file.read_text(errors="replace"), file
    assert not list((home / "tmp").glob("*.secrets.yml"))  # the 0600 secrets file is gone after the run
    # Ansible (OpenSSH with the inventory's ProxyCommand) reached wn-2 through the front-end's sshd: its log shows
    # the forwarded connection, and there is no other way to wn-2 (see the paramiko test).
    assert f"{ssh_lab.wn2.address} port 22" in front_log.read_text(errors="replace")[len(before) :]


def test_inventory_passwords_are_scanned_for_in_the_artifacts(ssh_lab: SSHLab, lab_inventory) -> None:
    inventory, path, home = lab_inventory
    ssh.wait_ready(inventory, ssh.HostKeyPins(home, "lab"), timeout=30)
    book = path.parent / "leak.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Show a value that should have been hidden",
                    "hosts": "front",
                    "gather_facts": False,
                    "tasks": [{"name": "Print it", "ansible.builtin.debug": {"msg": "{{ shown }}"}}],
                }
            ]
        )
    )
    become = "Become-Password-Not-A-Var-81c2"
    with pytest.raises(OperationFailed, match="a secret reached the ansible artifacts"):
        runner.run_playbook(
            str(book),
            path,
            home=home,
            cluster="lab",
            public_vars={"shown": f"the become password is {become}"},
            secret_vars={},
            scan_secrets=[become],
        )
    for file in (home / "runs" / "lab").rglob("*"):
        if file.is_file():
            assert become not in file.read_text(errors="replace"), file


def test_site_preflight_with_the_kube_tools_checks_over_ssh(ssh_lab: SSHLab, lab_inventory, tmp_path: Path) -> None:
    """kube_common's kube_tools checks (kubectl, the kubeconfig, the API server's /readyz, Helm) over SSH through
    ansible-runner, against the front-end's stand-in kubectl and helm, with every role's preflight."""
    inventory, path, home = lab_inventory
    ssh.wait_ready(inventory, ssh.HostKeyPins(home, "lab"), timeout=30)
    kubeconfig = tmp_path / "admin.conf"  # the front-end is this machine: the file is there for it
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    components = ["knative", "yunikorn", "minio", "onedata", "oscar", "registry"]
    public = {
        **SCENARIOS["full"],
        "provision_components": components,
        "provision_kubeconfig": str(kubeconfig),
        "kube_common_helm_bin": str(ssh_lab.stub_bin / "helm"),
        "minio_disk_check_path": str(tmp_path),
    }
    calls_before = len(stubkube.calls(ssh_lab.kube_state))
    result = runner.run_playbook(
        "site.yml", path, home=home, cluster="lab", public_vars=public, secret_vars=SECRETS, tags=["preflight"]
    )
    assert result.ok, result.failures
    events = [json.loads(p.read_text()) for p in (result.artifacts / "job_events").glob("*.json")]
    ok = {(e["event_data"].get("role"), e["event_data"].get("task")) for e in events if e["event"] == "runner_on_ok"}
    for task in (
        "Check that kubectl runs",
        "Check the kubeconfig",
        "Check that the API server is ready",
        "Report the Helm version",
    ):
        assert ("kube_common", task) in ok, task
    assert {role for role, _ in ok} >= {"kube_common", *components}
    calls = stubkube.calls(ssh_lab.kube_state)[calls_before:]
    assert [c["argv"] for c in calls] == [["version", "--client"], ["get", "--raw", "/readyz"], ["version", "--short"]]
    assert {c["kubeconfig"] for c in calls} == {str(kubeconfig)}  # the play's KUBECONFIG reached the tools
