"""``provision cluster`` commands in-process against a fake IM client: destroy, secrets, ssh --print, logs --vm."""

from __future__ import annotations

import json
import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer

from provisioner.cli import cluster as cli_cluster
from provisioner.im import InfraState, VMInfo
from provisioner.im.models import VMCredentials
from provisioner.lifecycle import Lifecycle
from provisioner.state import Store
from provisioner.tosca import SecretStore
from tests.clihelper import record_installed_edge

IM_URL = "http://127.0.0.1:9"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake-key-material\n-----END OPENSSH PRIVATE KEY-----\n"
VM_PASSWORD = "Vm-Pass-9f3a1c"


def vm(vm_id: str, name: str, private: str, public: str | None, *, key: str | None = KEY) -> VMInfo:
    creds = VMCredentials(username="cloudadm", password=None if key else VM_PASSWORD, private_key=key)
    return VMInfo(
        id=vm_id,
        state="configured",
        name=name,
        private_ips=[private],
        public_ips=[public] if public else [],
        system={},
        credentials=creds,
    )


class FakeIM:
    """What the cluster commands ask of an :class:`IMClient`, for one infrastructure."""

    def __init__(self, vms: list[VMInfo], logs: dict[str, str] | None = None, contmsg: str = "") -> None:
        self.url = IM_URL
        self.vms = {v.id: v for v in vms}
        self.logs = logs or {}
        self.whole = contmsg
        self.calls: list[tuple[str, ...]] = []

    def state(self, infra_id: str) -> InfraState:
        return InfraState("configured", {v: "configured" for v in self.vms})

    def vm_ids(self, infra_id: str) -> list[str]:
        return list(self.vms)

    def vm_info(self, infra_id: str, vm_id: str) -> VMInfo:
        return self.vms[vm_id]

    def contmsg(self, infra_id: str) -> str:
        self.calls.append(("contmsg", infra_id))
        return self.whole

    def vm_contmsg(self, infra_id: str, vm_id: str) -> str:
        self.calls.append(("vm_contmsg", infra_id, vm_id))
        return self.logs.get(vm_id, "")

    def destroy(self, infra_id: str, *, force: bool = False) -> None:
        self.calls.append(("destroy", infra_id))
        self.gone = True

    def list_infrastructures(self) -> list[str]:
        return [] if getattr(self, "gone", False) else ["inf-1"]

    def close(self) -> None:
        pass


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    for key in ("PROVISION_IM_URL", "PROVISION_AUTH_FILE", "PROVISION_AUTH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PROVISION_HOME", str(home))
    monkeypatch.setenv("PROVISION_CONFIG", str(config))
    monkeypatch.setenv("PROVISION_PROGRESS_INTERVAL", "0")
    return home


def use_im(monkeypatch: pytest.MonkeyPatch, im: FakeIM) -> None:
    real: Callable[..., Lifecycle] = cli_cluster.lifecycle

    def fake(ctx: typer.Context, progress: Any = None) -> Lifecycle:
        settings = real(ctx, progress).settings
        return Lifecycle(settings, client_factory=lambda url: im, default_im_url=IM_URL)  # type: ignore[arg-type,return-value]

    monkeypatch.setattr(cli_cluster, "lifecycle", fake)


