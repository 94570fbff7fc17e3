"""``provision runbook``: the pages an error's ``see provision runbook NAME`` line names, shipped with the tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from provisioner.settings import data_path
from provisioner.triage import RUNBOOKS, Cause, Triage


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=False,
    )


def test_every_cause_names_a_page_the_command_prints() -> None:
    for cause in Cause:
        name = Triage(cause, "x").runbook
        assert data_path("runbooks", f"{name}.md").is_file(), RUNBOOKS[cause]
    printed = cli("runbook", "im-down")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == data_path("runbooks", "im-down.md").read_text(encoding="utf-8")


def test_the_list_and_json() -> None:
    listed = cli("runbook")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert "im-down" in names and "cloud-refused" in names and "README" not in names
    page = json.loads(cli("runbook", "cloud-refused.md", "-o", "json").stdout)
    assert page["name"] == "cloud-refused" and page["text"].startswith("#")


def test_unknown_runbook_is_bad_input() -> None:
    result = cli("runbook", "nosuch")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith("error: runbook: no runbook 'nosuch' (known: cloud-refused, ")
    assert result.stdout == ""


def test_shell_completion_is_offered() -> None:
    result = cli("--help")
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
