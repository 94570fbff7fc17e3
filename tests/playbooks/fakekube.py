"""Stand-ins for kubectl and helm, for running the add-on roles on this machine without a cluster.

Installed as `kubectl` and `helm` (small scripts running this file with the tool's name first) in a directory
put first on PATH. They keep their
state as JSON files under $FAKEKUBE_STATE, log every command line to $FAKEKUBE_STATE/calls.log, and answer
just the commands the roles use, the way the real tools do (apply prints created / configured / unchanged;
helm list/get values/upgrade --install keep the release). With ``FAKEKUBE_FAIL=helm-upgrade`` a ``helm upgrade``
fails, and with ``FAKEKUBE_FAIL=apply-secret`` a ``kubectl apply`` of a Secret fails, each quoting the file it was
given in its error, as validation errors can (the roles must not show it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

STATE = Path(os.environ["FAKEKUBE_STATE"])


def load(name: str) -> dict[str, Any]:
    path = STATE / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save(name: str, data: dict[str, Any]) -> None:
    (STATE / f"{name}.json").write_text(json.dumps(data, sort_keys=True))


def option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def key(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{doc['kind'].lower()}/{meta['name']}@{meta.get('namespace', '')}"


def kubectl(argv: list[str]) -> int:
    objects = load("objects")
    if argv[:2] == ["version", "--client"]:
        print("Client Version: v1.32.0")
        return 0
    if argv[:2] == ["get", "--raw"]:
        print("ok" if argv[2] == "/readyz" else "Ok")
        return 0
    if argv[0] in ("wait", "rollout"):
        return 0
    if argv[0] == "apply":
        files = [argv[i + 1] for i, a in enumerate(argv) if a == "--filename"]
        for file in files:
            for doc in yaml.safe_load_all(Path(file).read_text()):
                if not doc:
                    continue
                if os.environ.get("FAKEKUBE_FAIL") == "apply-secret" and doc.get("kind") == "Secret":
                    print(f'The Secret "{doc["metadata"]["name"]}" is invalid: {json.dumps(doc)}', file=sys.stderr)
                    return 1
                digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
                previous = objects.get(key(doc), {}).get("digest")
                verb = "created" if previous is None else "unchanged" if previous == digest else "configured"
                objects[key(doc)] = {"digest": digest, "object": doc}
                print(f"{doc['kind'].lower()}/{doc['metadata']['name']} {verb}")
        save("objects", objects)
        return 0
    if argv[0] == "get" and argv[1] == "configmap":
        found = objects.get(f"configmap/{argv[2]}@{option(argv, '--namespace') or ''}")
        output = option(argv, "--output") or ""
        if found is None:
            return 0 if "--ignore-not-found" in argv else 1
        if output == "name":
            print(f"configmap/{argv[2]}")
        elif output.startswith("jsonpath="):
            data = found["object"].get("data", {})
            print(re.sub(r"\{\.data\.([\w-]+)\}", lambda m: str(data.get(m.group(1), "")), output[9:]), end="")
        return 0
    print(f"fake kubectl: unexpected command {argv}", file=sys.stderr)
    return 2


def helm(argv: list[str]) -> int:
    releases = load("releases")
    namespace = option(argv, "--namespace") or "default"
    if argv[:2] == ["version", "--short"]:
        print(f"v{os.environ['FAKEKUBE_HELM_VERSION']}+g0123456")
        return 0
    if argv[0] == "list":
        name = (option(argv, "--filter") or "").strip("^$")
        found = releases.get(f"{namespace}/{name}")
        print(json.dumps([{"name": name, "namespace": namespace, **found["info"]}] if found else []))
        return 0
    if argv[:2] == ["get", "values"]:
        found = releases.get(f"{namespace}/{argv[2]}")
        if found is None:
            print(f"Error: release: not found: {argv[2]}", file=sys.stderr)
            return 1
        print(json.dumps(found["values"]))
        return 0
    if argv[:2] == ["upgrade", "--install"]:
        name, chart = argv[2], argv[3]
        if os.environ.get("FAKEKUBE_FAIL") == "helm-upgrade":
            values_text = Path(option(argv, "--values") or "").read_text()
            print(f"Error: values don't meet the specifications of the schema(s): {values_text}", file=sys.stderr)
            return 1
        values = yaml.safe_load(Path(option(argv, "--values") or "").read_text())
        old = releases.get(f"{namespace}/{name}")
        revision = int(old["info"]["revision"]) + 1 if old else 1
        releases[f"{namespace}/{name}"] = {
            "info": {"revision": str(revision), "status": "deployed", "chart": f"{chart}-{option(argv, '--version')}"},
            "values": values,
            "argv": argv,
        }
        save("releases", releases)
        print(f'Release "{name}" has been upgraded. Happy Helming!')
        return 0
    print(f"fake helm: unexpected command {argv}", file=sys.stderr)
    return 2


def main() -> int:
    tool, argv = sys.argv[1], sys.argv[2:]
    with (STATE / "calls.log").open("a") as log:
        log.write(json.dumps([tool, *argv]) + "\n")
    return kubectl(argv) if tool == "kubectl" else helm(argv)


if __name__ == "__main__":
    sys.exit(main())
