"""Stand-in ``kubectl`` and ``helm`` for the sshd test hosts, where no Kubernetes can run.

:func:`install` writes ``kubectl`` and ``helm`` scripts (running this file with the tool's name first) into a
directory that a host puts first on its sessions' PATH (``SSHHost.env``). They answer what ``cluster verify``
and kube_common's ``kube_tools`` preflight ask, from files in the state directory (``$STUBKUBE_STATE``):

- ``kubectl get nodes -o json``: prints ``nodes.json`` if a test wrote one, else fails as kubectl does when
  the API server is down;
- ``kubectl version --client``, ``kubectl get --raw /readyz``, ``helm version --short``: fixed answers.

Every call is appended to ``calls.log`` as JSON: the arguments, the KUBECONFIG it saw and the effective uid.
Standard library only: the script runs with whatever Python the test process runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STATE_ENV = "STUBKUBE_STATE"
DOWN = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


def install(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("kubectl", "helm"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {tool} "$@"\n')
        script.chmod(0o755)
    return bin_dir


def node(name: str, ready: bool = True, reason: str = "KubeletReady") -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False", "reason": reason}
    return {"metadata": {"name": name}, "status": {"conditions": [condition]}}


def set_nodes(state: Path, nodes: list[dict[str, Any]] | None) -> None:
    """What ``kubectl get nodes -o json`` prints from now on (None: the API server is down)."""
    path = state / "nodes.json"
    if nodes is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))


def calls(state: Path) -> list[dict[str, Any]]:
    path = state / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main() -> int:
    state = Path(os.environ[STATE_ENV])
    tool, argv = sys.argv[1], sys.argv[2:]
    with (state / "calls.log").open("a") as log:
        entry = {"tool": tool, "argv": argv, "kubeconfig": os.environ.get("KUBECONFIG"), "uid": os.geteuid()}
        log.write(json.dumps(entry) + "\n")
    if tool == "helm" and argv[:2] == ["version", "--short"]:
        print("v3.18.4+gd80839c")
        return 0
    if tool == "kubectl" and argv[:2] == ["version", "--client"]:
        print("Client Version: v1.32.6+k3s1")
        return 0
    if tool == "kubectl" and argv[:3] == ["get", "--raw", "/readyz"]:
        print("ok")
        return 0
    if tool == "kubectl" and argv[:2] == ["get", "nodes"]:
        nodes = state / "nodes.json"
        if not nodes.exists():
            print(DOWN, file=sys.stderr)
            return 1
        print(nodes.read_text())
        return 0
    print(f"stub {tool}: unexpected command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
