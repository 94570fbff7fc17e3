"""An in-memory IM behind the ``IMClient`` transport seam: a ``Transport`` that answers IM 2.0.0's REST shapes.

It keeps infrastructures (the TOSCA as submitted, the VMs with their node names and states) and understands what the
lifecycle sends: a create's worker count (``topology_template.inputs.wn_num.default``), a scale's complete TOSCA
with the workers' ``removal_list``, a DELETE. Each infrastructure reports ``pending`` for ``settle`` state reads,
then ``configured``. Faults the lifecycle must survive are planned per call:

* ``lose_answer("POST")``: IM applies the next POST, then the connection breaks before the answer arrives;
* ``resurrect(n)``: the next DELETE leaves the infrastructure listed for ``n`` more listings (IM 2.0.0 can do that);

``requests`` records every call as ``(method, path)``. Nothing here opens a socket.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from provisioner.im.transport import ConnectionLost, Response

URL = "http://im.fake"


@dataclass
class FakeVM:
    name: str  # the TOSCA node: front or wn
    state: str = "configured"


@dataclass
class FakeInfra:
    tosca: str
    vms: dict[str, FakeVM] = field(default_factory=dict)
    next_vm: int = 0
    reads_left: int = 0  # state reads still answered "pending"
    listed_after_delete: int = 0

    def add(self, name: str) -> str:
        vm_id = str(self.next_vm)
        self.next_vm += 1
        self.vms[vm_id] = FakeVM(name)
        return vm_id


def _workers(tosca: str) -> tuple[int, list[str]]:
    doc = yaml.safe_load(tosca)
    topology = doc["topology_template"]
    count = int(topology["inputs"]["wn_num"]["default"])
    scalable = topology["node_templates"]["wn"].get("capabilities", {}).get("scalable", {}).get("properties", {})
    return count, [str(v) for v in scalable.get("removal_list") or []]


class FakeIM:
    def __init__(self, *, settle: int = 1) -> None:
        self.infras: dict[str, FakeInfra] = {}
        self.deleted: dict[str, FakeInfra] = {}
        self.requests: list[tuple[str, str]] = []
        self.settle = settle
        self._faults: deque[tuple[str, str]] = deque()
        self._next_infra = 0
        self._resurrect = 0
        self._lock = threading.Lock()

    # -- planning faults --

    def lose_answer(self, method: str) -> None:
        self._faults.append(("lose", method))

    def resurrect(self, listings: int) -> None:
        self._resurrect = listings

    def workers(self, infra_id: str) -> list[str]:
        return [vm_id for vm_id, vm in self.infras[infra_id].vms.items() if vm.name == "wn"]

    # -- the transport --

    def close(self) -> None:
        return

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: tuple[float, float],
    ) -> Response:
        parts = urlsplit(url)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        text_in = body.decode() if body is not None else ""
        with self._lock:
            self.requests.append((method, path))
            status, payload, extra = self._answer(method, path, query, text_in)
            lost = bool(self._faults) and self._faults[0] == ("lose", method)
            if lost:
                self._faults.popleft()
        if lost:
            raise ConnectionLost("the connection broke before IM's answer arrived (fake IM)")
        text = payload if isinstance(payload, str) else json.dumps(payload)
        kind = "text/plain" if isinstance(payload, str) else "application/json"
        answer_headers = {"content-type": kind, **{k.lower(): v for k, v in extra.items()}}
        return Response(method, url, status, "OK" if status < 400 else "Error", answer_headers, text.encode())

    def _uri(self, *parts: str) -> dict[str, str]:
        return {"uri": "/".join([URL, "infrastructures", *parts])}

    def _answer(self, method: str, path: str, query: dict[str, str], body: str) -> tuple[int, Any, dict[str, str]]:
        if path == "/infrastructures" and method == "GET":
            listed = [*self.infras, *(i for i, inf in self.deleted.items() if inf.listed_after_delete > 0)]
            for inf in self.deleted.values():
                inf.listed_after_delete = max(inf.listed_after_delete - 1, 0)
            return 200, {"uri-list": [self._uri(i) for i in listed]}, {}
        if path == "/infrastructures" and method == "POST":
            count, _ = _workers(body)
            infra_id = f"inf-{self._next_infra}"
            self._next_infra += 1
            inf = FakeInfra(tosca=body, reads_left=self.settle)
            inf.add("front")
            for _ in range(count):
                inf.add("wn")
            self.infras[infra_id] = inf
            return 200, self._uri(infra_id), {"InfID": infra_id}
        found = re.fullmatch(r"/infrastructures/([^/]+)(?:/(.*))?", path)
        if found is None:
            return 404, {"message": f"no route {path}", "code": 404}, {}
        infra_id, rest = found.group(1), found.group(2) or ""
        inf = self.infras.get(infra_id)
        if inf is None:
            return 404, {"message": f"Invalid infrastructure ID or access not granted: {infra_id}", "code": 404}, {}
        if method == "DELETE" and rest == "":
            del self.infras[infra_id]
            inf.listed_after_delete, self._resurrect = self._resurrect, 0
            self.deleted[infra_id] = inf
            return 200, "", {}
        if method == "POST" and rest == "":
            count, removal = _workers(body)
            for vm_id in removal:
                inf.vms.pop(vm_id, None)
            added = []
            while sum(vm.name == "wn" for vm in inf.vms.values()) < count:
                added.append(inf.add("wn"))
            inf.tosca, inf.reads_left = body, self.settle
            return 200, {"uri-list": [self._uri(infra_id, "vms", v) for v in added]}, {}
        if method == "GET" and rest == "":
            return 200, {"uri-list": [self._uri(infra_id, "vms", v) for v in inf.vms]}, {}
        if method == "GET" and rest == "state":
            overall = "configured"
            if inf.reads_left > 0:
                inf.reads_left -= 1
                overall = "pending"
            states = {v: ("pending" if overall == "pending" else vm.state) for v, vm in inf.vms.items()}
            return 200, {"state": {"state": overall, "vm_states": states}}, {}
        if method == "GET" and rest == "tosca":
            return 200, {"tosca": inf.tosca}, {}
        if method == "GET" and rest == "outputs":
            return 200, {"outputs": {}}, {}
        if method == "GET" and rest == "contmsg":
            return 200, {"contmsg": ""}, {}
        vm = re.fullmatch(r"vms/(\d+)", rest)
        if method == "GET" and vm is not None and vm.group(1) in inf.vms:
            vm_id = vm.group(1)
            system = {
                "class": "system",
                "id": inf.vms[vm_id].name,
                "state": inf.vms[vm_id].state,
                "net_interface.0.connection": "private",
                "net_interface.0.ip": f"10.0.0.{int(vm_id) + 1}",
            }
            return 200, {"radl": [{"class": "network", "id": "private", "outbound": "no"}, system]}, {}
        return 404, {"message": f"no route {method} {path} in the fake IM", "code": 404}, {}