def record(home: Path, name: str, *, im_url: str = IM_URL, infra_id: str | None = "inf-1", **extra: Any) -> None:
    with Store.open(home) as store:
        store.upsert_cluster(
            name,
            im_url=im_url,
            template="oscar",
            site="local-sim",
            inputs={},
            deployment_id=f"dep-{name}",
            infra_id=infra_id,
            state="configured",
            extra=extra or None,
        )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from provisioner.cli.main import main_exit_code

    code = main_exit_code(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cluster_vms() -> list[VMInfo]:
    return [
        vm("0", "front", "10.0.0.1", "192.0.2.10"),
        vm("1", "wn", "10.0.0.2", None),
        vm("2", "wn", "10.0.0.3", None),
    ]


# --- destroy ----------------------------------------------------------------------------------------------------------


def test_destroying_an_edge_cluster_says_what_was_removed_and_that_the_hosts_are_untouched(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_installed_edge(home, "edge1", tmp_path / "hosts.yml")
    SecretStore(home, "edge1").update({"k3s_token": "Edge-Token-1b2c"})
    code, out, err = run(capsys, "cluster", "destroy", "edge1", "--yes")
    assert code == 0, err
    assert "IM" not in err, err
    line = err.strip()
    assert line.startswith("edge cluster edge1: record and local files removed"), line
    assert str(SecretStore(home, "edge1").path) in line and "hosts untouched" in line
    assert "Edge-Token-1b2c" not in out + err
    with Store.open(home) as store:
        assert store.get_cluster("edge1") is None


def test_the_confirmation_for_an_edge_cluster_does_not_speak_of_destroying_vms(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    record_installed_edge(home, "edge1", tmp_path / "hosts.yml")
    asked: list[str] = []

    def answer_no(question: str, **_: object) -> bool:
        asked.append(question)
        return False

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr(typer, "confirm", answer_no)
    code, out, err = run(capsys, "cluster", "destroy", "edge1")
    assert (code, out, err.strip()) == (1, "", "aborted")
    assert asked == ["Forget edge cluster edge1 (its hosts are left as they are)?"]
    with Store.open(home) as store:
        assert store.get_cluster("edge1") is not None  # "n" changed nothing


def test_destroy_json_of_an_edge_cluster_carries_the_same_facts(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_installed_edge(home, "edge1", tmp_path / "hosts.yml")
    code, out, err = run(capsys, "cluster", "destroy", "edge1", "--yes", "-o", "json")
    assert code == 0, err
    assert json.loads(out) == {
        "name": "edge1",
        "kind": "edge",
        "infra_id": None,
        "removed": ["registry record"],
        "hosts_touched": False,
    }


def test_destroying_an_im_cluster_still_says_nothing_is_left_in_im(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    im = FakeIM(cluster_vms())
    use_im(monkeypatch, im)
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "destroy", "c1", "--yes", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["kind"] == "im" and json.loads(out)["infra_id"] == "inf-1"
    assert im.calls[0] == ("destroy", "inf-1")


# --- secrets ----------------------------------------------------------------------------------------------------------

GENERATED = {"oscar_password": "Gen-Oscar-Pass-71c2", "minio_secret_key": "Gen-Minio-Key-0a9e"}


def test_secrets_are_masked_unless_shown(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(home, "c1")
    SecretStore(home, "c1").update(GENERATED)
    code, out, err = run(capsys, "cluster", "secrets", "c1")
    assert code == 0, err
    assert "oscar_password" in out and "minio_secret_key" in out and "***" in out
    assert str(SecretStore(home, "c1").path) in out
    assert not [v for v in GENERATED.values() if v in out + err]
    code, out, err = run(capsys, "cluster", "secrets", "c1", "--show")
    assert code == 0, err
    assert all(v in out for v in GENERATED.values()), out


def test_secrets_json_is_one_document_masked_unless_shown(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(home, "c1")
    SecretStore(home, "c1").update(GENERATED)
    code, out, err = run(capsys, "cluster", "secrets", "c1", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc == {
        "name": "c1",
        "path": str(SecretStore(home, "c1").path),
        "shown": False,
        "secrets": {"minio_secret_key": "***", "oscar_password": "***"},
    }
    code, out, err = run(capsys, "cluster", "secrets", "c1", "-o", "json", "--show")
    assert code == 0, err
    assert json.loads(out)["secrets"] == GENERATED


def test_secrets_of_an_unknown_cluster_says_so_like_every_command(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "cluster", "secrets", "ghost")
    status = run(capsys, "cluster", "status", "ghost")
    assert (code, out, err) == status, err  # the same words and exit code (1) as `cluster status`
    assert code == 1 and out == ""
    assert err.startswith("error: no cluster named 'ghost'"), err


# --- ssh --print ------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError(f"ssh was run: {args}")

    monkeypatch.setattr(os, "execvp", refuse)


def test_ssh_print_names_the_vm_asked_for(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_exec: None
) -> None:
    use_im(monkeypatch, FakeIM(cluster_vms()))
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "ssh", "c1", "--print", "--vm", "1")
    assert code == 0, err
    argv = shlex.split(out)
    assert argv[-1] == "cloudadm@10.0.0.2", argv  # VM 1, through the front-end (no public IP)
    assert str(home / "keys" / "c1" / "vm-1.pem") in argv
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "cloudadm@192.0.2.10" in proxy
    code, out, err = run(capsys, "cluster", "ssh", "c1", "--print", "--", "uptime", "-p")
    assert code == 0, err
    assert shlex.split(out)[-3:] == ["cloudadm@192.0.2.10", "uptime", "-p"]


def test_ssh_to_an_unknown_vm_is_bad_input_naming_the_known_ones(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_exec: None
) -> None:
    use_im(monkeypatch, FakeIM(cluster_vms()))
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "ssh", "c1", "--vm", "7", "--print")
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: --vm: no VM 7 in cluster 'c1' (known VM ids: 0, 1, 2)"), err


def test_ssh_print_to_a_password_vm_says_where_the_password_is(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_exec: None
) -> None:
    vms = [vm("0", "front", "10.0.0.1", "192.0.2.10"), vm("1", "wn", "10.0.0.2", "192.0.2.11", key=None)]
    use_im(monkeypatch, FakeIM(vms))
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "ssh", "c1", "--print", "--vm", "1")
    assert code == 0, err
    assert shlex.split(out)[-1] == "cloudadm@192.0.2.11"
    password_file = home / "keys" / "c1" / "vm-1.password"
    assert f"password: it is in {password_file}" in err, err
    assert VM_PASSWORD not in out + err
    assert password_file.read_text().strip() == VM_PASSWORD
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600


# --- logs --vm --------------------------------------------------------------------------------------------------------


def test_logs_of_one_vm_print_that_vms_log(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    im = FakeIM(cluster_vms(), logs={"1": "TASK [ping] ***\nok: [wn-1]\n"}, contmsg="the whole log\n")
    use_im(monkeypatch, im)
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "logs", "c1", "--vm", "1")
    assert code == 0, err
    assert out == "TASK [ping] ***\nok: [wn-1]\n"
    assert ("vm_contmsg", "inf-1", "1") in im.calls


def test_an_empty_vm_log_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_im(monkeypatch, FakeIM(cluster_vms(), logs={"2": ""}))
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "logs", "c1", "--vm", "2")
    assert code == 0, err
    assert out.strip() == "VM 2 of cluster c1: the contextualization log is empty (IM has recorded nothing for it yet)"
    code, out, err = run(capsys, "cluster", "logs", "c1", "--vm", "2", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["log"] == "" and json.loads(out)["vm"] == "2"


def test_logs_of_an_unknown_vm_is_bad_input_naming_the_known_ones(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    im = FakeIM(cluster_vms())
    use_im(monkeypatch, im)
    record(home, "c1")
    code, out, err = run(capsys, "cluster", "logs", "c1", "--vm", "7")
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: --vm: no VM 7 in cluster 'c1' (known VM ids: 0, 1, 2)"), err
    assert not [c for c in im.calls if c[0] == "vm_contmsg"]


def test_endpoint_records_shows_and_forgets_the_oscar_url(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_installed_edge(home, "edge1", tmp_path / "hosts.yml")
    code, out, err = run(capsys, "cluster", "endpoint", "edge1")
    assert code == 0 and "no OSCAR URL recorded" in out, err
    code, out, err = run(capsys, "cluster", "endpoint", "edge1", "--oscar", "https://oscar.example.org/")
    assert code == 0 and out.strip() == "cluster edge1: OSCAR at https://oscar.example.org/", err
    with Store.open(home) as store:
        rec = store.get_cluster("edge1")
        assert rec is not None and rec.extra["oscar_url"] == "https://oscar.example.org/"
        assert rec.extra["inventory_source"] == str(tmp_path / "hosts.yml")  # the rest of extra is kept
    code, out, err = run(capsys, "cluster", "endpoint", "edge1", "-o", "json")
    assert json.loads(out) == {"name": "edge1", "oscar_url": "https://oscar.example.org/"}
    code, out, err = run(capsys, "cluster", "endpoint", "edge1", "--oscar", "oscar.example.org")
    assert code == 2 and "--oscar: must be an http(s) URL" in err
    code, out, err = run(capsys, "cluster", "endpoint", "edge1", "--clear")
    assert code == 0 and "no OSCAR URL recorded" in out
    code, out, err = run(capsys, "cluster", "endpoint", "nosuch", "--oscar", "https://x/")
    assert code == 1
