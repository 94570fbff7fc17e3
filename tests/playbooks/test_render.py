"""Every template of every role, rendered by Ansible itself, then checked offline.

The templates are found by globbing playbooks/roles/*/templates/*.j2, so a new one cannot be missed. Ansible
renders each of them (ansible.builtin.template, local connection) with vars/versions.yml, every role's
defaults and sample variables with fake secrets. Then:
- Kubernetes manifests: every object validates against the Kubernetes 1.32 schema (kubernetes_validate, strict);
- Helm values: the Kubernetes structures in them (tolerations, affinity, nodeSelector, resources, service ports...)
  validate against the matching Kubernetes definitions;
- key facts (YuniKorn placement and queues, where each fake secret ends up, registry and K3s contents).
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate.utils import schema_contents

from tests.playbooks.conftest import ROLES, SCENARIOS, SECRETS, VERSIONS, ansible_playbook, write_yaml

K8S_VERSION = "1.32.0"
TEMPLATES = sorted(ROLES.glob("*/templates/*.j2"))

# Rendered files that are neither Kubernetes manifests nor Helm values, and how to read them.
OTHER_FILES = {
    "k3s/config.yaml": "yaml",
    "k3s/k3s.service": "text",
    "k3s/k3s.openrc": "text",
}

# Helm values files: path in the values -> Kubernetes definition it must match ("[]" suffix: a list of them).
# "~" prefix: optional (validated when present). Special kinds: "map" (string to string), "service", "quantity".
HELM_VALUES = {
    "yunikorn/values.yaml": {
        "tolerations": "io.k8s.api.core.v1.Toleration[]",
        "affinity": "io.k8s.api.core.v1.Affinity",
        "nodeSelector": "map",
        "admissionController.tolerations": "io.k8s.api.core.v1.Toleration[]",
        "admissionController.affinity": "io.k8s.api.core.v1.Affinity",
        "admissionController.nodeSelector": "map",
    },
    "minio/values.yaml": {
        "resources": "io.k8s.api.core.v1.ResourceRequirements",
        "service": "service",
        "consoleService": "service",
        "persistence.size": "quantity",
        "~ingress.tls": "io.k8s.api.networking.v1.IngressTLS[]",
        "~ingress.annotations": "map",
    },
    "oscar/values.yaml": {
        "resources": "io.k8s.api.core.v1.ResourceRequirements",
        "service": "service",
        "nodeSelector": "map",
        "tolerations": "io.k8s.api.core.v1.Toleration[]",
        "affinity": "io.k8s.api.core.v1.Affinity",
    },
}

# Where each fake secret may (and must) appear among the rendered files.
SECRET_FILES = {
    "minio_password": {"minio/values.yaml", "oscar/values.yaml"},
    "oscar_password": {"oscar/values.yaml"},
    "onedata_token": {"onedata/credentials-secret.yaml"},
    "registry_password": {"registry/pull-secrets.yaml"},
    "k3s_token": {"k3s/config.yaml"},
    "admin_token": set(),
}

QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def rendered_name(template: Path) -> str:
    return f"{template.parent.parent.name}/{template.name.removesuffix('.j2')}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """{scenario: {"role/file": text}}, rendered by one ansible-playbook run.

    One inventory host (local connection) per scenario, so that Ansible renders the scenarios in parallel; each
    host loads vars/versions.yml and the roles' defaults (play vars_files), then its sample variables and fake
    secrets (include_vars, which takes precedence over them, as extra vars do over role defaults).
    """
    base = tmp_path_factory.mktemp("render")
    out = base / "out"
    hosts = {}
    for scenario, sample in SCENARIOS.items():
        sample_file = write_yaml(base / f"{scenario}.yml", {**sample, **SECRETS, "provision_workdir": str(base / "w")})
        hosts[scenario] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "render_sample": str(sample_file),
            "render_items": [{"src": str(t), "dest": str(out / scenario / rendered_name(t))} for t in TEMPLATES],
        }
        for template in TEMPLATES:
            (out / scenario / template.parent.parent.name).mkdir(parents=True, exist_ok=True)
    inventory = write_yaml(base / "hosts.yml", {"all": {"hosts": hosts}})
    play = {
        "name": "Render every role template",
        "hosts": "all",
        "gather_facts": False,
        "vars_files": [str(VERSIONS), *sorted(str(p) for p in ROLES.glob("*/defaults/main.yml"))],
        "tasks": [
            {"name": "Load the sample variables", "ansible.builtin.include_vars": {"file": "{{ render_sample }}"}},
            {
                "name": "Render",
                "ansible.builtin.template": {"src": "{{ item.src }}", "dest": "{{ item.dest }}", "mode": "0600"},
                "loop": "{{ render_items }}",
                "loop_control": {"label": "{{ item.dest }}"},
            },
        ],
    }
    playbook = write_yaml(base / "render.yml", [play])
    result = ansible_playbook(["-i", str(inventory), str(playbook)], base)
    assert result.rc == 0, result.output
    assert "FAKE" not in result.output, "a fake secret was shown in Ansible's output"
    return {
        scenario: {rendered_name(t): (out / scenario / rendered_name(t)).read_text() for t in TEMPLATES}
        for scenario in SCENARIOS
    }


def all_files(rendered: dict[str, dict[str, str]]) -> Iterator[tuple[str, str, str]]:
    for scenario, files in rendered.items():
        for name, text in files.items():
            yield scenario, name, text


def documents(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def is_manifest(docs: list[Any]) -> bool:
    return bool(docs) and all(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs)


@cache
def definitions_registry() -> referencing.Registry:
    defs = schema_contents(f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json", K8S_VERSION)
    return referencing.Resource.from_contents(defs) @ referencing.Registry()


def validate_definition(value: Any, definition: str, where: str) -> None:
    """Validate ``value`` against one definition of the Kubernetes OpenAPI (strict: no unknown fields)."""
    registry = definitions_registry()
    schema = {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{definition}"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    assert not errors, f"{where}: not a valid {definition}: {[e.message for e in errors]}"


def lookup(values: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_values_path(value: Any, kind: str, where: str) -> None:
    if kind == "map":
        assert isinstance(value, dict), where
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()), where
    elif kind == "quantity":
        assert isinstance(value, str) and QUANTITY.match(value), f"{where}: not a quantity: {value!r}"
    elif kind == "service":
        assert value["type"] in ("ClusterIP", "NodePort", "LoadBalancer"), where
        port = {"name": "p", "protocol": "TCP", "port": int(value["port"])}
        if value["type"] == "NodePort":
            port["nodePort"] = value["nodePort"]
            assert 30000 <= value["nodePort"] <= 32767, where
        validate_definition(port, "io.k8s.api.core.v1.ServicePort", where)
    elif kind.endswith("[]"):
        assert isinstance(value, list), where
        for index, item in enumerate(value):
            validate_definition(item, kind[:-2], f"{where}[{index}]")
    else:
        validate_definition(value, kind, where)


def test_every_template_is_rendered_and_classified(rendered: dict[str, dict[str, str]]) -> None:
    assert TEMPLATES, "no templates found"
    for scenario, name, text in all_files(rendered):
        assert text.strip(), f"{scenario}: {name} rendered empty"
        if name in OTHER_FILES:
            continue
        docs = documents(text)
        if name.endswith("values.yaml"):
            assert name in HELM_VALUES, f"{name}: new Helm values file; say in HELM_VALUES what it holds"
            assert len(docs) == 1 and isinstance(docs[0], dict), name
        else:
            assert name.endswith(".yaml"), f"{name}: not YAML; add it to OTHER_FILES if that is intended"
            assert is_manifest(docs), f"{scenario}: {name} is neither Kubernetes objects nor Helm values"


def test_manifests_validate_against_kubernetes(rendered: dict[str, dict[str, str]]) -> None:
    checked = 0
    for scenario, name, text in all_files(rendered):
        if name in OTHER_FILES or name in HELM_VALUES:
            continue
        for doc in documents(text):
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{scenario}: {name}: {doc['kind']}/{doc['metadata'].get('name')}: {error.message}")
            checked += 1
    assert checked >= 20


def test_helm_values_kubernetes_structures(rendered: dict[str, dict[str, str]]) -> None:
    for scenario, name, text in all_files(rendered):
        if name not in HELM_VALUES:
            continue
        values = documents(text)[0]
        for dotted, kind in HELM_VALUES[name].items():
            optional = dotted.startswith("~")
            found, value = lookup(values, dotted.lstrip("~"))
            assert found or optional, f"{scenario}: {name} has no {dotted}"
            if found:
                check_values_path(value, kind, f"{scenario}: {name}: {dotted.lstrip('~')}")


def selects_on(node: Any, label: str) -> bool:
    """True when a nodeSelector or affinity structure mentions ``label`` anywhere."""
    if isinstance(node, dict):
        return label in node or any(selects_on(v, label) for v in node.values())
    if isinstance(node, list):
        return any(selects_on(v, label) for v in node)
    return node == label


def test_yunikorn_placement(rendered: dict[str, dict[str, str]]) -> None:
    master, control_plane = "node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane"
    for scenario, files in rendered.items():
        values = documents(files["yunikorn/values.yaml"])[0]
        for part in (values, values["admissionController"]):
            assert not selects_on(part["nodeSelector"], master), scenario
            assert not selects_on(part["affinity"], master), scenario
        if SCENARIOS[scenario].get("yunikorn_placement", "control-plane") == "control-plane":
            for part in (values, values["admissionController"]):
                terms = part["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                expressions = terms["nodeSelectorTerms"][0]["matchExpressions"]
                assert {"key": control_plane, "operator": "Exists"} in expressions
                assert {"key": control_plane, "operator": "Exists", "effect": "NoSchedule"} in part["tolerations"]
        else:
            assert values["affinity"] == {}
            assert not any(t.get("key") in (master, control_plane) for t in values["tolerations"])


def test_yunikorn_queues_configmap(rendered: dict[str, dict[str, str]]) -> None:
    for scenario, files in rendered.items():
        (configmap,) = documents(files["yunikorn/queues-configmap.yaml"])
        assert (configmap["kind"], configmap["metadata"]["name"]) == ("ConfigMap", "yunikorn-configs")
        queues = yaml.safe_load(configmap["data"]["queues.yaml"])
        assert isinstance(queues["partitions"], list) and queues["partitions"]
        (partition,) = queues["partitions"]
        assert partition["name"] == "default"  # OSCAR only looks at partition "default"
        (root,) = partition["queues"]
        assert root["name"] == "root"
        children = [q["name"] for q in root["queues"]]
        assert "oscar-queue" in children  # OSCAR puts services in root.oscar-queue.<service>
        wanted = [q["name"] for q in SCENARIOS[scenario].get("yunikorn_queues", [{"name": "oscar-queue"}])]
        assert children == wanted


def test_fake_secrets_only_where_they_belong(rendered: dict[str, dict[str, str]]) -> None:
    assert set(SECRET_FILES) == set(SECRETS)
    for scenario, files in rendered.items():
        for secret, allowed in SECRET_FILES.items():
            holders = {name for name, text in files.items() if SECRETS[secret] in text}
            assert holders == allowed, f"{scenario}: {secret} is in {sorted(holders)}, expected {sorted(allowed)}"


def test_registry_pull_secret(rendered: dict[str, dict[str, str]]) -> None:
    for scenario, files in rendered.items():
        sample = SCENARIOS[scenario]
        secrets = documents(files["registry/pull-secrets.yaml"])
        accounts = [d for d in documents(files["registry/serviceaccounts.yaml"]) if d["kind"] == "ServiceAccount"]
        namespaces = sample.get("registry_namespaces", ["oscar", "oscar-svc"])
        assert [s["metadata"]["namespace"] for s in secrets] == namespaces
        assert [a["metadata"]["namespace"] for a in accounts] == namespaces
        for secret, account in zip(secrets, accounts, strict=True):
            assert secret["type"] == "kubernetes.io/dockerconfigjson"
            config = json.loads(secret["stringData"][".dockerconfigjson"])
            entry = config["auths"][sample["registry_server"]]
            user, password = base64.b64decode(entry["auth"]).decode().split(":", 1)
            assert (user, password) == (sample["registry_user"], SECRETS["registry_password"])
            assert account["metadata"]["name"] == "default"
            assert account["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]


def test_onedata_objects(rendered: dict[str, dict[str, str]]) -> None:
    for scenario, files in rendered.items():
        sample = SCENARIOS[scenario]
        (secret,) = documents(files["onedata/credentials-secret.yaml"])
        configmap = next(d for d in documents(files["onedata/configmap.yaml"]) if d["kind"] == "ConfigMap")
        assert secret["metadata"]["namespace"] == configmap["metadata"]["namespace"] == "oscar-svc"
        assert secret["stringData"] == {
            "oneprovider_host": sample["onedata_host"],
            "space": sample["onedata_space"],
            "token": SECRETS["onedata_token"],
        }
        assert configmap["data"] == {"oneprovider_host": sample["onedata_host"], "space": sample["onedata_space"]}


def test_knative_configuration(rendered: dict[str, dict[str, str]]) -> None:
    expected = {"full": "oscar-test.example.org", "minimal": "10.0.0.9.sslip.io"}
    versions = yaml.safe_load(VERSIONS.read_text())
    for scenario, files in rendered.items():
        objects = {d["metadata"]["name"]: d for d in documents(files["knative/config.yaml"])}
        assert objects["config-network"]["data"] == {"ingress-class": "kourier.ingress.networking.knative.dev"}
        assert objects["config-domain"]["data"] == {expected[scenario]: ""}
        (stamp,) = documents(files["knative/release-stamp.yaml"])
        assert stamp["data"] == {
            "serving": versions["knative_serving_version"],
            "kourier": versions["knative_kourier_version"],
        }


def test_oscar_values_and_ingress(rendered: dict[str, dict[str, str]]) -> None:
    versions = yaml.safe_load(VERSIONS.read_text())
    for scenario, files in rendered.items():
        sample = SCENARIOS[scenario]
        values = documents(files["oscar/values.yaml"])[0]
        assert values["image"]["tag"] == versions["oscar_image_tag"]
        assert values["serverlessBackend"] == sample["oscar_serverless_backend"]
        assert values["yuniKorn"]["enable"] is sample["oscar_yunikorn_enabled"]
        assert values["minIO"]["endpoint"] == "http://minio.minio:9000"
        assert (values["minIO"]["accessKey"], values["minIO"]["secretKey"]) == ("minio", SECRETS["minio_password"])
        assert (values["authUser"], values["authPass"]) == ("oscar", SECRETS["oscar_password"])
        assert values["servicesNamespace"] == "oscar-svc"
        (ingress,) = documents(files["oscar/ingress.yaml"])
        rule = ingress["spec"]["rules"][0]
        if sample["domain_name"]:
            assert rule["host"] == f"{sample['cluster_name']}.{sample['domain_name']}"
            assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
        else:
            assert "host" not in rule and "tls" not in ingress["spec"]


def test_minio_values(rendered: dict[str, dict[str, str]]) -> None:
    for scenario, files in rendered.items():
        sample = SCENARIOS[scenario]
        values = documents(files["minio/values.yaml"])[0]
        assert values["mode"] == "standalone"
        assert (values["rootUser"], values["rootPassword"]) == ("minio", SECRETS["minio_password"])
        assert (values["service"]["nodePort"], values["consoleService"]["nodePort"]) == (30300, 30303)
        assert values["users"] == [] and values["svcaccts"] == [] and values["policies"] == []
        assert [b["name"] for b in values["buckets"]] == sample["minio_buckets"]
        assert values["ingress"]["enabled"] is bool(sample["domain_name"])


def test_k3s_files(rendered: dict[str, dict[str, str]]) -> None:
    for scenario, files in rendered.items():
        config = yaml.safe_load(files["k3s/config.yaml"])
        assert config["token"] == SECRETS["k3s_token"]
        unit = files["k3s/k3s.service"]
        if SCENARIOS[scenario]["k3s_is_server"]:
            assert config["write-kubeconfig-mode"] == "0600"
            assert "traefik" in config["disable"]  # Knative/Kourier is selected in this scenario
            assert config["tls-san"] == SCENARIOS[scenario]["k3s_tls_san"]
            assert "server" not in config
            assert "/k3s server --config /etc/rancher/k3s/config.yaml" in unit
        else:
            assert config["server"] == SCENARIOS[scenario]["k3s_server_url"]
            assert "/k3s agent --config /etc/rancher/k3s/config.yaml" in unit
        for text in (unit, files["k3s/k3s.openrc"]):
            assert SECRETS["k3s_token"] not in text
