"""``provision autoscale`` without IM: enable's refusals, explain's text, and the long-running loop (fake job)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.autoscale.job import TickOutcome, policy_path
from provisioner.cli import autoscale as cli_autoscale
from provisioner.cli.common import OutputFormat
from provisioner.errors import InputError, NotFound
from provisioner.model import ClusterKind
from provisioner.settings import ENV_HOME
from provisioner.state import Store

POLICY = {"version": 1, "min_workers": 1, "max_workers": 3}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        env={**env, ENV_HOME: str(home)},
        timeout=60,
        check=False,
    )


def register(home: Path, name: str, im_url: str, kind: ClusterKind = ClusterKind.IM) -> None:
    with Store.open(home) as store:
        store.upsert_cluster(
            name, im_url=im_url, kind=kind, template="oscar", site="edge", inputs={}, deployment_id=f"dep-{name}"
        )


def test_enable_refuses_an_edge_cluster(tmp_path: Path) -> None:
    home = tmp_path / "home"
    register(home, "edge1", "", ClusterKind.EDGE)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    result = cli(home, "autoscale", "enable", "edge1", "--policy", str(policy))
    assert result.returncode == 2, result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert "NAME" in first and "edge cluster" in first and "cannot be autoscaled" in first
    assert not policy_path(home, "edge1").exists()


def test_enable_an_unknown_cluster_is_not_found(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    result = cli(tmp_path / "home", "autoscale", "enable", "ghost", "--policy", str(policy))
    assert result.returncode == NotFound.exit_code, result.stderr
    assert "ghost" in result.stderr


def test_explain_an_unknown_cluster_is_not_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = cli(home, "autoscale", "explain", "ghost")
    assert result.returncode == NotFound.exit_code, result.stderr
    assert result.stdout == ""
    # The line every other command prints for a name the registry does not know (``cluster status ghost``).
    same = cli(home, "cluster", "status", "ghost")
    assert result.stderr.splitlines()[0] == same.stderr.splitlines()[0] == f"error: no cluster named 'ghost' in {home}"


def test_explain_a_known_cluster_without_decisions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    register(home, "c1", "http://127.0.0.1:1")
    result = cli(home, "autoscale", "explain", "c1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "c1: no autoscale decisions yet"


def test_explain_says_would_remove_for_a_decision_not_applied(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.open(home) as store:
        common = {"current": 3, "target": 2, "rule": "idle", "reason": "idle for 15m", "remove": ["3"]}
        store.append_decision("c1", "scale_down", {**common, "applied": False, "dry_run": True})
        store.append_decision("c1", "scale_down", {**common, "applied": True, "dry_run": False})
    result = cli(home, "autoscale", "explain", "c1")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("scale_down 3 -> 2")[1:]
    assert "(dry run)" in first and "would remove: 3" in first and "action taken: no" in first
    assert "  removed: 3" in second and "action taken: yes" in second


class FakeJob:
    """What ``_loop`` needs of an ``AutoscaleJob``: ``tick``. Each call pops the next planned result."""

    def __init__(self, plan: list[Any]) -> None:
        self.plan = plan
        self.calls = 0

    def tick(self, names: Any) -> list[TickOutcome]:
        self.calls += 1
        step = self.plan.pop(0)
        if not self.plan:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop finishes this tick, then stops
        if isinstance(step, BaseException):
            raise step
        return list(step)


@pytest.fixture
def restore_signals() -> Any:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def outcome(name: str) -> TickOutcome:
    return TickOutcome(name, "none", 1, 1, [], "steady", "1 worker within [1, 3]", False, False)


def test_loop_reports_a_later_failed_tick_and_goes_on(restore_signals: Any, capsys: pytest.CaptureFixture[str]) -> None:
    gone = InputError("no cluster named 'c2' in the registry", field="--cluster")
    job = FakeJob([[outcome("c1")], gone, [outcome("c1")]])
    cli_autoscale._loop(job, ["c1"], 0.01, OutputFormat.text)  # type: ignore[arg-type]
    assert job.calls == 3
    out, err = capsys.readouterr()
    # Decisions are the command's output (stdout, one line each, as --once's); the failed tick is a log line.
    assert out.splitlines() == ["c1: none 1 -> 1 [steady] 1 worker within [1, 3]"] * 2
    assert "c1: none" not in err
    assert "autoscale: this tick failed: " in err and "no cluster named 'c2'" in err


def test_loop_json_is_one_json_object_a_line_on_stdout(
    restore_signals: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job = FakeJob([[outcome("c1"), outcome("c2")], [outcome("c1")]])
    cli_autoscale._loop(job, [], 0.01, OutputFormat.json)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [
        outcome("c1").as_dict(),
        outcome("c2").as_dict(),
        outcome("c1").as_dict(),
    ]
    assert err == ""


def test_run_once_puts_its_decisions_on_stdout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --once`` through the real command (in process): decisions on stdout, nothing on stderr."""
    from provisioner.cli.main import main_exit_code

    class OnceJob(FakeJob):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__([[outcome("c1")]])

        def tick(self, names: Any) -> list[TickOutcome]:
            return [outcome("c1")]

    monkeypatch.setattr("provisioner.autoscale.job.AutoscaleJob", OnceJob)
    monkeypatch.setattr(cli_autoscale, "_sources", lambda lc: {})
    for key in [k for k in os.environ if k.startswith("PROVISION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "home"))
    assert main_exit_code(["autoscale", "run", "--once"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[:4] == ["c1", "none", "1", "->"] and err == ""
    assert main_exit_code(["autoscale", "run", "--once", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [outcome("c1").as_dict()] and err == ""


def test_loop_ends_when_its_first_tick_fails(restore_signals: Any) -> None:
    job = FakeJob([InputError("no cluster named 'c2' in the registry", field="--cluster"), [outcome("c1")]])
    with pytest.raises(InputError):
        cli_autoscale._loop(job, ["c2"], 0.01, OutputFormat.text)  # type: ignore[arg-type]
    assert job.calls == 1
