"""The text output of the commands: the shared helpers (``provisioner.cli.render``) and the real CLI's text.

Text output shows human values (``-``, ``a, b``, yes/no, ``1 worker``), and tables with headers whose columns line
up; ``-o json`` is unchanged. The commands here need no IM (the ones that do are in tests/integration/test_cli_text.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from provisioner.addons import Check, InstallReport, VerifyReport
from provisioner.cli.cluster import install_text, verify_text
from provisioner.cli.main import app
from provisioner.cli.render import PIPE_WIDTH, _plain_table, _rich_table, human, plural, table
from provisioner.model import ClusterKind
from provisioner.state import Store
from tests.clihelper import assert_human


def columns_of(line: str) -> list[int]:
    """Where each cell of a table line starts (cells are separated by two spaces or more)."""
    return [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", line)]


# --- human --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("", "-"),
        ("running", "running"),
        (True, "yes"),
        (False, "no"),
        (0, "0"),
        (3, "3"),
        (4.0, "4"),
        (2.5, "2.5"),
        (["10.0.0.1", "10.0.0.2"], "10.0.0.1, 10.0.0.2"),
        ([], "-"),
        ((), "-"),
        (["a", None, True], "a, -, yes"),
        ([["a", "b"], "c"], "a, b, c"),
        ({"b", "a"}, "a, b"),
        ({"used": 2, "limit": None}, "used=2, limit=-"),
        ({}, "-"),
    ],
)
def test_human(value: object, shown: str) -> None:
    assert human(value) == shown


@pytest.mark.parametrize(
    ("n", "word", "many", "shown"),
    [
        (0, "worker", None, "0 workers"),
        (1, "worker", None, "1 worker"),
        (2, "worker", None, "2 workers"),
        (1, "VM", None, "1 VM"),
        (4, "VM", None, "4 VMs"),
        (1, "schedule entry", "schedule entries", "1 schedule entry"),
        (2, "schedule entry", "schedule entries", "2 schedule entries"),
    ],
)
def test_plural(n: int, word: str, many: str | None, shown: str) -> None:
    assert plural(n, word, many) == shown


# --- table --------------------------------------------------------------------------------------------------------


def test_table_has_headers_aligned_columns_and_human_cells() -> None:
    text = table(
        ["NAME", "WORKERS", "IPS", "READY"],
        [("alpha", 1, ["10.0.0.1", "10.0.0.2"], True), ("a-much-longer-name", None, [], False)],
    )
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "WORKERS", "IPS", "READY"]
    assert lines[1].split("  ")[0] == "alpha"
    assert "10.0.0.1, 10.0.0.2" in lines[1] and lines[1].endswith("yes")
    assert lines[2].endswith("no")
    # Text columns start under their header; the number column is right-aligned under its header's end.
    header = columns_of(lines[0])
    for line in lines[1:]:
        starts = columns_of(line)
        assert starts[0] == header[0] and starts[2:] == header[2:], (line, header)
    end_of_workers = lines[0].index("WORKERS") + len("WORKERS")
    assert lines[1][end_of_workers - 1] == "1" and lines[2][end_of_workers - 1] == "-"
    assert_human(text)
    assert all(line == line.rstrip() for line in lines)


def test_table_without_rows_says_so() -> None:
    assert table(["NAME"], [], empty="no clusters") == "no clusters"
    assert table(["NAME"], []) == ""


def test_table_cells_are_not_markup_and_not_coloured() -> None:
    text = table(["RULE", "WHY"], [("[steady]", "[bold]3[/bold] workers :x:")])
    assert "[steady]" in text and "[bold]3[/bold] workers :x:" in text
    assert "\x1b[" not in text  # not a terminal: no colour codes


def test_table_on_a_pipe_is_not_cut_or_wrapped() -> None:
    long = "x" * 3000
    text = table(["KEY", "VALUE"], [("k", long), ("other", "v")])
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].endswith(long)
    assert len(lines[1]) < PIPE_WIDTH


def test_table_indent() -> None:
    lines = table(["VM", "STATE"], [("0", "running")], indent=2).splitlines()
    assert lines == ["  VM  STATE", "  0   running"]


# Printable ASCII with no spaces at either end: what the plain layout takes on (anything else goes to rich).
_SIMPLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12).filter(
    lambda text: text == text.strip()
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.tuples(
            st.lists(_SIMPLE, min_size=n, max_size=n),
            st.lists(st.lists(_SIMPLE, min_size=n, max_size=n), min_size=1, max_size=6),
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.integers(0, 4),
        )
    )
)
def test_plain_table_on_a_pipe_is_what_rich_prints(case: tuple[list[str], list[list[str]], list[bool], int]) -> None:
    """The plain layout (no rich import, so ``cluster list`` of 1,000 starts fast) gives rich's text, to the byte."""
    columns, cells, right, indent = case
    plain = _plain_table(columns, cells, right, indent)
    assert plain is not None
    assert plain == _rich_table(columns, cells, right, indent, terminal=False)


