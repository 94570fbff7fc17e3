"""Offline validation of a TOSCA document: ours (schema checks, then tosca-parser), or anyone's (tosca-parser).

A real-site document imports GRyCAP's custom types from a pinned URL. Offline, that import (and the same file on
GRyCAP's main/master branches, which third-party templates import) is answered with our stub types file
(tosca/stub_types.yaml) by a urllib handler installed only for the duration of the parse; any other URL is refused
before parsing, with one line, instead of reaching the network. Local file imports are resolved next to the file.

A document holding the mask (``***``, what ``template render`` prints instead of a secret) is never valid: it would
deploy ``***`` as a password.
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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provisioner.errors import InputError
from provisioner.tosca.render import FRONT, GRYCAP_COMMIT, GRYCAP_TYPES_URL, WORKERS, WORKERS_INPUT
from provisioner.tosca.schema import MASK, STUB_TYPES_FILE, list_templates, load_schema, tosca_dir
from provisioner.yamlfile import read_yaml_file

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


#: The URLs of GRyCAP's custom types that offline validation answers with our stub (pinned, and the branches).
GRYCAP_TYPES_URLS = tuple(GRYCAP_TYPES_URL.replace(GRYCAP_COMMIT, ref) for ref in (GRYCAP_COMMIT, "main", "master"))


class OfflineImportError(InputError):
    """An import offline validation cannot resolve: a URL other than GRyCAP's custom types (no network here)."""


def offline_imports() -> dict[str, bytes]:
    """What offline validation serves: our stub types for GRyCAP's custom types URLs."""
    stub = (tosca_dir() / STUB_TYPES_FILE).read_bytes()
    return dict.fromkeys(GRYCAP_TYPES_URLS, stub)


def is_ours(doc: Mapping[str, Any]) -> bool:
    """A document rendered by us (``template render``, ``cluster create``): its metadata has provisioner_* keys."""
    meta = doc.get("metadata")
    return isinstance(meta, Mapping) and any(str(key).startswith("provisioner_") for key in meta)


def validate_offline(doc: Any, *, base_dir: Path | None = None) -> list[str]:
    """Check a TOSCA document without network; raise :class:`InputError` with one clear line on failure.

    Ours get our schema checks too; anyone's get tosca-parser, with the imports that can be resolved offline
    (``base_dir``: where relative file imports are, the document's directory). Returns what was checked.
    """
    if not isinstance(doc, Mapping):
        raise InputError("is not a TOSCA document (a YAML mapping)", field="template")
    if not str(doc.get("tosca_definitions_version", "")).startswith("tosca_simple_yaml_"):
        raise InputError("has no tosca_definitions_version: tosca_simple_yaml_1_0", field="template")
    topology = doc.get("topology_template")
    if not isinstance(topology, Mapping) or not isinstance(topology.get("node_templates"), Mapping):
        raise InputError("has no topology_template.node_templates", field="template")
    check_no_mask(doc)
    checked = []
    ours = is_ours(doc)
    if ours:
        check_rendered_inputs(doc)
        check_scaling(doc)
        checked.append("input schema")
    resolved = resolve_imports(doc, base_dir)
    parse_with_tosca_parser(resolved, partial_stub=not ours)
    checked.append("tosca-parser")
    return checked


def check_no_mask(doc: Mapping[str, Any]) -> None:
    """Refuse a document holding the mask in an input's default/value or a node's property: a masked render."""
    topology = doc.get("topology_template")
    if not isinstance(topology, Mapping):
        return
    places: list[tuple[str, Any]] = []
    inputs = topology.get("inputs")
    if isinstance(inputs, Mapping):
        for name, entry in inputs.items():
            if isinstance(entry, Mapping):
                places += [(f"topology_template.inputs.{name}.{key}", entry[key]) for key in ("default", "value")
                           if key in entry]  # fmt: skip
    nodes = topology.get("node_templates")
    if isinstance(nodes, Mapping):
        for name, node in nodes.items():
            if not isinstance(node, Mapping):
                continue
            where = f"topology_template.node_templates.{name}"
            places.append((f"{where}.properties", node.get("properties")))
            capabilities = node.get("capabilities")
            if isinstance(capabilities, Mapping):
                for cap, body in capabilities.items():
                    if isinstance(body, Mapping):
                        places.append((f"{where}.capabilities.{cap}.properties", body.get("properties")))
    for where, value in places:
        found = _mask_in(value, where)
        if found is not None:
            raise InputError(
                f"holds the mask {MASK!r} instead of a value: this is a masked render and would deploy {MASK!r} "
                "(render it with --show-secrets)",
                field=found,
            )


