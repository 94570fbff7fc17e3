"""Pure parts of the add-on service: components, playbook variables, inventories, and the verify parsers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from provisioner import addons
from provisioner.ansible import inventory as inv
from provisioner.errors import InputError
from tests.fakeoscar import GOOD_CONFIG, fake_oscar, flat_config, oscar_config
from tests.sshd import free_port


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


def test_playbook_vars_pass_the_buckets() -> None:
    public = addons.playbook_vars("c1", {"minio_buckets": ["in", "out.v2"]}, ["minio"], insecure=False, kubeconfig="/k")
    assert public["minio_buckets"] == ["in", "out.v2"]
    assert addons.playbook_vars("c1", {}, ["minio"], insecure=False, kubeconfig="/k")["minio_buckets"] == []


def test_minio_buckets_input_follows_s3_rules() -> None:
    from provisioner import tosca

    def parsed(value: object) -> object:
        return tosca.prepare_inputs("oscar", {"minio_buckets": value}, secrets_store=None)["minio_buckets"]

    assert parsed("inputs, outputs.v2") == ["inputs", "outputs.v2"]  # --set text: comma-separated
    assert parsed(["abc", "x-y.z", "123"]) == ["abc", "x-y.z", "123"]  # an inputs file's YAML list
    assert parsed("") == [] and parsed([]) == []
    for bad, why in [
        ("Bad_Bucket", "must be an S3 bucket name"),
        ("ab", "at least 3 characters"),
        ("a" * 64, "at most 63 characters"),
        ("192.168.1.10", "must be an S3 bucket name"),
        ("a..b", "must be an S3 bucket name"),
        ("a.-b", "must be an S3 bucket name"),
        ("xn--abc", "must be an S3 bucket name"),
        ("abc-", "must be an S3 bucket name"),
        ("data-s3alias", "must be an S3 bucket name"),
        ("abc,abc", "lists 'abc' twice"),
        ([1, 2], "item 1 must be a string"),
        ({"a": "b"}, "must be a list of strings"),
    ]:
        with pytest.raises(InputError) as err:
            parsed(bad)
        assert str(err.value).startswith("minio_buckets: "), err.value
        assert why in str(err.value) and err.value.field == "minio_buckets" and err.value.exit_code == 2
        assert "\n" not in str(err.value)
    # Rendered for IM as a TOSCA list of strings, and valid for tosca-parser.
    resolved = tosca.prepare_inputs("oscar", {"minio_buckets": "inp,out"}, secrets_store=None)
    doc = tosca.render(
        "oscar", tosca.resolve_site(tosca.LOCAL_SIM, {}), resolved, cluster_name="b", deployment_id="d-1"
    )
    entry = doc["topology_template"]["inputs"]["minio_buckets"]
    assert entry == {**entry, "type": "list", "entry_schema": {"type": "string"}, "default": ["inp", "out"]}
    tosca.validate_offline(doc)


def test_partial_installs_add_components_and_keep_traefik_off() -> None:
    assert addons.merge_components(["knative", "minio", "oscar"], ["registry"]) == [
        "knative",
        "minio",
        "oscar",
        "registry",
    ]
    assert addons.merge_components(None, ["registry"]) == ["registry"]
    # K3s's Traefik: off once Knative is installed, whatever a later run selects; on while Knative never was.
    assert addons.k3s_disable_traefik({}, ["knative", "minio", "oscar"]) is True
    assert addons.k3s_disable_traefik({"components": ["knative", "minio", "oscar"]}, ["registry"]) is True
    assert addons.k3s_disable_traefik({"k3s_disable_traefik": True}, ["registry"]) is True  # a failed run set it
    assert addons.k3s_disable_traefik({"components": ["minio", "oscar"]}, ["registry"]) is False
    assert addons.k3s_disable_traefik({}, ["registry"]) is False
    # After a successful install: the union, and OSCAR's wiring only when OSCAR was (re)installed.
    after = addons.installed_extra({"kind": "edge", "components": ["knative", "minio", "oscar"]}, ["registry"], "r2")
    assert after == {"kind": "edge", "components": ["knative", "minio", "oscar", "registry"], "last_install": "r2"}
    again = addons.installed_extra(after, ["minio", "oscar"], "r3")
    assert again["components"] == ["knative", "minio", "oscar", "registry"]
    assert again["oscar_wiring"] == {"serverless_backend": "", "yunikorn_enable": False}


def test_edge_inputs_merge_given_over_recorded() -> None:
    recorded = {"onedata_host": "op.example.org", "registry_server": "r.example.org", "wn_num": 3, "gone_input": "x"}
    # Nothing given: what was recorded (a name the template no longer has is dropped).
    kept = {"onedata_host": "op.example.org", "registry_server": "r.example.org", "wn_num": 3}
    assert addons.edge_inputs(recorded, {}) == kept
    # Given values win, others are kept; an empty value given clears one.
    merged = addons.edge_inputs(recorded, {"registry_server": "", "minio_buckets": "inbox"})
    assert merged == {"onedata_host": "op.example.org", "registry_server": "", "wn_num": 3, "minio_buckets": "inbox"}
    assert addons.edge_inputs({}, {"knative": "false"}) == {"knative": "false"}


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


def test_nodes_ready_counts_the_inventory_hosts() -> None:
    two = {"items": [node("fe", "True"), node("wn-1", "True")]}
    # 3 hosts in the inventory, 2 registered: the one that never joined is a failure, all Ready or not.
    assert addons.nodes_ready(two, hosts=3) == (False, "2 of 3 hosts are nodes (all Ready)")
    assert addons.nodes_ready(two, hosts=2) == (True, "2/2 nodes Ready")
    sick = {"items": [node("fe", "True"), node("wn-1", "False", "KubeletNotReady")]}
    assert addons.nodes_ready(sick, hosts=3) == (
        False,
        "1/2 Ready; not ready: wn-1 (KubeletNotReady); only 2 of 3 hosts are nodes",
    )
    assert addons.nodes_ready({"items": []}, hosts=3) == (False, "no nodes registered (the inventory has 3 hosts)")


def test_oscar_config_problems() -> None:
    # OSCAR's answer (types.ConfigForUser): the settings under "config", minio_provider beside it.
    assert addons.oscar_config_problems(GOOD_CONFIG, ["knative", "minio", "oscar"]) == []
    problems = addons.oscar_config_problems(
        {**oscar_config(serverless_backend=None), "minio_provider": {}}, ["knative", "yunikorn", "minio", "oscar"]
    )
    assert problems == [
        "serverless_backend is 'empty', expected 'knative'",
        "yunikorn_enable is false, expected true",
        "minio_provider has no endpoint",
    ]


def test_oscar_config_is_read_from_the_config_object() -> None:
    # The settings are under "config": top-level keys of the same names are not OSCAR's settings.
    decoy = {**oscar_config(serverless_backend=None, yunikorn_enable=True), "serverless_backend": "knative"}
    assert addons.oscar_config_problems(decoy, ["knative", "minio", "oscar"]) == [
        "serverless_backend is 'empty', expected 'knative'",
        "yunikorn_enable is true, expected false",
    ]
    assert addons.oscar_settings(GOOD_CONFIG)["serverless_backend"] == "knative"
    # Old OSCAR releases answered flat: read when there is no "config" object.
    flat = flat_config(GOOD_CONFIG)
    assert "config" not in flat and flat["serverless_backend"] == "knative"
    assert addons.oscar_config_problems(flat, ["knative", "minio", "oscar"]) == []
    assert addons.oscar_config_problems(flat_config(oscar_config(yunikorn_enable=True)), ["knative", "minio"]) == [
        "yunikorn_enable is true, expected false"
    ]


def test_oscar_config_wiring_is_checked_both_ways() -> None:
    # Knative not asked for: OSCAR must not use it.
    no_knative = addons.oscar_config_problems(GOOD_CONFIG, ["minio", "oscar"])
    assert no_knative == ["serverless_backend is 'knative', expected empty (Knative was not asked for)"]
    assert addons.oscar_config_problems(oscar_config(serverless_backend=""), ["minio", "oscar"]) == []
    # Absent (OSCAR omits an empty serverless_backend) counts as empty.
    assert addons.oscar_config_problems(oscar_config(serverless_backend=None), ["minio", "oscar"]) == []
    # YuniKorn on when OSCAR was not told to use it.
    assert addons.oscar_config_problems(oscar_config(yunikorn_enable=True), ["knative", "minio", "oscar"]) == [
        "yunikorn_enable is true, expected false"
    ]
    # MinIO: the in-cluster Service of our minio role, nothing else (a trailing slash is the same URL).
    other = {**GOOD_CONFIG, "minio_provider": {"endpoint": "https://s3.example.org"}}
    assert addons.oscar_config_problems(other, ["knative", "minio", "oscar"]) == [
        "minio_provider.endpoint is 'https://s3.example.org', expected 'http://minio.minio:9000' (our MinIO's Service)"
    ]
    slash = {**GOOD_CONFIG, "minio_provider": {"endpoint": "http://minio.minio:9000/"}}
    assert addons.oscar_config_problems(slash, ["knative", "minio", "oscar"]) == []
    # What OSCAR was installed with wins over what the components imply (YuniKorn added later, OSCAR not redone).
    wiring = {"serverless_backend": "knative", "yunikorn_enable": False}
    assert addons.oscar_config_problems(GOOD_CONFIG, ["knative", "yunikorn", "minio", "oscar"], wiring) == []


def test_verify_endpoints_match_the_roles() -> None:
    roles = Path(__file__).resolve().parents[2] / "provisioner" / "data" / "playbooks" / "roles"
    oscar = yaml.safe_load((roles / "oscar" / "defaults" / "main.yml").read_text())
    minio = yaml.safe_load((roles / "minio" / "defaults" / "main.yml").read_text())
    assert oscar["oscar_node_port"] == addons.OSCAR_NODE_PORT
    endpoint = oscar["oscar_minio_endpoint"].replace(
        "{{ minio_namespace | default('minio') }}", minio["minio_namespace"]
    )
    assert endpoint == addons.MINIO_IN_CLUSTER_ENDPOINT


@pytest.fixture
def fake_oscar_url() -> Iterator[str]:
    with fake_oscar() as url:
        yield url


def test_check_oscar_reports_each_check(fake_oscar_url: str) -> None:
    fake = fake_oscar_url
    checks = addons.check_oscar(
        fake, password="p" * 10, components=["knative", "minio", "oscar"], verify=True, timeout=5
    )
    assert [(c.name, c.status) for c in checks] == [("oscar health", "ok"), ("oscar config", "ok")]
    wrong = addons.check_oscar(fake, password="p" * 10, components=["yunikorn", "oscar"], verify=True, timeout=5)
    assert wrong[1].status == "failed" and "yunikorn_enable is false" in wrong[1].detail
    nopass = addons.check_oscar(fake, password=None, components=["oscar"], verify=True, timeout=5)
    assert nopass[1].status == "skipped"


def test_check_oscar_reads_the_wrapped_answer_over_http() -> None:
    # A YuniKorn cluster: OSCAR says so under "config" only.
    with fake_oscar(config=oscar_config(yunikorn_enable=True)) as url:
        checks = addons.check_oscar(
            url, password="p" * 10, components=["knative", "yunikorn", "minio", "oscar"], verify=True, timeout=5
        )
        assert checks[1] == addons.Check(
            "oscar config",
            "ok",
            "wired as asked: serverless backend knative, yunikorn on, minio http://minio.minio:9000",
        )
        wrong = addons.check_oscar(url, password="p" * 10, components=["knative", "oscar"], verify=True, timeout=5)
        assert wrong[1].detail == "yunikorn_enable is true, expected false"
    with fake_oscar(config=flat_config(GOOD_CONFIG)) as url:  # an old OSCAR's flat answer
        flat = addons.check_oscar(
            url, password="p" * 10, components=["knative", "minio", "oscar"], verify=True, timeout=5
        )
        assert flat[1].status == "ok", flat


def test_check_oscar_unreachable() -> None:
    checks = addons.check_oscar("http://127.0.0.1:9/", password="x", components=["oscar"], verify=True, timeout=2)
    assert [(c.name, c.status) for c in checks] == [("oscar health", "failed"), ("oscar config", "skipped")]


def test_check_oscar_falls_back_to_the_node_port(fake_oscar_url: str) -> None:
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}/"  # the Ingress: nothing listens
    checks = addons.check_oscar(
        closed,
        password="p" * 10,
        components=["knative", "minio", "oscar"],
        verify=True,
        timeout=5,
        fallback=fake_oscar_url,
    )
    assert [(c.name, c.status) for c in checks] == [("oscar health", "ok"), ("oscar config", "ok")]
    assert checks[0].detail.startswith(fake_oscar_url.rstrip("/") + "/health answered 200 Ok")
    assert f"the Ingress did not connect: {closed.rstrip('/')}/health" in checks[0].detail
    both = addons.check_oscar(
        closed, password="p" * 10, components=["oscar"], verify=True, timeout=5, fallback="http://127.0.0.1:9/"
    )
    assert [(c.name, c.status) for c in both] == [("oscar health", "failed"), ("oscar config", "skipped")]
    assert "NodePort http://127.0.0.1:9/health" in both[0].detail


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
        (
            {"front": {"hosts": {"a": {"provision_jump": "zz"}}}},
            "front.hosts.a.provision_jump: provision_jump 'zz' is not another host",
        ),
        (
            {"front": {"hosts": {"a": {"provision_jump": "a"}}}},
            "front.hosts.a.provision_jump: provision_jump 'a' is not another host",
        ),
        (
            {
                "front": {"hosts": {"a": {}}},
                "wn": {"hosts": {"b": {"provision_jump": "a"}, "c": {"provision_jump": "b"}}},
            },
            "--inventory: wn.hosts.c.provision_jump: 'b' must name a host reached directly: chains of jump hosts are "
            "not supported ('b' has provision_jump 'a')",
        ),
        (
            {"front": {"hosts": {"a": {"provision_jump": "b"}}}, "wn": {"hosts": {"b": {"provision_jump": "a"}}}},
            "front.hosts.a.provision_jump: 'b' must name a host reached directly: chains of jump hosts",
        ),
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


def test_edge_inventory_keeps_become_and_ssh_args(tmp_path: Path) -> None:
    doc = {
        "all": {
            "vars": {"ansible_user": "pi", "ansible_become": "yes", "ansible_become_password": "Become-Pw-1d4e"},
            "children": {
                "front": {
                    "hosts": {
                        "pi0": {
                            "ansible_host": "192.0.2.10",
                            "ansible_become_user": "admin",
                            "ansible_ssh_common_args": "-o ServerAliveInterval=15 -o Ciphers=aes256-gcm@openssh.com",
                            "ansible_ssh_extra_args": "-o ConnectionAttempts=3",
                            "ansible_become_method": "sudo",
                        }
                    }
                },
                "wn": {"hosts": {"pi1": {"ansible_host": "192.0.2.11", "ansible_password": "Login-Pw-7a2b"}}},
            },
        }
    }
    parsed = inv.load_user_inventory(write(tmp_path, doc), "edge")
    assert parsed.front.become is True and parsed.front.become_user == "admin"
    assert sorted(parsed.secrets()) == ["Become-Pw-1d4e", "Become-Pw-1d4e", "Login-Pw-7a2b"]
    assert "Become-Pw" not in repr(parsed)
    out = tmp_path / "out" / "hosts.yml"
    inv.write(parsed, out, tmp_path / "known")
    text = out.read_text()
    assert "Become-Pw" not in text and "Login-Pw" not in text
    hosts = yaml.safe_load(text)["all"]["children"]
    front = hosts["front"]["hosts"]["pi0"]
    assert front["ansible_become"] is True and front["ansible_become_user"] == "admin"
    assert front["ansible_become_method"] == "sudo" and front["ansible_ssh_extra_args"] == "-o ConnectionAttempts=3"
    # Ours first (OpenSSH keeps an option's first value), then the user's own.
    args = front["ansible_ssh_common_args"]
    assert args.index("StrictHostKeyChecking=accept-new") < args.index("ServerAliveInterval=15")
    assert args.endswith("-o ServerAliveInterval=15 -o Ciphers=aes256-gcm@openssh.com")
    for host, expected in (
        ("pi0", {"ansible_become_password": "Become-Pw-1d4e"}),
        ("pi1", {"ansible_password": "Login-Pw-7a2b", "ansible_become_password": "Become-Pw-1d4e"}),
    ):
        file = out.parent / "host_vars" / f"{host}.yml"
        assert yaml.safe_load(file.read_text()) == expected
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("host_vars", "message"),
    [
        (
            {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"},
            "ansible_ssh_common_args: sets StrictHostKeyChecking",
        ),
        ({"ansible_ssh_common_args": "-oUserKnownHostsFile=/dev/null"}, "sets UserKnownHostsFile"),
        ({"ansible_ssh_extra_args": "-o 'ProxyCommand nc %h %p'"}, "ansible_ssh_extra_args: sets ProxyCommand"),
        ({"ansible_ssh_args": "-J bastion"}, "ansible_ssh_args: uses -J"),
        ({"ansible_ssh_common_args": "-o 'unbalanced"}, "cannot be split into ssh arguments"),
        ({"ansible_ssh_common_args": ["-o", "x"]}, "must be a string of ssh options"),
        ({"ansible_ssh_pass": "x"}, "ansible_ssh_pass: write it as ansible_password"),
        ({"ansible_become_pass": "x"}, "ansible_become_pass: write it as ansible_become_password"),
        ({"ansible_become": "maybe"}, "ansible_become: must be true or false"),
        ({"ansible_become_user": "Bad User"}, "ansible_become_user: must be a user name"),
    ],
)
def test_edge_inventory_refuses_what_would_be_lost_or_unsafe(
    tmp_path: Path, host_vars: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as err:
        inv.load_user_inventory(write(tmp_path, {"front": {"hosts": {"a": host_vars}}}), "edge")
    assert str(err.value).startswith("--inventory: front.hosts.a.")
    assert message in str(err.value) and err.value.exit_code == 2


# --- kubectl on the front-end, as whoever can read the kubeconfig -----------------------------------------------------


@pytest.fixture
def stub_node(tmp_path: Path) -> Path:
    """A directory of stand-ins for `id` (uid from $STUB_UID), `sudo` (logs its arguments, checks a password read
    with -S, refuses with $STUB_SUDO_DENY) and `kubectl` (prints what it was run with)."""
    base = tmp_path / "bin"
    base.mkdir()
    scripts = {
        "id": 'case "$1" in -u) echo "${STUB_UID:-0}";; -un) echo cloudadm;; esac\n',
        "kubectl": 'printf \'{"argv": "%s", "kubeconfig": "%s", "sudo": "%s"}\' "$*" "$KUBECONFIG" "${SUDO_USER:-}"\n',
    }
    for name, body in scripts.items():
        (base / name).write_text("#!/bin/sh\n" + body)
        (base / name).chmod(0o755)
    (base / "env").symlink_to("/usr/bin/env")
    sudo = tmp_path / "sudo-bin"
    sudo.mkdir()
    (sudo / "sudo").write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$STUB_LOG"\n'
        'if [ -n "${STUB_SUDO_DENY:-}" ]; then echo "sudo: a password is required" >&2; exit 1; fi\n'
        'if [ "$1" = -S ]; then read -r pw; [ "$pw" = "$STUB_PASSWORD" ] || '
        '{ echo "sudo: 1 incorrect password attempt" >&2; exit 1; }; shift 3; else shift; fi\n'
        'SUDO_USER=cloudadm exec "$@"\n'
    )
    (sudo / "sudo").chmod(0o755)
    return tmp_path


def run_script(script: str, node_dir: Path, *, sudo: bool = True, stdin: str = "", **env: str) -> tuple[int, str, str]:
    path = f"{node_dir / 'bin'}" + (f":{node_dir / 'sudo-bin'}" if sudo else "")
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": path, "STUB_LOG": str(node_dir / "sudo.log"), **env},
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_kubectl_runs_directly_when_root_or_the_kubeconfig_is_readable(stub_node: Path) -> None:
    readable = stub_node / "k3s.yaml"
    readable.write_text("apiVersion: v1\n")
    for kubeconfig, uid in ((addons.KUBECONFIG_KUBEADM, "0"), (str(readable), "1000")):
        rc, out, _ = run_script(
            addons.kubectl_script(kubeconfig, ["get", "nodes", "-o", "json"]), stub_node, STUB_UID=uid
        )
        assert rc == 0 and json.loads(out) == {"argv": "get nodes -o json", "kubeconfig": kubeconfig, "sudo": ""}
    assert not (stub_node / "sudo.log").exists()


def test_kubectl_goes_through_sudo_when_the_kubeconfig_is_root_only(stub_node: Path) -> None:
    # As IM's cloudadm: /etc/kubernetes/admin.conf is not readable, so `sudo -n env KUBECONFIG=... kubectl`.
    script = addons.kubectl_script(addons.KUBECONFIG_KUBEADM, ["get", "nodes"])
    rc, out, _ = run_script(script, stub_node, STUB_UID="1000")
    assert rc == 0 and json.loads(out)["sudo"] == "cloudadm"
    assert json.loads(out)["kubeconfig"] == addons.KUBECONFIG_KUBEADM
    assert (stub_node / "sudo.log").read_text().startswith(f"-n env KUBECONFIG={addons.KUBECONFIG_KUBEADM} kubectl")
    # With a become password: sudo -S reads it from stdin (never on the command line).
    with_password = addons.kubectl_script(addons.KUBECONFIG_KUBEADM, ["get", "nodes"], sudo_password=True)
    rc, out, _ = run_script(with_password, stub_node, stdin="Pw-9x\n", STUB_UID="1000", STUB_PASSWORD="Pw-9x")
    assert rc == 0 and json.loads(out)["sudo"] == "cloudadm"
    assert "Pw-9x" not in with_password and "Pw-9x" not in (stub_node / "sudo.log").read_text()
    # The real reasons, in one line each.
    rc, _, err = run_script(script, stub_node, STUB_UID="1000", STUB_SUDO_DENY="1")
    assert addons.kubectl_failure(rc, err, kubeconfig=addons.KUBECONFIG_KUBEADM, user="cloudadm") == (
        "/etc/kubernetes/admin.conf is not readable by cloudadm and sudo refused: sudo: a password is required "
        "(give the SSH user passwordless sudo, or ansible_become_password in the edge inventory)"
    )
    rc, _, err = run_script(script, stub_node, sudo=False, STUB_UID="1000")
    assert (rc, addons.kubectl_failure(rc, err, kubeconfig=addons.KUBECONFIG_KUBEADM, user="cloudadm")) == (
        126,
        "/etc/kubernetes/admin.conf is not readable by cloudadm and sudo is not installed",
    )
    assert addons.kubectl_failure(127, "env: 'kubectl': No such file or directory\n", kubeconfig="/k", user="u") == (
        "kubectl is not installed on the front-end"
    )
    assert addons.kubectl_failure(1, "E1 one\nThe connection was refused\n", kubeconfig="/k", user="u") == (
        "The connection was refused"
    )
    assert os.environ.get("STUB_UID") is None  # nothing leaked into this process


def test_short_cuts_a_long_oscar_detail_on_a_word_boundary() -> None:
    detail = "HTTPSConnectionPool(host='10.0.0.1', port=443): " + "connection refused by the peer " * 10
    short = addons._short(OSError(detail + "\nsecond line"))
    assert len(short) <= 200 and short.endswith("…")
    assert detail.startswith(short[:-1]) and detail[len(short) - 1] == " "  # whole words only
    assert not short[:-1].endswith(" ")
