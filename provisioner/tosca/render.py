"""Render a template for a site: build the TOSCA document as data, write it with ``yamlfile.dump_text`` (libyaml).

Never string substitution: every input value goes into ``topology_template.inputs.<name>.default`` as a YAML
scalar, so a value such as ``a: {b`` or one with quotes or a newline comes out as the same string and cannot
change the document's structure. What rendering does, in order:

1. the template's ``provisioner:`` section (our directives) is removed;
2. ``topology_template.inputs`` is written from the schema, with the final values as defaults (site defaults for
   ``image`` and the flavors, the cluster's DNS label for ``cluster_name``, ``wn_count`` for ``wn_num``);
3. overlays: ``private_only`` when the site gives no public network, ``domain_name`` when that input is set;
4. site: the front-end's public network, the workers' private network, a Placement policy pinning ``cloud_id``;
   flavors left empty are dropped; Dummy sites get our stub types inlined instead of the remote import;
5. scaling: ``removal_list`` on the workers' scalable capability when given;
6. ``metadata``: provisioner_cluster, provisioner_deployment_id, provisioner_template, provisioner_site, ...
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.errors import InputError
from provisioner.model import Role
from provisioner.tosca.inputs import ResolvedInputs
from provisioner.tosca.schema import (
    MASK,
    STUB_TYPES_FILE,
    TemplateSchema,
    brief,
    load_schema,
    load_template_doc,
    read_yaml_file,
    tosca_dir,
)
from provisioner.tosca.sites import Site
from provisioner.yamlfile import dump_text

#: GRyCAP's custom types, pinned to the commit our templates were written against.
GRYCAP_COMMIT = "2240f6c437fa8f4d7fe87b92ff8ef7397bebcd62"
GRYCAP_TYPES_URL = f"https://raw.githubusercontent.com/grycap/tosca/{GRYCAP_COMMIT}/custom_types.yaml"

# The template's node names are the VM roles.
FRONT = Role.FRONT.value
WORKERS = Role.WORKER.value
WORKERS_INPUT = "wn_num"
TYPE_SECTIONS = ("data_types", "capability_types", "relationship_types", "node_types", "policy_types")
_VM_ID_RE = re.compile(r"[0-9]{1,9}")
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_META_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


def stub_types() -> dict[str, Any]:
    """Our stub type definitions (tosca/stub_types.yaml) as data."""
    doc = read_yaml_file(tosca_dir() / STUB_TYPES_FILE)
    if not isinstance(doc, dict):
        raise InputError("tosca/stub_types.yaml is not a mapping", field="template")
    return doc


def dns_label(name: str) -> str:
    """``name`` as a DNS label: lowercase, other characters turned into '-', at most 63 characters."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "cluster"


def render(
    template: str,
    site: Site,
    inputs: ResolvedInputs,
    *,
    cluster_name: str,
    deployment_id: str,
    removal_list: list[str] | None = None,
    wn_count: int | None = None,
    inputs_hash: str | None = None,
) -> dict[str, Any]:
    """The TOSCA document (as data) for ``template`` on ``site`` with ``inputs`` (from ``prepare_inputs``).

    ``wn_count`` overrides the ``wn_num`` input (the workers' ``scalable.count`` reads it with get_input);
    ``removal_list`` (IM VM ids, live ones only) goes on the workers' scalable capability so IM removes those.
    ``inputs_hash`` (the create's fingerprint) goes into ``metadata.provisioner_inputs_hash`` when given.
    """
    if inputs.template != template:
        raise ValueError(f"inputs were prepared for template {inputs.template!r}, not {template!r}")
    cluster_name = _meta_value(cluster_name, "cluster")
    deployment_id = _meta_value(deployment_id, "deployment_id")
    schema = load_schema(template)
    doc = load_template_doc(template)
    directives = doc.pop("provisioner")

    values = _final_values(schema, site, inputs, cluster_name)
    if wn_count is not None:
        values[WORKERS_INPUT] = schema.spec(WORKERS_INPUT).parse(wn_count)

    topology = doc["topology_template"]
    topology["inputs"] = {
        name: {
            "type": spec.tosca_type,
            **({"entry_schema": {"type": "string"}} if spec.type == "list" else {}),
            "description": spec.description,
            "default": values[name],
        }
        for name, spec in schema.inputs.items()
    }
    # Keep a readable order: inputs first.
    doc["topology_template"] = {"inputs": topology.pop("inputs"), **topology}

    overlays = directives.get("overlays") or {}
    if site.public_network is None and "private_only" in overlays:
        merge_into(doc, copy.deepcopy(overlays["private_only"]))
    if values.get("domain_name") and "domain_name" in overlays:
        merge_into(doc, copy.deepcopy(overlays["domain_name"]))

    _apply_site(doc, site, values)
    doc = set_scaling(doc, removal_list=removal_list)
    doc["metadata"] = _metadata(doc, schema, site, values, cluster_name, deployment_id)
    if inputs_hash is not None:
        # The create's fingerprint (template, site, inputs): a registry rebuilt from IM resumes like the original.
        doc["metadata"]["provisioner_inputs_hash"] = _meta_value(inputs_hash, "inputs_hash")
    return _ordered(doc)


