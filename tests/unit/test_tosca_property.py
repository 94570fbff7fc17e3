"""Property: any value for any input either renders to a TOSCA document that parses and keeps the value exactly,
or is refused with InputError (exit code 2, one line, no secret in the message)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from provisioner.errors import EXIT_BAD_INPUT, InputError
from provisioner.tosca import (
    InputSpec,
    dump,
    load_schema,
    parse_with_tosca_parser,
    prepare_inputs,
    render,
    resolve_site,
)

SITES = {"ost": {"kind": "openstack", "cloud_id": "ost1", "image": "ost://cloud.example.org/img-1"}}
SCHEMAS = {name: load_schema(name) for name in ("oscar", "kubernetes")}
# Companions that make an input's `requires` hold, so that the value itself is what gets tested.
COMPANIONS: dict[str, dict[str, str]] = {
    "onedata_host": {"onedata_space": "space", "onedata_token": "token-0123456789abcdef"},
    "registry_server": {"registry_user": "user", "registry_password": "password-123"},
    "domain_name": {"cert_user_email": "me@example.org"},
}
NASTY = st.sampled_from(
    [*": {}[],#&*!|>'\"%@`?-~\n\t\\ /.=", "\x00", "\x07", "\r", "\x85", "\u2028", "\ufeff", "é", "☃", "😀",
     "\ud800", "random(8)", "access_token()", "null", "true", "1e3"]
)  # fmt: skip
TEXT = st.one_of(
    st.text(max_size=50),
    st.lists(st.one_of(NASTY, st.text(alphabet="abcXYZ019", min_size=1, max_size=6)), max_size=14).map("".join),
)
VALUES = st.one_of(
    TEXT,
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["3", "0", "101", "true", "FALSE", "8 GiB", "1 TiB", "16Gi", "1.30.2", "1.2", "1.30.2.1"]),
)


def typed_values(spec: InputSpec) -> st.SearchStrategy[Any]:
    """Values of roughly the right type, so that many cases get past the type check to the constraints."""
    if spec.type == "integer":
        return st.integers(min_value=-2, max_value=130).flatmap(lambda n: st.sampled_from([n, str(n), f" {n} "]))
    if spec.type == "boolean":
        return st.sampled_from([True, False, "true", "false", "True", "FALSE", "yes", "0"])
    if spec.type == "size":
        return st.integers(min_value=0, max_value=1100).flatmap(
            lambda n: st.sampled_from([n, str(n), f"{n} GiB", f"{n}Gi", f"{n} TiB", f"{n} GB"])
        )
    if spec.type == "version":
        return st.from_regex(r"1\.[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True)
    if spec.constraints.pattern:
        return st.one_of(st.from_regex(spec.constraints.pattern, fullmatch=True), TEXT)
    return st.one_of(TEXT, st.text(min_size=8, max_size=60))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, Any, str]:
    template = draw(st.sampled_from(sorted(SCHEMAS)))
    name = draw(st.sampled_from(sorted(SCHEMAS[template].inputs)))
    # Mostly values of the right kind (so constraints get exercised), sometimes anything at all.
    value = draw(typed_values(SCHEMAS[template].inputs[name]) if draw(st.integers(0, 3)) else VALUES)
    site = draw(st.sampled_from(["local-sim", "ost"]))
    return template, name, value, site


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_value_renders_exactly_or_is_refused(case: tuple[str, str, Any, str]) -> None:
    template, name, value, site_name = case
    spec = SCHEMAS[template].inputs[name]
    raw = {**{k: v for k, v in COMPANIONS.get(name, {}).items() if k in SCHEMAS[template].inputs}, name: value}
    try:
        inputs = prepare_inputs(template, raw, secrets_store=None)
    except InputError as err:
        event(f"refused ({spec.type})")
        assert err.exit_code == EXIT_BAD_INPUT
        assert "\n" not in str(err)
        assert err.field is not None
        if spec.secret and isinstance(value, str) and len(value) >= 4:
            # The value may be a word of the rule itself (IM's reserved "access_token()"): not a leak.
            assert value not in str(err).replace("'access_token()'", "").replace("'random(N)'", "")
        return

    typed = inputs[name]
    event(f"rendered ({spec.type})")
    if spec.type == "string":
        assert typed == value, "strings stay strings exactly"
    doc = render(template, resolve_site(site_name, SITES), inputs, cluster_name="prop", deployment_id="d")
    text = dump(doc)
    back = yaml.safe_load(text)
    assert back == doc
    declared = back["topology_template"]["inputs"][name]["default"]
    if typed != "" or name not in ("image", "fe_instance_type", "wn_instance_type", "cluster_name"):
        assert declared == typed
        assert type(declared) is type(typed)
    parsed = parse_with_tosca_parser(back)
    defaults = {i.name: i.default for i in parsed.inputs}
    assert defaults[name] == declared
