"""The shared loader of users' YAML files: size, depth and alias limits before anything is built; brief messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import InputError
from provisioner.tosca.schema import brief
from provisioner.yamlfile import MAX_DEPTH, MAX_FILE_BYTES, read_yaml_file, read_yaml_mapping


def bomb(levels: int = 9, under: str = "wn_num") -> str:
    """A "billion laughs": ``levels`` anchors, each a list of ten of the one before (10**levels strings)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    lines.append(f"{under}: *a{levels}")
    return "\n".join(lines) + "\n"


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "file.yaml"
    path.write_text(text)
    return read_yaml_file(path, label=str(path), field="--inputs")


def test_ordinary_files_load(tmp_path: Path) -> None:
    assert load(tmp_path, "wn_num: 2\nlist: [1, 2]\nanchor: &x {a: 1}\nagain: *x\n") == {
        "wn_num": 2,
        "list": [1, 2],
        "anchor": {"a": 1},
        "again": {"a": 1},
    }
    assert load(tmp_path, "") is None
    assert read_yaml_mapping(tmp_path / "file.yaml", label="x", field="f") == {}


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="aliases expand to more than") as err:
        load(tmp_path, bomb())
    assert str(err.value).startswith("--inputs: ")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recursive alias"):
        load(tmp_path, "wn_num: &a [1, *a]\n")


def test_nesting_too_deep_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"nests deeper than {MAX_DEPTH} levels"):
        load(tmp_path, "wn_num: " + "[" * 5000 + "]" * 5000 + "\n")  # the composer would hit the recursion limit


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="more than 1000 aliases"):
        load(tmp_path, "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as out:
        out.truncate(50 * 1024 * 1024)  # 50 MB of nothing: refused from its size, never read
    with pytest.raises(InputError, match=f"is too large: 52428800 bytes, the limit is {MAX_FILE_BYTES}"):
        read_yaml_file(path, label=str(path), field="--inputs")


def test_brief_never_renders_a_value_whole() -> None:
    value: Any = ["x"] * 10
    for _ in range(9):
        value = [value] * 10  # 10**10 strings, shared: repr() of it would take gigabytes
    shown = brief(value)
    assert len(shown) <= 60 and shown.startswith("[[[")
    assert brief("y" * 10_000).endswith("...'") and len(brief("y" * 10_000)) == 60
    assert brief(3) == "3"


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "none.yaml").write_text("")
    env = {**os.environ, "PROVISION_HOME": str(tmp_path / "home"), "PROVISION_CONFIG": str(tmp_path / "none.yaml")}
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_the_cli_refuses_an_alias_bomb_under_an_input(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text(bomb(under="wn_num"))
    result = run_cli(tmp_path, "template", "validate", "oscar", "--inputs", str(inputs))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: --inputs: {inputs}: its aliases expand to more than 200000 values (an alias bomb?)"
    ]


def test_the_cli_refuses_a_50_mb_inputs_file_of_keys(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    line = "".join(f"key{i:07d}: {i}\n" for i in range(10_000))
    with inputs.open("w") as out:
        for _ in range(50 * 1024 * 1024 // len(line) + 1):
            out.write(line)
    result = run_cli(tmp_path, "template", "validate", "oscar", "--inputs", str(inputs))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith(f"error: --inputs: {inputs} is too large: ")


@pytest.mark.parametrize("kind", ["policy", "config", "inventory", "tosca"])
def test_every_user_file_goes_through_the_limits(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(bomb(under="min_workers" if kind == "policy" else "sites" if kind == "config" else "front"))
    args = {
        "policy": ["autoscale", "check", str(path)],
        "config": ["--config", str(path), "cluster", "list"],
        "inventory": ["edge", "create", "e1", "--inventory", str(path)],
        "tosca": ["template", "validate", str(path)],
    }[kind]
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert "its aliases expand to more than 200000 values" in lines[0], lines


def test_dump_text_is_the_pure_dumpers_text_for_mappings() -> None:
    """libyaml writes what PyYAML's own dumper writes for our templates and for mappings of plain and single-quoted
    strings, with every option we use; with strings that need double quotes and escapes it may wrap a long line
    elsewhere, and the text still loads back to the same data."""
    import random
    import string

    import yaml

    from provisioner import tosca
    from provisioner.state import new_deployment_id
    from provisioner.yamlfile import dump_text

    render_options = {"sort_keys": False, "default_flow_style": False, "allow_unicode": False, "width": 100}
    secret_options = {"sort_keys": True, "default_flow_style": False, "allow_unicode": False}
    for template in ("oscar", "kubernetes"):
        site = tosca.resolve_site("local-sim", {})
        inputs = tosca.prepare_inputs(template, {}, secrets_store=None)
        doc = dict(tosca.render(template, site, inputs, cluster_name="c1", deployment_id=new_deployment_id()))
        assert dump_text(doc, **render_options) == yaml.safe_dump(doc, **render_options)
        assert tosca.dump(doc) == yaml.safe_dump(doc, **render_options)

    rnd = random.Random(7)
    plain = string.ascii_letters + string.digits + " -_./:=+@,#'"
    awkward = plain + '"\n\téü€中\u2028\x85{}[]&*!|>%`'

    def text(alphabet: str) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 160)))

    def value(alphabet: str, depth: int = 0) -> Any:
        roll = rnd.random()
        if depth > 3 or roll < 0.45:
            return rnd.choice([text(alphabet), rnd.randint(-(10**12), 10**12), rnd.random(), True, None, "yes", "~"])
        if roll < 0.75:
            return {
                text(string.ascii_letters)[:12] or "k": value(alphabet, depth + 1) for _ in range(rnd.randint(1, 5))
            }
        return [value(alphabet, depth + 1) for _ in range(rnd.randint(0, 4))]

    for _ in range(600):
        doc = {f"key{i}": value(plain) for i in range(rnd.randint(1, 4))}
        for options in (render_options, secret_options):
            assert dump_text(doc, **options) == yaml.safe_dump(doc, **options)
        odd = {f"key{i}": value(awkward) for i in range(rnd.randint(1, 4))}
        assert yaml.safe_load(dump_text(odd, **render_options)) == odd  # wrapped differently at times, same data


@pytest.mark.parametrize("text", ["", "\n", " \t\r\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_files_are_none(tmp_path: Path, text: str) -> None:
    """Blanks and line breaks are read as nothing without a parser; anything else goes through PyYAML as before."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert read_yaml_file(path, label="config file c.yaml", field="config") is None
    assert read_yaml_mapping(path, label="config file c.yaml", field="config") == {}
