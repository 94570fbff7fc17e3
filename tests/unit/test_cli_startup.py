"""Start-up: a command imports only what it uses (no timing here: bench figure 2 times it).

``provision --help`` imports no command group; ``provision cluster list`` on SQLite imports its group and the
registry, but no HTTP, SSH, Ansible, TOSCA-parser, AWS or PostgreSQL library, no pydantic (typer's coercion) and no
rich (tables on a pipe). Each is checked in a fresh interpreter, where ``sys.modules`` is what the command loaded."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import typer

from provisioner.state import Store, new_deployment_id
from tests.clihelper import loaded, run_reporting_modules

# Libraries no start-up path below needs: each is imported by the commands that use it.
HEAVY = (
    "requests",
    "urllib3",
    "paramiko",
    "ansible_runner",
    "toscaparser",
    "boto3",
    "botocore",
    "psycopg",
    "pydantic",
    "rich",
    "provisioner.tosca.validate",
    "provisioner.im.client",
)
INFRA_ID = "00000000-0000-0000-0000-000000000001"
GROUPS = ("autoscale", "cluster", "continuum", "edge", "infra", "localim", "runbook", "state", "template", "workflow")


def run_cli(home: Path, *args: str) -> tuple[str, set[str]]:
    """``provision ARGS`` in a fresh interpreter with its own home: stdout and the modules it imported."""
    config = home / "config.yaml"
    config.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    env.update(PROVISION_HOME=str(home), PROVISION_CONFIG=str(config))
    proc, code, modules = run_reporting_modules(args, env, timeout=120)
    assert code == 0, proc.stderr
    return proc.stdout, modules


def test_help_imports_no_command_group_and_no_heavy_library(tmp_path: Path) -> None:
    out, modules = run_cli(tmp_path, "--help")
    assert "cluster" in out and "local-im" in out
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, tuple(f"provisioner.cli.{g}" for g in GROUPS)) == []
    assert loaded(modules, ("provisioner.lifecycle", "provisioner.cli.common", "yaml")) == []


def test_group_help_imports_that_group_only(tmp_path: Path) -> None:
    out, modules = run_cli(tmp_path, "cluster", "--help")
    assert "list" in out and "create" in out
    assert "provisioner.cli.cluster" in modules
    others = tuple(f"provisioner.cli.{g}" for g in GROUPS if g not in ("cluster", "runbook"))
    assert loaded(modules, others) == []
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize("output", ["text", "json"])
def test_cluster_list_on_sqlite_imports_no_heavy_library(tmp_path: Path, output: str) -> None:
    with Store.open(tmp_path) as store:
        store.upsert_cluster(
            "reg-1",
            im_url="http://127.0.0.1:9",
            template="oscar",
            site="local-sim",
            inputs={"wn_num": 1},
            deployment_id=new_deployment_id(),
            infra_id=INFRA_ID,
            state="configured",
            workers=1,
        )
    out, modules = run_cli(tmp_path, "cluster", "list", "-o", output)
    if output == "json":
        assert [c["name"] for c in json.loads(out)] == ["reg-1"]
    else:
        assert out.splitlines()[0].split() == ["NAME", "STATE", "WORKERS", "TEMPLATE", "SITE", "INFRASTRUCTURE"]
        assert out.splitlines()[1].split() == ["reg-1", "configured", "1", "oscar", "local-sim", INFRA_ID]
    assert "provisioner.lifecycle" in modules and "sqlite3" in modules
    assert loaded(modules, HEAVY) == []
    others = tuple(f"provisioner.cli.{g}" for g in GROUPS if g != "cluster")
    assert loaded(modules, others) == []


# --- what the lazy root must keep as it was ----------------------------------------------------------------------


def test_every_entry_lists_the_help_of_its_own_module() -> None:
    from provisioner.cli.main import ENTRIES, load_entry

    for name, entry in ENTRIES.items():
        assert load_entry(name).help == entry.help, name


def test_root_lists_every_group_in_order_and_loads_none_to_do_it() -> None:
    from provisioner.cli.main import ENTRIES, LazyCommands, cli_command

    root = cli_command()
    ctx = typer.Context(root)
    assert root.list_commands(ctx) == list(ENTRIES)
    assert isinstance(root.commands, LazyCommands)
    # Completing a name offers the matching groups with their help, from ENTRIES.
    offered = {item.value: item.help for item in root.shell_complete(ctx, "c")}
    assert set(offered) == {"cluster", "continuum"}
    assert offered["cluster"] == "Create and run clusters: the whole..."


VALUES: list[Any] = [
    None,
    "",
    "text",
    "json",
    "TEXT",
    "x",
    "5",
    "-1",
    "nan",
    "1e3",
    5,
    0,
    5.0,
    0.5,
    -3.0,
    1e9,
    7,
    True,
    False,
    (),
    [],
    ["a"],
    ("a=1", "b"),
    [1],
]


def test_quick_coercion_gives_what_typer_gives_or_leaves_it_to_typer() -> None:
    """For every parameter of every command and a spread of values: a quick answer is typer's own answer."""
    from typer._coercion import build_runtime_param

    from provisioner.cli.main import cli_command, quick_value, walk

    answered = 0
    for command in walk(cli_command()):
        ctx = typer.Context(command)
        params = [*command.params, command.get_help_option(ctx)]
        for param in params:
            if param is None or not hasattr(param, "type_descriptor"):
                continue
            full = build_runtime_param(param.type_descriptor)
            defaults = [param.default] if not callable(param.default) else []
            for value in [*VALUES, *defaults]:
                known, quick = quick_value(param, value, ctx)
                if not known:
                    continue
                answered += 1
                expected = full.coerce(value, param=param, ctx=ctx)
                assert (type(quick), quick) == (type(expected), expected), (command.name, param.name, value)
                if isinstance(expected, Enum):
                    assert quick is expected
    assert answered > 100, "the quick path answered almost nothing: the check itself is broken"


