"""Our TOSCA templates: input schema, sites, rendering and offline validation. Pure: no network.

Disk is touched only to read the templates under ``tosca/`` and the per-cluster secrets file. Typical use::

    schema = load_schema("oscar")
    site = resolve_site("local-sim", settings.sites)
    inputs = prepare_inputs("oscar", {"wn_num": "2"}, secrets_store=SecretStore(settings.home, "demo"))
    doc = render("oscar", site, inputs, cluster_name="demo", deployment_id="d-123")
    validate_offline(doc)
    text = for_im(doc)                                # what IM gets
    shown = dump(masked(doc, inputs.secret_values))   # what a person may see
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.tosca.inputs import ResolvedInputs, load_inputs_file, parse_set_options, prepare_inputs
from provisioner.tosca.render import (
    GRYCAP_COMMIT,
    GRYCAP_TYPES_URL,
    dns_label,
    dump,
    for_im,
    masked,
    merge_into,
    render,
    set_scaling,
    stub_types,
)
from provisioner.tosca.schema import (
    MASK,
    Addon,
    Constraints,
    InputSpec,
    SchemaFileError,
    TemplateSchema,
    list_templates,
    load_schema,
)
from provisioner.tosca.secrets import SecretStore, generate_secret
from provisioner.tosca.sites import LOCAL_SIM, Site, known_sites, resolve_site, site_from_config

if TYPE_CHECKING:
    from provisioner.tosca.validate import (
        OfflineImportError,
        check_no_mask,
        check_rendered_inputs,
        is_ours,
        parse_with_tosca_parser,
        read_tosca_file,
        validate_offline,
    )

# Validation (and the HTTP and e-mail modules it reads imports with) is imported on first use of one of its names:
# commands that only read the registry or render never load it.
_VALIDATE_NAMES = frozenset(
    {
        "OfflineImportError",
        "check_no_mask",
        "check_rendered_inputs",
        "is_ours",
        "parse_with_tosca_parser",
        "read_tosca_file",
        "validate_offline",
    }
)

__all__ = [
    "GRYCAP_COMMIT",
    "GRYCAP_TYPES_URL",
    "LOCAL_SIM",
    "MASK",
    "Addon",
    "Constraints",
    "InputSpec",
    "OfflineImportError",
    "ResolvedInputs",
    "SchemaFileError",
    "SecretStore",
    "Site",
    "TemplateSchema",
    "check_no_mask",
    "check_rendered_inputs",
    "dns_label",
    "dump",
    "for_im",
    "generate_secret",
    "is_ours",
    "known_sites",
    "list_templates",
    "load_inputs_file",
    "load_schema",
    "masked",
    "merge_into",
    "parse_set_options",
    "parse_with_tosca_parser",
    "prepare_inputs",
    "read_tosca_file",
    "render",
    "resolve_site",
    "set_scaling",
    "site_from_config",
    "stub_types",
    "validate_offline",
]


def __getattr__(name: str) -> Any:
    if name in _VALIDATE_NAMES:
        from provisioner.tosca import validate

        value = getattr(validate, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
