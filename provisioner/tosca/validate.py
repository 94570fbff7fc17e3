"""Offline validation of a rendered document: our own schema checks, then tosca-parser against our stub types.

A real-site document imports GRyCAP's custom types from a pinned URL. Offline, that import is answered with our
stub types file (tosca/stub_types.yaml) by a urllib handler installed only for the duration of the parse; any other
URL fails at once instead of reaching the network.
"""

from __future__ import annotations

import copy
import email.message
import io
import logging
import threading
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from provisioner.errors import InputError
from provisioner.tosca.render import FRONT, GRYCAP_TYPES_URL, WORKERS, WORKERS_INPUT
from provisioner.tosca.schema import MASK, STUB_TYPES_FILE, list_templates, load_schema, tosca_dir

log = logging.getLogger(__name__)
_OPENER_LOCK = threading.Lock()
_REQUIRED_METADATA = ("provisioner_cluster", "provisioner_deployment_id", "provisioner_template", "provisioner_site")


class _ServeLocal(urllib.request.BaseHandler):
    """Answers the URLs in ``served`` from memory and refuses every other URL (no network while validating)."""

    handler_order = 100  # before the default HTTP(S) handlers (500)

    def __init__(self, served: Mapping[str, bytes]) -> None:
        self.served = dict(served)

    def _answer(self, req: urllib.request.Request) -> urllib.response.addinfourl:
        url = req.full_url
        if url not in self.served:
            raise urllib.error.URLError(f"offline validation resolves only {', '.join(self.served)}")
        headers = email.message.Message()
        headers["Content-Type"] = "text/yaml"
        response = urllib.response.addinfourl(io.BytesIO(self.served[url]), headers, url, 200)
        response.msg = "OK"  # type: ignore[attr-defined]  # read by urllib's HTTPErrorProcessor
        return response

    http_open = _answer
    https_open = _answer
    ftp_open = _answer


@contextmanager
def serving(served: Mapping[str, bytes]) -> Iterator[None]:
    """Within the block, ``urllib.request.urlopen`` answers ``served`` URLs locally and refuses others."""
    with _OPENER_LOCK:
        previous = getattr(urllib.request, "_opener", None)
        urllib.request.install_opener(urllib.request.build_opener(_ServeLocal(served)))
        try:
            yield
        finally:
            urllib.request._opener = previous  # type: ignore[attr-defined]


def offline_imports() -> dict[str, bytes]:
    """What offline validation serves: our stub types for the pinned GRyCAP URL."""
    return {GRYCAP_TYPES_URL: (tosca_dir() / STUB_TYPES_FILE).read_bytes()}


def validate_offline(doc: Any) -> None:
    """Check a rendered document without network; raise :class:`InputError` with one clear line on failure."""
    if not isinstance(doc, Mapping):
        raise InputError("is not a TOSCA document (a YAML mapping)", field="template")
    if not str(doc.get("tosca_definitions_version", "")).startswith("tosca_simple_yaml_"):
        raise InputError("has no tosca_definitions_version: tosca_simple_yaml_1_0", field="template")
    topology = doc.get("topology_template")
    if not isinstance(topology, Mapping) or not isinstance(topology.get("node_templates"), Mapping):
        raise InputError("has no topology_template.node_templates", field="template")
    check_rendered_inputs(doc)
    check_scaling(doc)
    parse_with_tosca_parser(doc)


def check_rendered_inputs(doc: Mapping[str, Any]) -> None:
    """Our schema on a rendered document: metadata present, each input's default obeys its rules."""
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping):
        raise InputError("has no metadata (render it with: provision template render)", field="template")
    missing = [key for key in _REQUIRED_METADATA if not meta.get(key)]
    if missing:
        raise InputError(f"metadata lacks {', '.join(missing)}", field="template")
    template = meta["provisioner_template"]
    if template not in list_templates():
        raise InputError(f"metadata.provisioner_template names unknown template {template!r}", field="template")
    schema = load_schema(str(template))
    declared = doc["topology_template"].get("inputs") or {}
    if not isinstance(declared, Mapping):
        raise InputError("topology_template.inputs must be a mapping", field="template")
    for name, spec in schema.inputs.items():
        entry = declared.get(name)
        if not isinstance(entry, Mapping) or "default" not in entry:
            raise InputError(f"input {name} is missing from topology_template.inputs", field="template")
        value = entry["default"]
        if spec.secret and value == MASK:
            continue  # a masked render: the value is not here to check
        spec.parse(value)
        if entry.get("type") != spec.tosca_type:
            raise InputError(f"must have type {spec.tosca_type}, has {entry.get('type')!r}", field=name)
    for name in declared:
        if name not in schema.inputs:
            raise InputError(f"input {name} is not an input of template {template!r}", field="template")


def check_scaling(doc: Mapping[str, Any]) -> None:
    nodes = doc["topology_template"]["node_templates"]
    for required in (FRONT, WORKERS):
        if required not in nodes:
            raise InputError(f"has no {required!r} node", field="template")
    try:
        count = nodes[WORKERS]["capabilities"]["scalable"]["properties"]["count"]
    except (KeyError, TypeError):
        count = None
    if count != {"get_input": WORKERS_INPUT}:
        raise InputError(f"the workers' scalable.count must be {{get_input: {WORKERS_INPUT}}}", field="template")


def parse_with_tosca_parser(doc: Mapping[str, Any]) -> Any:
    """Parse with tosca-parser (the parser IM uses), offline. Returns the ToscaTemplate."""
    from toscaparser.common.exception import ValidationError
    from toscaparser.tosca_template import ToscaTemplate

    served = offline_imports()
    try:
        with serving(served):
            return ToscaTemplate(yaml_dict_tpl=copy.deepcopy(dict(doc)))
    except Exception as exc:  # noqa: BLE001 - tosca-parser raises many types; all mean "invalid"
        # tosca-parser collects errors and may then crash on what it could not load: report the first collected.
        from toscaparser.common.exception import ExceptionCollector

        collected = list(ExceptionCollector.getExceptions())
        reason = _one_line(collected[0]) if collected and not isinstance(exc, ValidationError) else _one_line(exc)
        raise InputError(f"TOSCA validation failed: {reason}", field="template") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # tosca-parser: "<n> errors ...:\n\t\tUnknownFieldError: ...": keep the first real error.
    errors = [line for line in lines if "Error" in line and not line.lower().startswith("the pre-parsed input")]
    chosen = errors[0] if errors else (lines[0] if lines else type(exc).__name__)
    more = len(errors) - 1
    suffix = f" (and {more} more)" if more > 0 else ""
    return (chosen[:400] + "...") if len(chosen) > 400 else chosen + suffix