@pytest.mark.parametrize("cell", ["日本語", "é", "tab\there", "two\nlines", " padded", ""])
def test_cells_the_plain_layout_does_not_take_go_to_rich(cell: str) -> None:
    assert _plain_table(["NAME", "VALUE"], [["a", cell]], [False, False], 0) is None
    assert table(["NAME", "VALUE"], [("a", cell)]) == _rich_table(
        ["NAME", "VALUE"], [["a", human(cell)]], [False, False], 0, terminal=False
    )


def test_table_refuses_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        table(["A", "B", "C"], [("a", "b")])


def test_install_and_verify_text_are_tables() -> None:
    report = InstallReport(
        cluster="c1",
        components=["minio"],
        preflight_only=False,
        inventory="/inv/hosts.yml",
        ssh=[],
        run_id="r1",
        artifacts="/art",
        status="successful",
        stats={"wn-1": {"ok": 3, "changed": 1}, "front": {"ok": 12, "changed": 4, "skipped": 2}},
    )
    lines = install_text(report).splitlines()
    assert lines[0] == "c1: installed: minio"
    assert lines[1].split() == ["HOST", "OK", "CHANGED", "SKIPPED"]
    assert lines[2].split() == ["front", "12", "4", "2"] and lines[3].split() == ["wn-1", "3", "1", "0"]
    checks = [Check("ssh", "ok", "2 nodes answer"), Check("oscar-health", "failed", "HTTP 503")]
    lines = verify_text(VerifyReport("c1", checks)).splitlines()
    assert lines[0] == "c1: some checks failed"
    assert lines[1].split() == ["RESULT", "CHECK", "DETAIL"]
    assert lines[2].split(None, 2) == ["ok", "ssh", "2 nodes answer"]
    assert lines[3].split(None, 2) == ["FAIL", "oscar-health", "HTTP 503"]


# --- the real CLI, in process --------------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text(
        "sites:\n  ifca:\n    kind: openstack\n    cloud_id: ost-ifca\n    image: ost://api.cloud.ifca.es/0123-abcd\n"
    )
    for var in ("PROVISION_IM_URL", "PROVISION_AUTH_FILE"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner(env={"PROVISION_HOME": str(home), "PROVISION_CONFIG": str(config)})

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    invoke.home = home  # type: ignore[attr-defined]
    return invoke


def register_edge(home: Path) -> None:
    vms = [
        {"id": "0", "role": "front", "state": "running", "private_ip": "10.0.0.1", "public_ip": None},
        {"id": "1", "role": "wn", "state": None, "private_ip": "10.0.0.2", "public_ip": None},
    ]
    with Store.open(home) as store:
        store.upsert_cluster(
            "edge1",
            im_url="",
            kind=ClusterKind.EDGE,
            template="oscar",
            site="edge",
            inputs={},
            deployment_id="dep-edge1",
            state="configured",
            workers=1,
            extra={"vms": vms},
        )
        store.upsert_cluster(
            "fresh",
            im_url="",
            kind=ClusterKind.EDGE,
            template="oscar",
            site="edge",
            inputs={},
            deployment_id="dep-fresh",
        )


def test_cluster_list_and_status_text(run) -> None:  # type: ignore[no-untyped-def]
    assert run("cluster", "list") == "no clusters\n"
    register_edge(run.home)
    text = run("cluster", "list")
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "WORKERS", "TEMPLATE", "SITE", "INFRASTRUCTURE"]
    assert lines[1].split() == ["edge1", "configured", "1", "oscar", "edge", "-"]
    assert lines[2].split() == ["fresh", "-", "-", "oscar", "edge", "-"]
    assert_human(text)

    status = run("cluster", "status", "edge1")
    lines = status.splitlines()
    assert lines[0] == "cluster edge1: configured (1 worker)"
    assert lines[1].startswith("  infrastructure - at ")
    assert lines[2].split() == ["VM", "ROLE", "STATE", "PRIVATE", "IP", "PUBLIC", "IP"] and lines[2].startswith("  VM")
    assert lines[3].split() == ["0", "front", "running", "10.0.0.1", "-"]
    assert lines[4].split() == ["1", "wn", "-", "10.0.0.2", "-"]
    assert_human(status)
    assert run("cluster", "status", "fresh").splitlines()[0] == "cluster fresh: unknown (workers unknown)"

    # -o json is what it always was: the values themselves.
    data = json.loads(run("cluster", "status", "edge1", "-o", "json"))
    assert data["workers"] == 1 and data["vms"][1]["state"] is None and data["vms"][0]["public_ip"] is None


