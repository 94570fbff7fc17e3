"""The layout's one-way data flow, checked on the source: cli -> services -> drivers -> the bottom layer.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import provisioner

ROOT = Path(provisioner.__file__).parent
CLI = {"cli", "__main__"}
SERVICES = {"lifecycle", "addons", "autoscale", "workflow", "continuum"}
DRIVERS = {"im", "oscar", "aws", "tosca", "ansible", "state", "localim"}
BOTTOM = {"model", "errors", "settings", "privfs", "redact", "text", "yamlfile", "polling", "triage", "secretcmd"}
BOTTOM |= {"__version__", "__init__"}
LAYER = {**dict.fromkeys(CLI, 3), **dict.fromkeys(SERVICES, 2), **dict.fromkeys(DRIVERS, 1), **dict.fromkeys(BOTTOM, 0)}


def _unit(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports() -> dict[tuple[str, str], set[str]]:
    """(importing unit, its file) -> the units of ``provisioner`` it imports."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "data":
            continue
        me = rel.parts[0].removesuffix(".py")
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("provisioner"):
                names = [node.module] if node.module != "provisioner" else [f"provisioner.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("provisioner.")]
            targets |= {_unit(n) for n in names} - {me}
        found[(me, str(rel))] = targets
    return found


def test_every_module_belongs_to_a_layer() -> None:
    units = {me for me, _ in _imports()}
    assert units - set(LAYER) == set(), "a new top-level module: put it in a layer here and in the README's layout"


def test_imports_go_down_only_and_drivers_do_not_reach_sideways() -> None:
    wrong = []
    for (me, where), targets in _imports().items():
        for target in sorted(targets):
            if LAYER[target] > LAYER[me]:
                wrong.append(f"{where}: {me} (layer {LAYER[me]}) imports {target} (layer {LAYER[target]})")
            elif me in DRIVERS and target in DRIVERS:
                wrong.append(f"{where}: driver {me} imports driver {target}")
            elif (
                me in BOTTOM
                and target in BOTTOM
                and target != "errors"
                and me != "settings"
                and (me, target) != ("secretcmd", "redact")
            ):
                wrong.append(f"{where}: bottom module {me} imports {target}")
    assert wrong == []


def test_no_import_cycle_between_services() -> None:
    graph: dict[str, set[str]] = {}
    for (me, _), targets in _imports().items():
        if me in SERVICES:
            graph.setdefault(me, set()).update(t for t in targets if t in SERVICES)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [s for s in graph if reaches(s, s, {s})] == []


# Who may speak HTTP, and to what: one client per remote API.
HTTP_SPEAKERS = {
    "im/client.py": "IM's REST API",
    "im/transport.py": "the HTTP/1.1 connections IM's client speaks over",
    "oscar/client.py": "OSCAR's REST API",
    "localim.py": "the local IM's /version, while it starts",
    "autoscale/signals.py": "the Kubernetes API server, through the SSH forward (read-only: pods and nodes)",
}


def test_each_remote_api_has_one_client() -> None:
    speakers = set()
    for path in sorted(ROOT.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            if any(
                name.split(".")[0] in ("requests", "urllib3", "httpx") or name == "http.client" for name in imported
            ):
                speakers.add(rel)
    assert speakers <= set(HTTP_SPEAKERS), (
        f"an HTTP library imported outside the API clients: {speakers - set(HTTP_SPEAKERS)}"
    )
    assert "oscar/client.py" in speakers
