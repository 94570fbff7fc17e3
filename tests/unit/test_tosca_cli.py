"""``provision template``: list, show, render, validate (offline; the IM part is in the integration test)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from provisioner.cli import template
from provisioner.errors import EXIT_BAD_INPUT, ProvisionError

DATA = Path(__file__).resolve().parent.parent / "data" / "tosca"

root = typer.Typer()
root.add_typer(template.app, name="template")


@root.callback()
def _root() -> None:
    """The main app mounts template.app the same way."""


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    for var in ("PROVISION_IM_URL", "PROVISION_AUTH_FILE"):
        monkeypatch.delenv(var, raising=False)
    env = {"PROVISION_HOME": str(home), "PROVISION_CONFIG": str(DATA / "sites-config.yaml")}
    runner = CliRunner(env=env)

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(root, ["template", *args])

    invoke.home = home  # type: ignore[attr-defined]
    return invoke


def refused(result, field: str | None = None) -> ProvisionError:  # type: ignore[no-untyped-def]
    assert isinstance(result.exception, ProvisionError), result.output
    assert result.exception.exit_code == EXIT_BAD_INPUT
    assert "\n" not in str(result.exception)
    if field is not None:
        assert getattr(result.exception, "field", None) == field
    assert result.stdout == "", "nothing rendered"
    return result.exception


def test_list(run) -> None:  # type: ignore[no-untyped-def]
    result = run("list")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "DESCRIPTION"]
    assert [line.split()[0] for line in rows] == ["kubernetes", "oscar"]
    rows = json.loads(run("list", "-o", "json").stdout)
    assert [r["name"] for r in rows] == ["kubernetes", "oscar"]


def test_show(run) -> None:  # type: ignore[no-untyped-def]
    result = run("show", "oscar")
    assert result.exit_code == 0
    assert "wn_num" in result.stdout and "between 0 and 100" in result.stdout
    assert "(generated)" in result.stdout
    data = json.loads(run("show", "oscar", "-o", "json").stdout)
    assert data["inputs"]["wn_num"] == {
        "type": "integer",
        "default": 1,
        "secret": False,
        "description": data["inputs"]["wn_num"]["description"],
        "constraints": {"in_range": [0, 100]},
        "group": "hardware",
    }
    assert data["inputs"]["oscar_password"]["secret"] is True
    assert data["inputs"]["oscar_password"]["default"] == "(generated)"
    assert data["inputs"]["oscar_password"]["constraints"]["min_length"] == 8
    refused(run("show", "nope"), "template")


def test_render_masks_secrets_and_keeps_them_per_cluster(run) -> None:  # type: ignore[no-untyped-def]
    result = run("render", "oscar", "--site", "egi-cesnet", "--set", "wn_num=3", "--cluster", "c1")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    inputs = doc["topology_template"]["inputs"]
    assert inputs["wn_num"]["default"] == 3
    assert inputs["oscar_password"]["default"] == "***"
    assert doc["metadata"]["provisioner_cluster"] == "c1"
    assert doc["metadata"]["provisioner_site"] == "egi-cesnet"
    secrets_file = run.home / "secrets" / "c1.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    kept = yaml.safe_load(secrets_file.read_text())
    assert kept["oscar_password"] not in result.stdout
    shown = run("render", "oscar", "--site", "egi-cesnet", "--cluster", "c1", "--show-secrets")
    again = yaml.safe_load(shown.stdout)["topology_template"]["inputs"]
    assert again["oscar_password"]["default"] == kept["oscar_password"]
    assert again["admin_token"]["default"] == kept["admin_token"]


def test_render_with_an_inputs_file_and_set_winning(run) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "render", "oscar", "--site", "local-sim", "--inputs", str(DATA / "adversarial-inputs.yaml"),
        "--set", "wn_num=4", "--show-secrets",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    inputs = yaml.safe_load(result.stdout)["topology_template"]["inputs"]
    assert inputs["wn_num"]["default"] == 4
    assert inputs["minio_password"]["default"] == "line one\nline two\n"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--set", "wn_nun=3"], "wn_nun"),
        (["--set", "wn_num=three"], "wn_num"),
        (["--set", "wn_num=500"], "wn_num"),
        (["--set", "oscar_password=short"], "oscar_password"),
        (["--set", "wn_num"], "--set"),
        (["--inputs", "/nonexistent/inputs.yaml"], "--inputs"),
        (["--inputs", str(DATA / "sites-config.yaml")], "sites"),
    ],
)
def test_render_refuses_bad_input(run, args: list[str], field: str) -> None:  # type: ignore[no-untyped-def]
    refused(run("render", "oscar", "--site", "local-sim", *args), field)


def test_render_unknown_site_and_template(run) -> None:  # type: ignore[no-untyped-def]
    err = refused(run("render", "oscar", "--site", "nowhere"), "--site")
    assert "known sites: egi-cesnet, ifca, local-sim" in str(err)
    refused(run("render", "oskar", "--site", "local-sim"), "template")


def test_validate_template_and_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("validate", "kubernetes", "--no-im")
    assert result.exit_code == 0, result.output
    assert "offline validation ok" in result.stdout
    result = run("validate", "oscar", "--site", "egi-cesnet", "--set", "wn_num=2")
    assert result.exit_code == 0, result.output
    assert "IM dry run: skipped (no IM configured for a real site" in result.stdout
    forced = run("validate", "kubernetes", "--im")
    assert isinstance(forced.exception, ProvisionError)
    assert getattr(forced.exception, "field", None) == "--im-url"

    rendered = run("render", "oscar", "--site", "ifca", "--show-secrets")
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered.stdout)
    result = run("validate", str(path), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["offline"] == "ok"

    doc = yaml.safe_load(rendered.stdout)
    doc["topology_template"]["node_templates"]["front"]["colour"] = "blue"
    path.write_text(yaml.safe_dump(doc))
    err = refused(run("validate", str(path)), "template")
    assert "TOSCA validation failed" in str(err) and "colour" in str(err)
    refused(run("validate", str(tmp_path / "missing.yaml")), "NAME|FILE")
    refused(run("validate", str(path), "--site", "ifca"), "NAME|FILE")
    refused(run("validate", "oscar", "--set", "knative=perhaps"), "knative")


def test_sites(run) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(run("sites", "-o", "json").stdout)
    assert [r["name"] for r in rows] == ["egi-cesnet", "ifca", "local-sim"]


def test_validate_refuses_a_masked_render(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "masked.yaml"
    path.write_text(run("render", "oscar", "--site", "ifca").stdout)
    err = refused(run("validate", str(path)))
    field = str(getattr(err, "field", ""))
    assert field.startswith("topology_template.inputs.") and field.endswith(".default"), err
    assert "'***'" in str(err) and "--show-secrets" in str(err)

    # The mask in a node's property (e.g. a secret pasted into the template by hand) is refused too, by its path.
    doc = yaml.safe_load(run("render", "oscar", "--site", "ifca", "--show-secrets").stdout)
    front = doc["topology_template"]["node_templates"]["front"]
    front.setdefault("capabilities", {}).setdefault("endpoint", {}).setdefault("properties", {})["dns_name"] = "***"
    path.write_text(yaml.safe_dump(doc))
    err = refused(run("validate", str(path)), "topology_template.node_templates.front.capabilities.endpoint"
                  ".properties.dns_name")  # fmt: skip


def test_validate_any_tosca_file_not_only_ours(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A third party's template (GRyCAP's types from their main branch, a types file of its own next to it).
    third = DATA / "third-party-webapp.yaml"
    result = run("validate", str(third), "--no-im", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checked"] == ["tosca-parser"]  # not our schema: it is not ours

    # tosca-parser really checks it, with the types of the local import.
    (tmp_path / "third-party-types.yaml").write_text((DATA / "third-party-types.yaml").read_text())
    broken = tmp_path / "broken.yaml"
    broken.write_text(third.read_text().replace("listen_port: 8080", "listen_port: eighty"))
    err = refused(run("validate", str(broken), "--no-im"), "template")
    assert '"eighty" is not an integer' in str(err)

    # An import that needs the network: one line, at once, naming it; nothing fetched.
    remote = tmp_path / "remote.yaml"
    remote.write_text(third.read_text().replace("third-party-types.yaml", "https://types.example.org/web.yaml"))
    err = refused(run("validate", str(remote), "--no-im"), "imports")
    assert "cannot fetch https://types.example.org/web.yaml offline" in str(err)
    (tmp_path / "third-party-types.yaml").unlink()
    err = refused(run("validate", str(broken), "--no-im"), "imports")
    assert "'third-party-types.yaml' not found" in str(err)


# --- infra create FILE: refused offline, nothing sent -------------------------------------------------------------


@pytest.fixture
def recorder() -> Iterator[list[str]]:
    """A loopback HTTP server standing in for IM that only records what reached it (and answers 500)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen.append(f"http://127.0.0.1:{server.server_address[1]}")
    yield seen
    server.shutdown()
    server.server_close()