def _mask_in(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if value == MASK else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _mask_in(item, f"{where}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _mask_in(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def resolve_imports(doc: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """A copy of ``doc`` whose imports tosca-parser can load offline, or one line saying which import cannot be.

    A URL is served only if it is one of GRyCAP's custom types (our stub); a file is looked up next to the
    document (``base_dir``) and given to tosca-parser by its absolute path.
    """
    resolved = copy.deepcopy(dict(doc))
    imports = resolved.get("imports")
    if imports is None:
        return resolved
    if not isinstance(imports, list):
        raise InputError("must be a list", field="imports")
    repositories = resolved.get("repositories") if isinstance(resolved.get("repositories"), Mapping) else {}
    served = offline_imports()
    for index, item in enumerate(imports):
        name, spec = next(iter(item.items())) if isinstance(item, Mapping) and len(item) == 1 else (None, item)
        target = spec.get("file") if isinstance(spec, Mapping) else spec
        if not isinstance(target, str) or not target.strip():
            raise InputError(f"import {index + 1} names no file or URL", field="imports")
        repository = spec.get("repository") if isinstance(spec, Mapping) else None
        if repository is not None:
            repo = repositories.get(repository) if isinstance(repositories, Mapping) else None
            url = repo.get("url") if isinstance(repo, Mapping) else repo
            if not isinstance(url, str):
                raise InputError(f"import {target!r} names repository {repository!r}, which is not defined",
                                 field="imports")  # fmt: skip
            target = f"{url.strip().rstrip('/')}/{target}"
        if urlsplit(target).scheme in ("http", "https", "ftp"):
            if target not in served:
                raise OfflineImportError(
                    f"cannot fetch {target} offline (no network here): offline validation resolves only local "
                    "files and GRyCAP's custom types (our stub)",
                    field="imports",
                    hint="let IM fetch it: provision template validate FILE --im, or infra create FILE --no-validate",
                )
            continue
        path = Path(target).expanduser()
        if not path.is_absolute():
            if base_dir is None:
                raise InputError(f"relative import {target!r} needs the document's directory", field="imports")
            path = base_dir / path
        if not path.is_file():
            raise InputError(f"imported file {target!r} not found (looked for {path})", field="imports")
        absolute = str(path.resolve())
        if isinstance(spec, Mapping):
            fixed: Any = {**spec, "file": absolute}
            fixed.pop("repository", None)
        else:
            fixed = absolute
        imports[index] = {name: fixed} if name is not None else fixed
    return resolved


def read_tosca_file(path: Path, *, field: str) -> dict[str, Any]:
    """A TOSCA file as a mapping; one line naming ``field`` if it cannot be read, is too large or deep for the
    limits of every user file (provisioner/yamlfile.py), is not YAML, or is not a mapping."""
    data = read_yaml_file(path, label=str(path), field=field)
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a TOSCA document (a YAML mapping)", field=field)
    return data


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


def parse_with_tosca_parser(doc: Mapping[str, Any], *, partial_stub: bool = False) -> Any:
    """Parse with tosca-parser (the parser IM uses), offline. Returns the ToscaTemplate.

    ``partial_stub``: the document is not ours, so GRyCAP's types it imports are checked against our stub, which
    defines only what our templates use: a failure says so."""
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
        if partial_stub and _imports_grycap(doc) and any(word in reason for word in _TYPE_TROUBLE):
            reason += (
                " (offline, GRyCAP's custom types are our stub of them, which defines only what our templates use:"
                " IM's dry run, --im, checks against GRyCAP's own)"
            )
        raise InputError(f"TOSCA validation failed: {reason}", field="template") from None


# tosca-parser's words for a type, or a field of a type, it does not know: our stub may be what lacks it.
_TYPE_TROUBLE = ("is not a valid type", "unknown field", "Refer to the definition")


def _imports_grycap(doc: Mapping[str, Any]) -> bool:
    imports = doc.get("imports")
    return isinstance(imports, list) and any(url in str(imports) for url in GRYCAP_TYPES_URLS)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # tosca-parser: "<n> errors ...:\n\t\tUnknownFieldError: ...": keep the first real error.
    errors = [line for line in lines if "Error" in line and not line.lower().startswith("the pre-parsed input")]
    chosen = errors[0] if errors else (lines[0] if lines else type(exc).__name__)
    more = len(errors) - 1
    suffix = f" (and {more} more)" if more > 0 else ""
    return (chosen[:400] + "...") if len(chosen) > 400 else chosen + suffix
