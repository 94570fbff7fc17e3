"""Pure parts of the add-on service: components, playbook variables, inventories, and the verify parsers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from provisioner import addons
from provisioner.ansible import inventory as inv
from provisioner.errors import InputError


def test_parse_components_orders_and_refuses_unknown() -> None:
    assert addons.parse_components(None) is None
    assert addons.parse_components("oscar, knative,MINIO") == ["knative", "minio", "oscar"]
    assert addons.parse_components(["yunikorn", "registry,onedata"]) == ["yunikorn", "onedata", "registry"]
    with pytest.raises(InputError, match=r"^--components: unknown component 'openfaas'"):
        addons.parse_components("knative,openfaas")
    with pytest.raises(InputError, match="at least one"):
        addons.parse_components(" , ")


@pytest.mark.parametrize(
    ("inputs", "template", "expected"),
    [
        ({}, "oscar", ["knative", "minio", "oscar"]),
        ({"knative": False}, "oscar", ["minio", "oscar"]),
        ({"kube_install_yunikorn": True}, "oscar", ["knative", "yunikorn", "minio", "oscar"]),
        (
            {"onedata_host": "op.example.org", "registry_server": "r.example.org"},
            "oscar",
            ["knative", "minio", "onedata", "oscar", "registry"],
        ),
        ({}, "kubernetes", []),
        ({"kube_install_yunikorn": True}, "kubernetes", ["yunikorn"]),
    ],
)
def test_default_components_follow_the_inputs(inputs: dict[str, object], template: str, expected: list[str]) -> None:
    assert addons.default_components(inputs, template) == expected


def test_oscar_brings_what_it_is_configured_with() -> None:
    assert addons.with_dependencies(["oscar"], {}) == ["knative", "minio", "oscar"]
    assert addons.with_dependencies(["oscar"], {"knative": False, "kube_install_yunikorn": True}) == [
        "yunikorn",
        "minio",
        "oscar",
    ]
    assert addons.with_dependencies(["registry"], {}) == ["registry"]


def test_components_needing_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="onedata needs"):
        addons.check_components(["onedata"], {})
    with pytest.raises(InputError, match="registry needs"):
        addons.check_components(["registry"], {"registry_server": ""})
    addons.check_components(["onedata"], {"onedata_host": "op.example.org"})
    with pytest.raises(InputError, match=r"knative .* needs Kubernetes >= 1.31; the cluster's kube_version is 1.29.4"):
        addons.check_components(["knative"], {"kube_version": "1.29.4"})
    addons.check_components(["knative"], {"kube_version": "1.31.0"})


def test_playbook_vars_carry_no_secret_and_secret_vars_only_known_names() -> None:
    inputs = {"cluster_name": "", "kube_install_yunikorn": True, "onedata_host": "op.example.org"}
    public = addons.playbook_vars("c1", inputs, ["knative", "yunikorn"], insecure=False, kubeconfig="/k")
    assert public["cluster_name"] == "c1" and public["oscar_yunikorn_enabled"] is True
    assert public["oscar_serverless_backend"] == "knative" and public["provision_kubeconfig"] == "/k"
    assert not any(word in key for key in public for word in ("password", "token"))
    secrets = addons.secret_vars({"oscar_password": "x" * 12, "minio_password": "", "unrelated": "y"})
    assert secrets == {"oscar_password": "x" * 12}


def node(name: str, status: str, reason: str | None = None) -> dict[str, object]:
    cond: dict[str, object] = {"type": "Ready", "status": status}
    if reason:
        cond["reason"] = reason
    return {"metadata": {"name": name}, "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, cond]}}


def test_nodes_ready() -> None:
    assert addons.nodes_ready({"items": [node("fe", "True"), node("wn-1", "True")]}) == (True, "2/2 nodes Ready")
    ok, detail = addons.nodes_ready({"items": [node("fe", "True"), node("wn-1", "Unknown", "NodeStatusUnknown")]})
    assert not ok and detail == "1/2 Ready; not ready: wn-1 (NodeStatusUnknown)"
    assert addons.nodes_ready({"items": []}) == (False, "no nodes registered")
    assert addons.nodes_ready({"items": [{"metadata": {"name": "x"}, "status": {}}]})[0] is False


GOOD_CONFIG = {
    "minio_provider": {"endpoint": "http://minio.minio:9000", "verify": True},
    "name": "oscar",
    "namespace": "oscar",
    "serverless_backend": "knative",
    "yunikorn_enable": False,
}


def test_oscar_config_problems() -> None:
    assert addons.oscar_config_problems(GOOD_CONFIG, ["knative", "minio", "oscar"]) == []
    problems = addons.oscar_config_problems(
        {**GOOD_CONFIG, "serverless_backend": "", "minio_provider": {}}, ["knative", "yunikorn", "minio", "oscar"]
    )
    assert problems == [
        "serverless_backend is 'empty', expected 'knative'",
        "yunikorn_enable is false, expected true",
        "minio_provider has no endpoint",
    ]


@pytest.fixture
def fake_oscar() -> Iterator[str]:
    """OSCAR cannot run here (it needs Kubernetes): a loopback stand-in answering its two documented endpoints."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                body, code = b"Ok", 200
            elif self.path == "/system/config":
                authorized = self.headers.get("Authorization", "").startswith("Basic ")
                body, code = (json.dumps(GOOD_CONFIG).encode(), 200) if authorized else (b"", 401)
            else:
                body, code = b"", 404
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_check_oscar_reports_each_check(fake_oscar: str) -> None:
    checks = addons.check_oscar(
        fake_oscar, password="p" * 10, components=["knative", "minio", "oscar"], verify=True, timeout=5
    )
    assert [(c.name, c.status) for c in checks] == [("oscar health", "ok"), ("oscar config", "ok")]
    wrong = addons.check_oscar(fake_oscar, password="p" * 10, components=["yunikorn", "oscar"], verify=True, timeout=5)
    assert wrong[1].status == "failed" and "yunikorn_enable is false" in wrong[1].detail
    nopass = addons.check_oscar(fake_oscar, password=None, components=["oscar"], verify=True, timeout=5)
    assert nopass[1].status == "skipped"