def infra_cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    auth = tmp_path / "auth.dat"
    if not auth.exists():
        auth.write_text("id = im; type = InfrastructureManager; username = u; password = not-a-real-one\n")
        auth.chmod(0o600)
    env = {**os.environ, "PROVISION_HOME": str(tmp_path / "home"), "PROVISION_CONFIG": str(DATA / "sites-config.yaml"),
           "PROVISION_IM_URL": url, "PROVISION_AUTH_FILE": str(auth)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "provisioner", "infra", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_infra_create_refuses_offline_and_sends_nothing(run, recorder: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = recorder[0]
    not_yaml = tmp_path / "notes.txt"
    not_yaml.write_text("key: [unclosed\n  - and: {broken\n")
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- tosca_definitions_version: tosca_simple_yaml_1_0\n")
    masked = tmp_path / "masked.yaml"
    masked.write_text(run("render", "oscar", "--site", "ifca").stdout)
    remote = tmp_path / "remote.yaml"
    remote.write_text((DATA / "third-party-webapp.yaml").read_text().replace(
        "third-party-types.yaml", "https://types.example.org/web.yaml"))  # fmt: skip
    invalid = tmp_path / "invalid.yaml"
    doc = yaml.safe_load(run("render", "oscar", "--site", "ifca", "--show-secrets").stdout)
    doc["topology_template"]["node_templates"]["front"]["colour"] = "blue"
    invalid.write_text(yaml.safe_dump(doc))
    cases = [
        (not_yaml, [], "TEMPLATE: ", "is not valid YAML at line"),
        (a_list, ["--no-validate"], "TEMPLATE: ", "is not a TOSCA document (a YAML mapping)"),
        (masked, [], "topology_template.inputs.", "--show-secrets"),
        (masked, ["--no-validate", "--dry-run"], "topology_template.inputs.", "--show-secrets"),
        (remote, [], "imports: ", "cannot fetch https://types.example.org/web.yaml offline"),
        (invalid, ["--dry-run"], "template: ", "colour"),
    ]
    for path, flags, field, words in cases:
        result = infra_cli(tmp_path, url, "create", str(path), *flags)
        assert result.returncode == 2, (path.name, flags, result.stderr)
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"error: {field}") and words in first, (path.name, flags, result.stderr)
        assert result.stdout == ""
    assert recorder[1:] == [], "nothing reached IM"