def test_template_and_runbook_text(run) -> None:  # type: ignore[no-untyped-def]
    listed = run("template", "list").splitlines()
    assert listed[0].split() == ["NAME", "DESCRIPTION"]
    assert [line.split()[0] for line in listed[1:]] == ["kubernetes", "oscar"]

    shown = run("template", "show", "oscar")
    assert_human(shown)
    lines = shown.splitlines()
    header = next(line for line in lines if line.startswith("INPUT"))
    assert header.split() == ["INPUT", "TYPE", "DEFAULT", "SECRET", "DESCRIPTION", "RULES"]
    rows = {line.split()[0]: line.split() for line in lines[lines.index(header) + 1 :]}
    assert rows["knative"][:4] == ["knative", "boolean", "yes", "no"]  # a boolean default, not "true"/"True"
    assert rows["minio_buckets"][:4] == ["minio_buckets", "list", "-", "no"]  # an empty list, not []
    assert rows["image"][:4] == ["image", "string", "-", "no"]  # an empty string, not ''
    assert rows["oscar_password"][:4] == ["oscar_password", "string", "(generated)", "yes"]

    sites = run("template", "sites").splitlines()
    assert sites[0].split() == ["NAME", "KIND", "CLOUD", "ID", "IMAGE"]
    assert [line.split()[0] for line in sites[1:]] == ["ifca", "local-sim"]

    runbooks = run("runbook").splitlines()
    assert runbooks[0].split() == ["RUNBOOK", "TITLE"]
    assert "im-down" in [line.split()[0] for line in runbooks[1:]]
    names = [r["name"] for r in json.loads(run("runbook", "-o", "json"))]
    assert names == [line.split()[0] for line in runbooks[1:]]


def test_autoscale_text(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Store.open(run.home) as store:
        store.append_decision(
            "c1",
            "hold",
            {
                "current": 1,
                "target": 1,
                "rule": "missing-data",
                "reason": None,
                "error": None,
                "applied": False,
                "bounds": {"floor": 1, "ceiling": None},
                "signals": {"pending_pods": 0, "errors": []},
            },
        )
    text = run("autoscale", "explain", "c1")
    assert "  why: -" in text and "bounds 1..-" in text and "action taken: no" in text
    assert_human(text)

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nmin_workers: 1\nmax_workers: 3\n"
        "schedules:\n  - name: day\n    cron: '0 8 * * *'\n    timezone: UTC\n    min: 2\n"
    )
    with Store.open(run.home) as store:
        store.upsert_cluster(
            "c1", im_url="http://127.0.0.1:9", template="oscar", site="local-sim", inputs={}, deployment_id="dep-c1"
        )
    enabled = run("autoscale", "enable", "c1", "--policy", str(policy))
    assert enabled == "c1: autoscaled between 1 and 3 workers (1 schedule entry, demand rules off)\n"


def test_autoscale_run_once_text_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    from provisioner.autoscale.job import TickOutcome
    from provisioner.cli import autoscale as cli_autoscale
    from provisioner.cli.common import OutputFormat

    outcomes = [
        TickOutcome("c1", "scale_down", 3, 2, ["3"], "idle", "idle for 15m", False, True),
        TickOutcome("c2", "error", None, None, [], "-", "IM unreachable", False, False, error="boom"),
    ]
    cli_autoscale._report(outcomes, OutputFormat.text)
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["CLUSTER", "ACTION", "WORKERS", "REMOVE", "RULE", "REASON"]
    assert lines[1].split() == ["c1", "scale_down", "(dry", "run)", "3", "->", "2", "3", "idle", "idle", "for", "15m"]
    assert lines[2].split()[:4] == ["c2", "error", "-", "-"]
    assert_human(text)
    cli_autoscale._report(outcomes, OutputFormat.json)
    assert json.loads(capsys.readouterr().out) == [o.as_dict() for o in outcomes]
    cli_autoscale._report([], OutputFormat.text)
    assert capsys.readouterr().out == "no managed clusters (see: provision autoscale enable)\n"