def test_check_oscar_unreachable() -> None:
    checks = addons.check_oscar("http://127.0.0.1:9/", password="x", components=["oscar"], verify=True, timeout=2)
    assert [(c.name, c.status) for c in checks] == [("oscar health", "failed"), ("oscar config", "skipped")]


# --- user-written inventories ----------------------------------------------------------------------------------------


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_user_inventory_both_shapes(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("k")
    key.chmod(0o600)
    flat = write(
        tmp_path,
        {
            "front": {"hosts": {"pi0": {"ansible_host": "192.0.2.10", "ansible_user": "pi"}}},
            "wn": {
                "vars": {"ansible_ssh_private_key_file": "id", "ansible_port": 2222},
                "hosts": {"pi1": {"ansible_host": "192.0.2.11", "provision_jump": "pi0"}},
            },
        },
    )
    parsed = inv.load_user_inventory(flat, "edge")
    assert parsed.front.name == "pi0" and parsed.front.user == "pi"
    (worker,) = parsed.workers
    assert worker.port == 2222 and worker.key_file == key and worker.jump == "pi0"
    nested = write(tmp_path, {"all": {"children": {"front": {"hosts": {"a": None}}}}})
    assert inv.load_user_inventory(nested, "edge").front.address == "a"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "must be a YAML inventory"),
        ({"masters": {}}, "unknown group 'masters'"),
        ({"wn": {"hosts": {"a": {}}}}, "front must have exactly one host"),
        ({"front": {"hosts": {"a": {}, "b": {}}}}, "front must have exactly one host"),
        ({"front": {"hosts": {"a": {"ansible_port": 70000}}}}, "front.hosts.a.ansible_port: must be a port number"),
        ({"front": {"hosts": {"a": {"ansible_port": "x"}}}}, "ansible_port: must be a port number"),
        ({"front": {"hosts": {"a": {"ansible_user": "Bad User"}}}}, "ansible_user: must be a user name"),
        ({"front": {"hosts": {"a": {"ansible_host": "a b"}}}}, "ansible_host: must be a host name"),
        ({"front": {"hosts": {"a": {"ansible_ssh_private_key_file": "/nonexistent/k"}}}}, "no such file"),
        ({"front": {"hosts": {"a": {}}}, "wn": {"hosts": {"a": {}}}}, "host 'a' is in both groups"),
        ({"front": {"hosts": {"a": {"provision_jump": "zz"}}}}, "provision_jump 'zz' is not another host"),
        ({"front": {"hosts": {"a": {"provision_jump": "a"}}}}, "provision_jump 'a' is not another host"),
        ({"front": {"hosts": "a"}}, "front.hosts: must be a mapping"),
        ({"all": "x"}, "all: must be a mapping"),
        ({"front": {"hosts": {"-bad": {}}}}, "a host name must be"),
    ],
)
def test_user_inventory_refusals(tmp_path: Path, doc: object, message: str) -> None:
    with pytest.raises(InputError) as err:
        inv.load_user_inventory(write(tmp_path, doc), "edge")
    assert message in str(err.value)
    assert str(err.value).startswith("--inventory")


def test_open_key_file_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("k")
    key.chmod(0o644)
    path = write(tmp_path, {"front": {"hosts": {"a": {"ansible_ssh_private_key_file": str(key)}}}})
    with pytest.raises(InputError, match="readable by others"):
        inv.load_user_inventory(path, "edge")