def set_scaling(
    doc: Mapping[str, Any], *, wn_count: int | None = None, removal_list: Iterable[str | int] | None = None
) -> dict[str, Any]:
    """A copy of a rendered ``doc`` with a new worker count and/or ``removal_list`` (the lifecycle's scaling).

    IM adds or removes the difference between the new count and the live workers; with ``removal_list`` it removes
    those VM ids (send live ids only: IM merges the list into the stored template by index).
    """
    out = copy.deepcopy(dict(doc))
    nodes = out.get("topology_template", {}).get("node_templates", {})
    if WORKERS not in nodes:
        raise InputError(f"the document has no {WORKERS!r} node to scale", field="template")
    if wn_count is not None:
        inputs = out["topology_template"].get("inputs", {})
        if WORKERS_INPUT not in inputs:
            raise InputError(f"the document has no {WORKERS_INPUT} input", field="template")
        if isinstance(wn_count, bool) or not isinstance(wn_count, int) or not 0 <= wn_count <= 10_000:
            raise InputError(f"must be a whole number of workers, got {brief(wn_count)}", field="wn_count")
        inputs[WORKERS_INPUT]["default"] = wn_count
    if removal_list is not None:
        ids = []
        for item in removal_list:
            text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
            if not isinstance(text, str) or not _VM_ID_RE.fullmatch(text):
                raise InputError(f"must list IM VM ids (digits), got {brief(item)}", field="removal_list")
            ids.append(text)
        scalable = nodes[WORKERS].setdefault("capabilities", {}).setdefault("scalable", {}).setdefault("properties", {})
        scalable["removal_list"] = ids
    return out


def _final_values(schema: TemplateSchema, site: Site, inputs: ResolvedInputs, cluster_name: str) -> dict[str, Any]:
    values = dict(inputs.values)
    site_defaults = {
        "image": site.image,
        "fe_instance_type": site.fe_instance_type or "",
        "wn_instance_type": site.wn_instance_type or "",
        "cluster_name": dns_label(cluster_name),
    }
    for name, fallback in site_defaults.items():
        if name in values and values[name] == "":
            values[name] = fallback
    if "cluster_name" in values and not _LABEL_RE.fullmatch(values["cluster_name"]):
        raise InputError("must be a DNS label", field="cluster_name")  # pragma: no cover - dns_label makes one
    return values


def _apply_site(doc: dict[str, Any], site: Site, values: Mapping[str, Any]) -> None:
    topology = doc["topology_template"]
    nodes = topology["node_templates"]
    for name, flavor_input in ((FRONT, "fe_instance_type"), (WORKERS, "wn_instance_type")):
        node = nodes.get(name)
        if node is None:
            continue
        host = node.get("capabilities", {}).get("host", {}).get("properties", {})
        if values.get(flavor_input, "") == "":
            host.pop("instance_type", None)
    front = nodes.get(FRONT)
    if front is not None and site.public_network is not None:
        endpoint = front.setdefault("capabilities", {}).setdefault("endpoint", {}).setdefault("properties", {})
        endpoint["network_name"] = site.public_network
    workers = nodes.get(WORKERS)
    if workers is not None and site.private_network is not None:
        endpoint = workers.setdefault("capabilities", {}).setdefault("endpoint", {}).setdefault("properties", {})
        endpoint["network_name"] = site.private_network
    targets = [name for name in (FRONT, WORKERS) if name in nodes]
    properties: dict[str, Any] = {"cloud_id": site.cloud_id}
    if site.availability_zone:
        properties["availability_zone"] = site.availability_zone
    topology["policies"] = [
        {"placement": {"type": "tosca.policies.indigo.Placement", "properties": properties, "targets": targets}}
    ]
    if site.inline_types:
        doc.pop("imports", None)
        stubs = stub_types()
        for section in TYPE_SECTIONS:
            if section in stubs:
                doc[section] = copy.deepcopy(stubs[section])