def test_an_invalid_choice_is_typers_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from provisioner.cli.main import main_exit_code

    assert main_exit_code(["--home", str(tmp_path), "cluster", "list", "-o", "yaml"]) == 2
    assert "'yaml' is not one of 'text', 'json'" in capsys.readouterr().err


def test_emit_builds_the_data_only_when_it_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    from provisioner.cli.common import OutputFormat, emit

    built: list[int] = []

    def data() -> list[dict[str, int]]:
        built.append(1)
        return [{"a": 1}]

    emit(data, OutputFormat.text, lambda: "a table")
    assert (capsys.readouterr().out, built) == ("a table\n", [])
    emit(data, OutputFormat.json, lambda: "a table")
    assert (json.loads(capsys.readouterr().out), built) == ([{"a": 1}], [1])
    emit(data, OutputFormat.text)  # no text rendering: the data as JSON
    assert (json.loads(capsys.readouterr().out), built) == ([{"a": 1}], [1, 1])


def test_the_console_script_raises_the_collectors_threshold_before_the_cli_is_imported() -> None:
    """``provision`` (and ``python -m provisioner``) enter through ``cli.entry.main``: the threshold is set first,
    then the CLI imported and run; importing the CLI itself (the tests' runner) leaves the collector alone."""
    import gc
    import subprocess
    import sys

    from provisioner.cli import entry

    code = (
        "import gc, sys\n"
        "from provisioner.cli import main as cli_main\n"
        "seen = []\n"
        "cli_main.run = lambda: seen.append(gc.get_threshold())\n"
        "untouched = gc.get_threshold()\n"
        "from provisioner.cli.entry import main\n"
        "main()\n"
        "print(untouched[0], seen[0][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["700", str(entry.GC_THRESHOLDS[0])]
    assert gc.get_threshold()[0] == 700  # this process imported the CLI: nothing changed
    scripts = Path(__file__).resolve().parents[2].joinpath("pyproject.toml").read_text(encoding="utf-8")
    assert 'provision = "provisioner.cli.entry:main"' in scripts
    main_module = Path(entry.__file__).parents[1].joinpath("__main__.py").read_text(encoding="utf-8")
    assert "from provisioner.cli.entry import main" in main_module


def test_every_dataclass_has_a_docstring() -> None:
    """Python 3.11's dataclasses give a class without a docstring one made from ``inspect.signature``, at import:
    about 0.2 ms a class, paid by every command that imports it. A written docstring costs nothing (and says what
    the object is)."""
    import ast

    import provisioner

    missing = []
    for path in sorted(Path(provisioner.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or ast.get_docstring(node) is not None:
                continue
            if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                missing.append(f"{path.name}: {node.name}")
    assert missing == []
