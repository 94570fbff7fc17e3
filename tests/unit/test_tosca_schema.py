"""The input schema: types, constraints, and one clear exit-2 line for every kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.errors import EXIT_BAD_INPUT, InputError
from provisioner.tosca import (
    InputSpec,
    list_templates,
    load_inputs_file,
    load_schema,
    parse_set_options,
    prepare_inputs,
)
from provisioner.tosca.schema import Constraints, SchemaFileError, load_input_specs, schema_from_specs, tosca_dir

DATA = Path(__file__).resolve().parent.parent / "data" / "tosca"
SECRETS = {"admin_token", "oscar_password", "minio_password", "onedata_token", "registry_password"}
OSCAR_ONLY = {
    "oscar_password",
    "minio_password",
    "minio_buckets",
    "knative",
    "onedata_host",
    "onedata_space",
    "onedata_token",
}


def bad(template: str, raw: dict[str, object]) -> InputError:
    with pytest.raises(InputError) as info:
        prepare_inputs(template, raw, secrets_store=None)
    err = info.value
    assert err.exit_code == EXIT_BAD_INPUT
    assert "\n" not in str(err), "one line"
    return err


# --- the shipped schema -----------------------------------------------------------------------------------------


def test_templates_are_listed() -> None:
    assert list_templates() == ["kubernetes", "oscar"]


def test_oscar_takes_the_inputs_of_the_issue() -> None:
    names = set(load_schema("oscar").inputs)
    wanted = {
        "wn_num", "fe_cpus", "fe_mem", "wn_cpus", "wn_mem", "wn_disk_size", "storage_size", "kube_version",
        "admin_token", "oscar_password", "minio_password", "cluster_name", "domain_name", "cert_user_email",
        "kube_install_yunikorn", "knative", "image", "onedata_host", "onedata_space", "onedata_token",
        "registry_server", "registry_user", "registry_password",
    }  # fmt: skip
    assert wanted <= names


def test_kubernetes_is_oscar_without_the_oscar_inputs() -> None:
    oscar = set(load_schema("oscar").inputs)
    kube = set(load_schema("kubernetes").inputs)
    assert kube == oscar - OSCAR_ONLY


def test_secrets_have_no_weak_defaults() -> None:
    schema = load_schema("oscar")
    assert schema.secret_names == SECRETS
    for name in SECRETS:
        spec = schema.inputs[name]
        assert spec.default in (None, ""), name
    for name in ("admin_token", "oscar_password", "minio_password"):
        assert schema.inputs[name].generate
    for name in ("oscar_password", "minio_password", "registry_password"):
        assert (schema.inputs[name].constraints.min_length or 0) >= 8


def test_every_default_obeys_its_own_rules() -> None:
    for name, spec in load_input_specs(tosca_dir() / "inputs.yaml").items():
        if spec.default is not None:
            assert spec.parse(spec.default) == spec.default, name


def test_defaults_resolve_and_secrets_are_generated() -> None:
    resolved = prepare_inputs("oscar", {}, secrets_store=None)
    assert resolved["wn_num"] == 1
    assert resolved["knative"] is True
    assert resolved["kube_install_yunikorn"] is False
    assert resolved["fe_mem"] == "8 GiB"
    assert resolved.generated == {"admin_token", "oscar_password", "minio_password"}
    for name in resolved.generated:
        assert len(resolved[name]) >= 32
    assert resolved["onedata_token"] == ""
    assert set(resolved.public) == set(resolved.all) - SECRETS
    assert "***" in repr(resolved)
    for value in resolved.secret_values:
        assert value not in repr(resolved)


# --- typing of --set text and YAML values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("wn_num", "3", 3),
        ("wn_num", " 3 ", 3),
        ("wn_num", 3, 3),
        ("knative", "false", False),
        ("knative", "TRUE", True),
        ("knative", False, False),
        ("fe_mem", "16", "16 GiB"),
        ("fe_mem", "16 GiB", "16 GiB"),
        ("fe_mem", "16Gi", "16 GiB"),
        ("fe_mem", "1 TiB", "1024 GiB"),
        ("fe_mem", 32, "32 GiB"),
        ("kube_version", "1.31.2", "1.31.2"),
        ("cluster_name", "my-oscar", "my-oscar"),
        ("onedata_space", " leading and trailing spaces ", " leading and trailing spaces "),
    ],
)
def test_values_are_parsed_by_type(name: str, given: object, expected: object) -> None:
    raw: dict[str, object] = {name: given}
    if name == "onedata_space":
        raw.update(onedata_host="op.example.org", onedata_token="t" * 20)
    resolved = prepare_inputs("oscar", raw, secrets_store=None)
    assert resolved[name] == expected
    assert type(resolved[name]) is type(expected)


def test_strings_stay_strings_exactly() -> None:
    tricky = "a: {b}\n\"c\" 'd' #e\t*f &g !h ünï"
    resolved = prepare_inputs("oscar", {"oscar_password": tricky}, secrets_store=None)
    assert resolved["oscar_password"] == tricky


# --- each kind of bad input: one line, names the input and the rule, exit 2 --------------------------------------


def test_unknown_input_suggests_the_closest() -> None:
    err = bad("oscar", {"wn_nun": "3"})
    assert err.field == "wn_nun"
    assert "unknown input" in str(err)
    assert "did you mean 'wn_num'" in str(err)


def test_oscar_input_is_unknown_to_kubernetes() -> None:
    err = bad("kubernetes", {"oscar_password": "long-enough-password"})
    assert "unknown input for template 'kubernetes'" in str(err)
    assert "long-enough-password" not in str(err)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("wn_num", "three", "must be an integer"),
        ("wn_num", "3.0", "must be an integer"),
        ("wn_num", True, "must be an integer"),
        ("wn_num", 2.5, "must be an integer"),
        ("knative", "yes please", "must be true or false"),
        ("knative", 1, "must be true or false"),
        ("fe_mem", "8 GB", "must be a size in GiB"),
        ("fe_mem", "lots", "must be a size in GiB"),
        ("kube_version", "latest", "must be a version"),
        ("kube_version", 1.3, "quote it in YAML"),
        ("cluster_name", 12, "must be a string"),
        ("registry_user", ["a"], "must be a string"),
        ("wn_num", None, "needs a value"),
    ],
)
def test_wrong_type(name: str, value: object, words: str) -> None:
    err = bad("oscar", {name: value})
    assert err.field == name
    assert str(err).startswith(f"{name}: ")
    assert words in str(err)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("wn_num", "101", "between 0 and 100"),
        ("wn_num", "-1", "between 0 and 100"),
        ("fe_cpus", "1", "between 2 and 128"),
        ("fe_mem", "2 GiB", "between 4 GiB and 1024 GiB"),
        ("kube_version", "1.20.1", "between 1.28.0 and 1.35.99"),
    ],
)
def test_out_of_range(name: str, value: object, words: str) -> None:
    err = bad("oscar", {name: value})
    assert err.field == name
    assert words in str(err)


@pytest.mark.parametrize("name", ["oscar_password", "minio_password"])
def test_short_password_is_refused_without_showing_it(name: str) -> None:
    err = bad("oscar", {name: "s3cr3t!"})
    assert err.field == name
    assert "at least 8 characters" in str(err)
    assert "s3cr3t!" not in str(err)


def test_registry_password_min_length_when_set() -> None:
    err = bad("oscar", {"registry_server": "r.example.org", "registry_user": "u", "registry_password": "short"})
    assert err.field == "registry_password"
    assert "at least 8" in str(err)


def test_minio_password_max_length() -> None:
    err = bad("oscar", {"minio_password": "x" * 41})
    assert "at most 40 characters" in str(err)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("cluster_name", "My_Cluster", "a DNS label"),
        ("domain_name", "not a domain", "a lowercase DNS domain"),
        ("image", "just-a-name", "an image URL"),
        ("admin_token", "has spaces in the token", "letters, digits"),
        ("fe_instance_type", "m1 large", "a flavor name"),
    ],
)
def test_pattern(name: str, value: str, words: str) -> None:
    err = bad("oscar", {name: value})
    assert err.field == name
    assert words in str(err)


@pytest.mark.parametrize("value", ["a\x00b", "bell\x07", "cr\rlf", "esc\x1b[31m", "lone \ud800 surrogate"])
def test_control_characters_are_refused(value: str) -> None:
    err = bad("oscar", {"oscar_password": value + "-long-enough"})
    assert "control characters" in str(err)


@pytest.mark.parametrize("value", ["random(16)", "random(8)-suffix", "access_token()"])
def test_values_im_would_rewrite_are_refused(value: str) -> None:
    err = bad("oscar", {"onedata_space": value, "onedata_host": "h.example.org", "onedata_token": "t" * 20})
    assert "IM replaces such values" in str(err)


def test_requires() -> None:
    err = bad("oscar", {"onedata_host": "oneprovider.example.org", "onedata_space": "s"})
    assert err.field == "onedata_token"
    assert "required when onedata_host is set" in str(err)
    err = bad("oscar", {"domain_name": "example.org"})
    assert err.field == "cert_user_email"
    ok = prepare_inputs(
        "oscar", {"domain_name": "example.org", "cert_user_email": "me@example.org"}, secrets_store=None
    )
    assert ok["domain_name"] == "example.org"


# --- --set and inputs files ---------------------------------------------------------------------------------------


def test_parse_set_options() -> None:
    assert parse_set_options(["wn_num=3", "oscar_password=a=b=c", "x= spaced ", "empty="]) == {
        "wn_num": "3",
        "oscar_password": "a=b=c",
        "x": " spaced ",
        "empty": "",
    }
    assert parse_set_options(["wn_num=1", "wn_num=2"]) == {"wn_num": "2"}


@pytest.mark.parametrize("pair", ["wn_num", "=3", "not a key=3", ""])
def test_set_without_key_or_equals(pair: str) -> None:
    with pytest.raises(InputError) as info:
        parse_set_options([pair])
    assert info.value.field == "--set"
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "KEY=VALUE" in str(info.value)


def test_inputs_file(tmp_path: Path) -> None:
    loaded = load_inputs_file(DATA / "adversarial-inputs.yaml")
    assert loaded["minio_password"] == "line one\nline two\n"
    resolved = prepare_inputs("oscar", loaded, secrets_store=None)
    assert resolved["onedata_space"] == "Space ünïcødé ☃ {x}: y"
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_inputs_file(empty) == {}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("- a\n- b\n", "must be a YAML mapping"),
        ("just text\n", "must be a YAML mapping"),
        ("wn_num: [1\n", "not valid YAML at line"),
        ("1: x\n", "input names must be strings"),
    ],
)
def test_bad_inputs_file(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "inputs.yaml"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_inputs_file(path)
    assert info.value.field == "--inputs"
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_inputs_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_inputs_file(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        load_inputs_file(binary)


def test_unknown_template() -> None:
    with pytest.raises(InputError) as info:
        load_schema("oscr")
    assert "did you mean 'oscar'" in str(info.value)
    assert "known templates: kubernetes, oscar" in str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT


# --- the engine with a schema built in code (float, valid_values) -------------------------------------------------


def test_float_and_valid_values() -> None:
    ratio = InputSpec(
        name="ratio", type="float", description="r", default=0.5, constraints=Constraints(in_range=(0, 1))
    )
    cpus = InputSpec(
        name="cpus", type="integer", description="c", default=2, constraints=Constraints(valid_values=(2, 4))
    )
    schema = schema_from_specs("custom", [ratio, cpus])
    assert prepare_inputs(schema, {"ratio": "0.25", "cpus": "4"}, secrets_store=None).all == {"ratio": 0.25, "cpus": 4}
    assert prepare_inputs(schema, {"ratio": 1}, secrets_store=None)["ratio"] == 1.0
    for raw, words in [({"ratio": "nan"}, "finite"), ({"ratio": "x"}, "a number"), ({"ratio": "2"}, "between 0 and 1"),
                       ({"cpus": "3"}, "one of 2, 4")]:  # fmt: skip
        with pytest.raises(InputError, match=words):
            prepare_inputs(schema, raw, secrets_store=None)


def test_broken_schema_file_is_a_project_bug(tmp_path: Path) -> None:
    (tmp_path / "inputs.yaml").write_text("inputs:\n  x:\n    type: integer\n    description: d\n    default: 5\n"
                                          "    constraints: {in_range: [0, 3]}\n")  # fmt: skip
    (tmp_path / "t.yaml").write_text("provisioner: {inputs: [x]}\ntopology_template: {node_templates: {}}\n")
    with pytest.raises(SchemaFileError, match="its default breaks its own rules"):
        load_schema("t", tmp_path)


def test_our_templates_are_parsed_once_then_read_from_their_json_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template under tosca/ is parsed (YAML) once and its data kept as JSON in tosca/__pycache__, named after the
    file's mtime and size: a changed file is parsed again, a file elsewhere is never copied, data JSON cannot hold
    exactly is not copied, and a directory that cannot be written only costs the parse."""
    import json

    from provisioner.tosca import schema

    tosca_dir = tmp_path / "tosca"
    tosca_dir.mkdir()
    monkeypatch.setattr(schema, "TOSCA_DIR", tosca_dir)
    template = tosca_dir / "t.yaml"
    template.write_text("a: 1\nb: [x, {c: null}]\n")
    copy_path = tosca_dir / "__pycache__" / "t.yaml.json"
    assert schema.read_yaml_file(template) == {"a": 1, "b": ["x", {"c": None}]}
    entry = json.loads(copy_path.read_text())
    assert entry["data"] == {"a": 1, "b": ["x", {"c": None}]}
    assert (entry["mtime_ns"], entry["size"]) == (template.stat().st_mtime_ns, template.stat().st_size)

    schema._parsed.cache_clear()  # a new process: the copy is read, not the YAML
    entry["data"] = {"from": "the copy"}
    copy_path.write_text(json.dumps(entry))
    assert schema.read_yaml_file(template) == {"from": "the copy"}

    template.write_text("a: 2\n")  # changed (size and mtime): parsed again, the copy replaced
    os.utime(template, ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    assert schema.read_yaml_file(template) == {"a": 2}
    assert json.loads(copy_path.read_text())["data"] == {"a": 2}

    template.write_text("1: one\n")  # a number as a key: JSON would make it a text, so no copy
    os.utime(template, ns=(entry["mtime_ns"] + 2 * 10**9, entry["mtime_ns"] + 2 * 10**9))
    assert schema.read_yaml_file(template) == {1: "one"}
    assert json.loads(copy_path.read_text())["data"] == {"a": 2}  # the old copy, whose mtime no longer matches
    schema._parsed.cache_clear()
    assert schema.read_yaml_file(template) == {1: "one"}

    elsewhere = tmp_path / "mine.yaml"
    elsewhere.write_text("x: 1\n")
    assert schema.read_yaml_file(elsewhere) == {"x": 1}
    assert not (tmp_path / "__pycache__").exists()

    unwritable = tmp_path / "installed"  # where no copy can be written (as root, modes would not stop it)
    unwritable.mkdir()
    (unwritable / "__pycache__").write_text("a file, not a directory")
    monkeypatch.setattr(schema, "TOSCA_DIR", unwritable)
    other = unwritable / "u.yaml"
    other.write_text("u: 1\n")
    assert schema.read_yaml_file(other) == {"u": 1}
    assert sorted(p.name for p in unwritable.iterdir()) == ["__pycache__", "u.yaml"]  # no temporary file left