def _metadata(
    doc: Mapping[str, Any],
    schema: TemplateSchema,
    site: Site,
    values: Mapping[str, Any],
    cluster_name: str,
    deployment_id: str,
) -> dict[str, Any]:
    meta = dict(doc.get("metadata") or {})
    addons = [a.name for a in schema.addons if a.when is None or schema.inputs[a.when].is_set(values[a.when])]
    meta.update(
        {
            "infra_name": cluster_name,
            "provisioner_cluster": cluster_name,
            "provisioner_deployment_id": deployment_id,
            "provisioner_template": schema.name,
            "provisioner_site": site.name,
            "provisioner_cloud_id": site.cloud_id,
            # A string, not a list: IM merges lists by index when a scaling POST is merged into the stored TOSCA.
            "provisioner_addons": ",".join(addons),
        }
    )
    return meta


def _meta_value(value: str, what: str) -> str:
    if not isinstance(value, str) or not _META_RE.fullmatch(value):
        raise InputError(
            f"must be 1-128 letters, digits or _ . : @ - (starting with a letter or digit), got {brief(value)}",
            field=what,
        )
    return value


def _ordered(doc: dict[str, Any]) -> dict[str, Any]:
    order = ["tosca_definitions_version", "imports", "description", "metadata", *TYPE_SECTIONS, "topology_template"]
    out = {key: doc[key] for key in order if key in doc}
    out.update({k: v for k, v in doc.items() if k not in out})
    return out


def merge_into(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` into ``base``: mappings key by key, anything else (lists too) replaced."""
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def dump(doc: Mapping[str, Any]) -> str:
    """The document as YAML text (ASCII only, non-ASCII escaped), keys in document order: what a person reads."""
    return dump_text(dict(doc), sort_keys=False, default_flow_style=False, allow_unicode=False, width=100)


def for_im(doc: Mapping[str, Any]) -> str:
    """The document as IM gets it (sent as text/yaml): JSON text, which is YAML in flow style, keys in document order,
    non-ASCII escaped. IM reads it with its YAML parser into the same data as :func:`dump`'s text; writing it needs
    no YAML library (PyYAML's import alone is about 11 ms of a create's start). A document JSON would not write as
    the same YAML data (a key that is not a text; a float JSON writes with an exponent, ``1e-05``, which YAML 1.1
    reads as a text; a text with DEL, which YAML does not allow unescaped, or a character beyond U+FFFF, which JSON
    escapes as two halves YAML would not join) is written by :func:`dump`."""
    if not _same_in_json(doc):
        return dump(doc)
    return json.dumps(dict(doc), ensure_ascii=True)


def _same_in_json(node: Any) -> bool:
    if isinstance(node, Mapping):
        return all(isinstance(k, str) and _same_in_json(k) and _same_in_json(v) for k, v in node.items())
    if isinstance(node, list | tuple):
        return all(_same_in_json(item) for item in node)
    if isinstance(node, float):
        return math.isfinite(node) and "e" not in repr(node)
    if isinstance(node, str):
        return _NOT_SAME_IN_JSON.search(node) is None
    return node is None or isinstance(node, int)  # bool is an int


_NOT_SAME_IN_JSON = re.compile("[\x7f\U00010000-\U0010ffff]")


def masked(doc: Any, secret_values: Iterable[str]) -> Any:
    """A copy of ``doc`` in which every string equal to or containing a secret value is replaced by ``***``."""
    secrets = sorted({s for s in secret_values if s}, key=len, reverse=True)
    if not secrets:
        return copy.deepcopy(doc)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return MASK if any(s in node for s in secrets) else node
        if isinstance(node, Mapping):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [walk(item) for item in node]
        return node

    return walk(doc)
