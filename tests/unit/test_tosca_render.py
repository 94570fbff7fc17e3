"""Rendering: data in, yaml.safe_dump out; adversarial strings round-trip; sites; local-sim; offline validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.errors import EXIT_BAD_INPUT, ConfigError, InputError
from provisioner.settings import read_config_file
from provisioner.tosca import (
    GRYCAP_TYPES_URL,
    LOCAL_SIM,
    ResolvedInputs,
    Site,
    dump,
    list_templates,
    load_inputs_file,
    parse_with_tosca_parser,
    prepare_inputs,
    render,
    resolve_site,
    set_scaling,
    stub_types,
    validate_offline,
)
from provisioner.tosca.schema import load_template_doc

DATA = Path(__file__).resolve().parent.parent / "data" / "tosca"
SITES = read_config_file(DATA / "sites-config.yaml")["sites"]
ADVERSARIAL = [
    "colon: {brace",
    "}{][,:",
    "'single' and \"double\" quotes",
    "line one\nline two",
    "trailing newline\n",
    "\nleading newline",
    "  leading and trailing spaces  ",
    "# looks like a comment",
    "value # with a comment",
    "*alias-like",
    "&anchor-like",
    "!tag-like",
    "!!python/object:os.system",
    "%YAML 1.1",
    "--- document start",
    "... document end",
    "- list-like",
    "? complex key",
    "| literal",
    "> folded",
    "@at `backtick`",
    "{get_input: admin_token}",
    "ünïcødé ☃ 中文 😀",
    "tab\tinside",
    "yes",
    "null",
    "~",
    "0x1F",
    "1e3",
    "12345678",
    "true",
]


def site(name: str) -> Site:
    return resolve_site(name, SITES)


def rendered(
    template: str, raw: dict[str, Any], site_name: str = LOCAL_SIM, **kw: Any
) -> tuple[dict[str, Any], ResolvedInputs]:
    inputs = prepare_inputs(template, raw, secrets_store=None)
    doc = render(template, site(site_name), inputs, cluster_name="c1", deployment_id="dep-1", **kw)
    return doc, inputs


def all_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {str(k) for k in node} | {k for v in node.values() for k in all_keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in all_keys(v)}
    return set()


def all_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [str(k), *all_strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in all_strings(v)]
    return [node] if isinstance(node, str) else []


# --- adversarial strings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ADVERSARIAL)
@pytest.mark.parametrize("site_name", [LOCAL_SIM, "egi-cesnet"])
def test_adversarial_strings_round_trip(value: str, site_name: str) -> None:
    password = value if len(value) >= 8 else value + "-padding"
    raw = {"oscar_password": password, "registry_password": password, "registry_server": "r.example.org",
           "registry_user": value.split()[0] if value.split() else "u"}  # fmt: skip
    doc, _ = rendered("oscar", raw, site_name)
    text = dump(doc)
    assert text.isascii()
    back = yaml.safe_load(text)
    assert back == doc, "the document's structure is unchanged"
    inputs = back["topology_template"]["inputs"]
    assert inputs["oscar_password"]["default"] == password
    assert inputs["registry_password"]["default"] == password
    assert set(back["topology_template"]["inputs"]) == set(doc["topology_template"]["inputs"])
    parsed = parse_with_tosca_parser(back)
    defaults = {i.name: i.default for i in parsed.inputs}
    assert defaults["oscar_password"] == password
    assert defaults["registry_password"] == password
    assert defaults["registry_user"] == raw["registry_user"]
    validate_offline(back)


def test_adversarial_inputs_file_round_trips_through_tosca_parser() -> None:
    raw = load_inputs_file(DATA / "adversarial-inputs.yaml")
    doc, inputs = rendered("oscar", raw)
    back = yaml.safe_load(dump(doc))
    parsed = parse_with_tosca_parser(back)
    defaults = {i.name: i.default for i in parsed.inputs}
    for name in ("oscar_password", "minio_password", "registry_user", "registry_password", "onedata_space"):
        assert defaults[name] == raw[name] == inputs[name]
    assert defaults["wn_num"] == 2
    assert defaults["knative"] is False


def test_the_admin_token_reaches_the_front_end_through_get_input() -> None:
    doc, inputs = rendered("kubernetes", {"admin_token": "tok.en_with-safe~chars123"})
    parsed = parse_with_tosca_parser(yaml.safe_load(dump(doc)))
    front_end = next(n for n in parsed.nodetemplates if n.name == "lrms_front_end")
    value = front_end.get_property_value("admin_token")
    assert value.result() == inputs["admin_token"] == "tok.en_with-safe~chars123"


# --- the templates and the shape of a render ----------------------------------------------------------------------


@pytest.mark.parametrize("template", ["oscar", "kubernetes"])
def test_template_files_import_the_pinned_url(template: str) -> None:
    doc = load_template_doc(template)
    assert doc["imports"] == [{"grycap_custom_types": GRYCAP_TYPES_URL}]
    assert "/main/" not in GRYCAP_TYPES_URL
    commit = GRYCAP_TYPES_URL.split("/")[-2]
    assert len(commit) == 40 and int(commit, 16) >= 0


@pytest.mark.parametrize("template", ["oscar", "kubernetes"])
def test_real_site_render_imports_the_pinned_url_and_validates_offline(template: str) -> None:
    doc, _ = rendered(template, {"wn_num": "3"}, "egi-cesnet")
    assert doc["imports"] == [{"grycap_custom_types": GRYCAP_TYPES_URL}]
    assert "node_types" not in doc
    topology = doc["topology_template"]
    front = topology["node_templates"]["front"]
    assert front["capabilities"]["endpoint"]["properties"]["network_name"] == "PUBLIC"
    assert topology["inputs"]["image"]["default"] == "egi://cloud.cesnet.cz/ubuntu-22.04?vo.access.egi.eu"
    assert topology["inputs"]["fe_instance_type"]["default"] == "standard.large"
    assert topology["policies"] == [
        {"placement": {"type": "tosca.policies.indigo.Placement", "properties": {"cloud_id": "egi1"},
                       "targets": ["front", "wn"]}}
    ]  # fmt: skip
    outputs = topology["outputs"]
    assert outputs["kube_api_endpoint"]["value"] == {
        "concat": ["https://", {"get_attribute": ["front", "public_address", 0]}, ":6443"]
    }
    validate_offline(yaml.safe_load(dump(doc)))


def test_real_site_offline_validation_never_reaches_another_url() -> None:
    doc, _ = rendered("kubernetes", {}, "egi-cesnet")
    doc["imports"] = [{"other": "https://example.org/types.yaml"}]
    with pytest.raises(InputError) as info:
        validate_offline(doc)
    assert "offline validation resolves only" in str(info.value)
    assert "\n" not in str(info.value)


def test_openstack_site_networks_and_zone() -> None:
    doc, _ = rendered("kubernetes", {}, "ifca")
    nodes = doc["topology_template"]["node_templates"]
    assert nodes["front"]["capabilities"]["endpoint"]["properties"]["network_name"] == "ext-pool.PUBLIC"
    assert nodes["wn"]["capabilities"]["endpoint"]["properties"]["network_name"] == "provider-net"
    placement = doc["topology_template"]["policies"][0]["placement"]["properties"]
    assert placement == {"cloud_id": "ost-ifca", "availability_zone": "nova"}
    # No flavors on this site: IM chooses from cpus/memory.
    assert "instance_type" not in nodes["front"]["capabilities"]["host"]["properties"]
    validate_offline(doc)


@pytest.mark.parametrize("template", ["oscar", "kubernetes"])
def test_local_sim_has_no_interfaces_no_url_imports_no_public_network(template: str) -> None:
    doc, _ = rendered(template, {})
    text = dump(doc)
    assert "imports" not in doc
    assert "interfaces" not in all_keys(doc)
    assert "implementation" not in all_keys(doc)
    assert "PUBLIC" not in text
    assert "network_name" not in all_keys(doc)
    assert not [s for s in all_strings(doc) if s.startswith(("http://", "https://")) and "." in s.split("//")[1][:3]]
    assert "raw.githubusercontent.com" not in text
    stubs = stub_types()
    assert doc["node_types"] == stubs["node_types"]
    assert set(doc["node_types"]) >= {
        "tosca.nodes.indigo.Compute",
        "tosca.nodes.indigo.LRMS.FrontEnd.Kubernetes",
        "tosca.nodes.indigo.LRMS.WorkerNode.Kubernetes",
    }
    assert doc["topology_template"]["policies"][0]["placement"]["properties"] == {"cloud_id": "sim"}
    outputs = doc["topology_template"]["outputs"]
    assert outputs["kube_api_endpoint"]["value"]["concat"][1] == {"get_attribute": ["front", "private_address", 0]}
    assert outputs["front_public_ip"]["value"] == {"get_attribute": ["front", "public_address", 0]}
    validate_offline(doc)


@pytest.mark.parametrize("template", ["oscar", "kubernetes"])
def test_local_sim_keeps_the_same_topology_as_a_real_site(template: str) -> None:
    sim, _ = rendered(template, {})
    real, _ = rendered(template, {}, "egi-cesnet")
    assert sim["topology_template"]["node_templates"].keys() == real["topology_template"]["node_templates"].keys()
    assert sim["topology_template"]["outputs"].keys() == real["topology_template"]["outputs"].keys()
    assert sim["topology_template"]["inputs"].keys() == real["topology_template"]["inputs"].keys()
    for name, node in sim["topology_template"]["node_templates"].items():
        assert node["type"] == real["topology_template"]["node_templates"][name]["type"]


def test_topology_of_the_issue() -> None:
    doc, _ = rendered("oscar", {})
    nodes = doc["topology_template"]["node_templates"]
    assert nodes["front"]["type"] == "tosca.nodes.indigo.Compute"
    assert nodes["wn"]["type"] == "tosca.nodes.indigo.Compute"
    assert nodes["lrms_front_end"]["type"] == "tosca.nodes.indigo.LRMS.FrontEnd.Kubernetes"
    assert nodes["wn_node"]["type"] == "tosca.nodes.indigo.LRMS.WorkerNode.Kubernetes"
    assert nodes["fe_block_storage"]["type"] == "tosca.nodes.BlockStorage"
    attach = nodes["front"]["requirements"][0]["local_storage"]
    assert attach["node"] == "fe_block_storage"
    assert attach["relationship"]["type"] == "tosca.relationships.AttachesTo"
    assert attach["relationship"]["properties"]["location"] == "/pv"
    assert nodes["wn"]["capabilities"]["scalable"]["properties"]["count"] == {"get_input": "wn_num"}
    assert not [n for n in nodes.values() if n["type"] == "tosca.nodes.indigo.OSCAR"]
    assert set(doc["topology_template"]["outputs"]) == {
        "front_public_ip", "front_private_ip", "wn_private_ips", "kube_api_endpoint", "oscar_endpoint",
        "minio_endpoint",
    }  # fmt: skip


def test_metadata() -> None:
    doc, _ = rendered("oscar", {"kube_install_yunikorn": "true", "knative": "false"}, "egi-cesnet")
    meta = doc["metadata"]
    assert meta["provisioner_cluster"] == "c1"
    assert meta["provisioner_deployment_id"] == "dep-1"
    assert meta["provisioner_template"] == "oscar"
    assert meta["provisioner_site"] == "egi-cesnet"
    assert meta["provisioner_addons"] == "yunikorn,minio,oscar"
    assert meta["infra_name"] == "c1"
    assert "provisioner" not in doc


@pytest.mark.parametrize("bad", ["", "has space", "x" * 200, "new\nline", "../up"])
def test_bad_cluster_name_or_deployment_id(bad: str) -> None:
    inputs = prepare_inputs("oscar", {}, secrets_store=None)
    with pytest.raises(InputError):
        render("oscar", site(LOCAL_SIM), inputs, cluster_name=bad, deployment_id="d")
    with pytest.raises(InputError):
        render("oscar", site(LOCAL_SIM), inputs, cluster_name="c", deployment_id=bad)


def test_cluster_name_input_defaults_to_a_dns_label_of_the_cluster() -> None:
    inputs = prepare_inputs("oscar", {}, secrets_store=None)
    doc = render("oscar", site(LOCAL_SIM), inputs, cluster_name="My_Cluster.1", deployment_id="d")
    assert doc["topology_template"]["inputs"]["cluster_name"]["default"] == "my-cluster-1"
    given = prepare_inputs("oscar", {"cluster_name": "mine"}, secrets_store=None)
    doc = render("oscar", site(LOCAL_SIM), given, cluster_name="c", deployment_id="d")
    assert doc["topology_template"]["inputs"]["cluster_name"]["default"] == "mine"


def test_domain_overlay() -> None:
    doc, _ = rendered("oscar", {"domain_name": "example.org", "cert_user_email": "me@example.org"})
    props = doc["topology_template"]["node_templates"]["lrms_front_end"]["properties"]
    assert props["cert_manager"] is True
    assert props["public_dns_name"] == {"concat": [{"get_input": "cluster_name"}, ".", {"get_input": "domain_name"}]}
    outputs = doc["topology_template"]["outputs"]
    assert outputs["oscar_endpoint"]["value"]["concat"][0] == "https://"
    assert outputs["minio_endpoint"]["value"]["concat"][0] == "https://minio."
    validate_offline(doc)
    plain, _ = rendered("oscar", {})
    assert plain["topology_template"]["node_templates"]["lrms_front_end"]["properties"]["cert_manager"] is False


def test_inputs_carry_the_final_values() -> None:
    doc, inputs = rendered("oscar", {"wn_num": 5, "fe_mem": "16", "image": "ost://h/img"})
    declared = doc["topology_template"]["inputs"]
    assert declared["wn_num"] == {"type": "integer", "description": declared["wn_num"]["description"], "default": 5}
    assert declared["fe_mem"]["type"] == "scalar-unit.size"
    assert declared["fe_mem"]["default"] == "16 GiB"
    assert declared["image"]["default"] == "ost://h/img"
    for name in inputs.all:
        assert name in declared


# --- scaling ------------------------------------------------------------------------------------------------------


def test_render_for_scaling() -> None:
    doc, _ = rendered("oscar", {"wn_num": "2"}, wn_count=3, removal_list=["4", "7"])
    assert doc["topology_template"]["inputs"]["wn_num"]["default"] == 3
    scalable = doc["topology_template"]["node_templates"]["wn"]["capabilities"]["scalable"]["properties"]
    assert scalable == {"count": {"get_input": "wn_num"}, "removal_list": ["4", "7"]}
    validate_offline(doc)


def test_set_scaling_on_a_rendered_doc() -> None:
    doc, _ = rendered("kubernetes", {})
    before = copy.deepcopy(doc)
    scaled = set_scaling(doc, wn_count=1, removal_list=[3])
    assert doc == before, "the input document is not changed"
    assert scaled["topology_template"]["inputs"]["wn_num"]["default"] == 1
    assert scaled["topology_template"]["node_templates"]["wn"]["capabilities"]["scalable"]["properties"][
        "removal_list"
    ] == ["3"]
    validate_offline(scaled)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"wn_count": -1}, "wn_num"),
        ({"wn_count": 1000}, "wn_num"),
        ({"removal_list": ["x"]}, "removal_list"),
        ({"removal_list": ["1; rm"]}, "removal_list"),
    ],
)
def test_bad_scaling_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        rendered("oscar", {}, **kwargs)
    assert info.value.field == field
    assert info.value.exit_code == EXIT_BAD_INPUT


# --- sites --------------------------------------------------------------------------------------------------------


def test_unknown_site_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as info:
        resolve_site("egi-cesnt", SITES)
    message = str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "did you mean 'egi-cesnet'" in message
    assert "known sites: egi-cesnet, ifca, local-sim" in message


def test_local_sim_is_built_in() -> None:
    sim = resolve_site(LOCAL_SIM, {})
    assert sim.cloud_id == "sim"
    assert sim.public_network is None
    assert sim.inline_types
    with pytest.raises(ConfigError, match="built in"):
        resolve_site(LOCAL_SIM, {LOCAL_SIM: {"cloud_id": "x", "image": "ost://a/b"}})


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"image": "ost://a/b"}, "sites.s.cloud_id", "is required"),
        ({"cloud_id": "c"}, "sites.s.image", "is required"),
        ({"cloud_id": "c", "image": "not a url"}, "sites.s.image", "an image URL"),
        ({"cloud_id": "c", "image": "ost://a/b", "kind": "aws"}, "sites.s.image", "must start with aws://"),
        ({"cloud_id": "c", "image": "ost://a/b", "kind": "azure-ish"}, "sites.s.kind", "must be one of"),
        ({"cloud_id": "c", "image": "ost://a/b", "flavour": "x"}, "sites.s.flavour", "unknown key"),
        ({"cloud_id": "c", "image": "ost://a/b", "network": {"public": "internet"}},
         "sites.s.network.public", "PUBLIC"),
        ({"cloud_id": "c", "image": "ost://a/b", "network": {"privat": "x"}},
         "sites.s.network.privat", "unknown key"),
        ({"cloud_id": "c", "image": "ost://a/b", "fe_instance_type": "m1 large"},
         "sites.s.fe_instance_type", "flavor"),
        ({"cloud_id": "c", "image": "x://a", "kind": "dummy", "network": {"public": "PUBLIC"}},
         "sites.s.network.public", "must be null"),
        ("just a string", "sites.s", "must be a mapping"),
    ],
)  # fmt: skip
def test_bad_site_config(entry: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_site("s", {"s": entry})
    assert info.value.field == field
    assert words in str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_dummy_site_of_the_user_gets_inline_types() -> None:
    other = resolve_site("sim2", {"sim2": {"kind": "dummy", "cloud_id": "sim2", "image": "dummy://x/y"}})
    assert other.public_network is None
    assert other.inline_types


# --- stub types cover what the templates use --------------------------------------------------------------------


@pytest.mark.parametrize("template", list_templates())
def test_stub_types_declare_every_property_the_templates_set(template: str) -> None:
    stubs = stub_types()
    doc = load_template_doc(template)
    overlays = doc["provisioner"].get("overlays", {})
    nodes = copy.deepcopy(doc["topology_template"]["node_templates"])
    for overlay in overlays.values():
        for name, node in overlay.get("topology_template", {}).get("node_templates", {}).items():
            nodes[name].setdefault("properties", {}).update(node.get("properties", {}))
    for node in nodes.values():
        kind = node["type"]
        if not kind.startswith("tosca.nodes.indigo."):
            continue
        declared: set[str] = set()
        current = kind
        while current in stubs["node_types"]:
            declared |= set(stubs["node_types"][current].get("properties", {}))
            current = stubs["node_types"][current]["derived_from"]
        assert set(node.get("properties", {})) <= declared, kind
    assert "interfaces" not in all_keys(stubs)


def test_validation_failure_is_one_line() -> None:
    doc, _ = rendered("kubernetes", {})
    doc["topology_template"]["node_templates"]["front"]["colour"] = "blue"
    with pytest.raises(InputError) as info:
        validate_offline(doc)
    assert "TOSCA validation failed" in str(info.value)
    assert "colour" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["metadata"].pop("provisioner_cluster"), "metadata lacks provisioner_cluster"),
        (lambda d: d["topology_template"]["inputs"].pop("wn_num"), "wn_num is missing"),
        (lambda d: d["topology_template"]["inputs"]["wn_num"].update(default=1000), "between 0 and 100"),
        (lambda d: d["topology_template"]["inputs"]["admin_token"].update(default="short"), "at least 16"),
        (lambda d: d["topology_template"]["node_templates"]["wn"]["capabilities"]["scalable"]["properties"].update(
            count=3), "scalable.count"),
        (lambda d: d.pop("tosca_definitions_version"), "tosca_definitions_version"),
    ],
)  # fmt: skip
def test_validate_offline_applies_our_schema(change: Any, words: str) -> None:
    doc, _ = rendered("kubernetes", {})
    change(doc)
    with pytest.raises(InputError, match=words):
        validate_offline(doc)


def test_a_masked_render_is_never_valid() -> None:
    from provisioner.tosca import masked

    doc, inputs = rendered("oscar", {})
    with pytest.raises(InputError) as info:
        validate_offline(masked(doc, inputs.secret_values))
    assert info.value.field is not None and info.value.field.startswith("topology_template.inputs.")
    assert info.value.field.endswith(".default") and "--show-secrets" in str(info.value)
    assert "\n" not in str(info.value)


def test_what_im_gets_is_json_text_that_yaml_reads_as_the_document() -> None:
    """for_im writes JSON (YAML's flow style), which IM's YAML parser reads into the same data as dump's text; a
    document JSON cannot write as the same YAML data is written by dump instead."""
    import json
    import random

    from provisioner.tosca import dump, for_im, prepare_inputs, render, resolve_site

    loaders: list[type[yaml.SafeLoader] | type[yaml.CSafeLoader]] = [yaml.SafeLoader]
    if hasattr(yaml, "CSafeLoader"):
        loaders.append(yaml.CSafeLoader)
    for template in ("oscar", "kubernetes"):
        inputs = prepare_inputs(template, {}, secrets_store=None)
        doc = dict(render(template, resolve_site("local-sim", {}), inputs, cluster_name="c1", deployment_id="d-1"))
        text = for_im(doc)
        assert json.loads(text) == doc and list(json.loads(text)) == list(doc)  # JSON, keys in document order
        for loader in loaders:
            assert yaml.load(text, Loader=loader) == yaml.safe_load(dump(doc)) == doc  # noqa: S506 - safe loaders

    rnd = random.Random(11)
    alphabet = "abcXYZ019 -_./:=+@,#'\"\\\n\t\r\x00\x1f\x7f\x80\x85\xa0éü€中\u2028\u2029\ufeff\U0001f600{}[]&*!|>%`~"
    scalars: list[Any] = [True, False, None, 0, -7, 10**20, 0.5, -2.25, 1e-05, 1e16, 3.0, "yes", "~", "1e5", "0x1f"]

    def value(depth: int = 0) -> Any:
        roll = rnd.random()
        if depth > 3 or roll < 0.5:
            if rnd.random() < 0.5:
                return rnd.choice(scalars)
            return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        if roll < 0.75:
            return {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8))): value(depth + 1) for _ in range(3)}
        return [value(depth + 1) for _ in range(rnd.randint(0, 4))]

    as_json = 0
    for _ in range(500):
        doc = {f"key{i}": value() for i in range(rnd.randint(1, 4))}
        text = for_im(doc)
        for loader in loaders:
            assert yaml.load(text, Loader=loader) == doc, text  # noqa: S506 - safe loaders
        as_json += text.startswith("{")
    assert 50 < as_json < 500  # both forms were exercised
