"""What every figure shares: the local IM, the counting proxy, temp dirs, running the CLI."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.proxy import CountingProxy
from provisioner import tosca
from provisioner.im import IMClient, Timeouts
from provisioner.im.auth import AuthData
from provisioner.state import new_deployment_id, open_store, use_url

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PROVISION = Path(sys.executable).parent / "provision"
IMCLIENT_VENV = BENCH / ".venv-imclient"


@dataclass
class Context:
    im_url: str  # the local IM itself (not counted)
    auth_file: Path
    proxy: CountingProxy  # counts what goes through it
    tmp: Path
    args: Any
    log: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    def direct_client(self) -> IMClient:
        return IMClient(self.im_url, AuthData.load(self.auth_file), timeouts=Timeouts(connect=5, read=300))

    def home(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def env(self, home: Path, *, im: bool = True) -> dict[str, str]:
        """The CLI's environment: a private home, an empty config file, IM behind the counting proxy."""
        config = self.tmp / "empty-config.yaml"
        config.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_") or k == "PROVISION_IN_NETNS"}
        env.update(PROVISION_HOME=str(home), PROVISION_CONFIG=str(config))
        if im:
            env.update(PROVISION_IM_URL=self.proxy.url, PROVISION_AUTH_FILE=str(self.auth_file))
        return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{what} exited {proc.returncode}: {' / '.join(tail)}")
    return proc.stdout


def timed(fn: Any, *a: Any, **kw: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - start, out


def median(values: list[float]) -> float:
    return statistics.median(values)


def render_oscar(cluster: str, **raw: Any) -> str:
    """The oscar template on local-sim, rendered in-process (real secrets, nothing kept on disk)."""
    site = tosca.resolve_site("local-sim", {})
    inputs = tosca.prepare_inputs("oscar", raw, secrets_store=None)
    doc = tosca.render("oscar", site, inputs, cluster_name=cluster, deployment_id=new_deployment_id())
    return tosca.dump(doc)


def destroy_all(ctx: Context, ids: list[str] | None = None) -> list[str]:
    """Destroy ``ids`` (default: everything this IM user has), one at a time; return what IM still lists."""
    client = ctx.direct_client()
    try:
        for _ in range(3):
            targets = ids if ids is not None else client.list_infrastructures()
            live = set(client.list_infrastructures())
            targets = [i for i in targets if i in live]
            if not targets:
                return []
            for infra_id in targets:
                try:
                    client.destroy(infra_id)
                except Exception as exc:  # noqa: BLE001 - best effort, checked below
                    ctx.say(f"destroy {infra_id}: {exc}")
            time.sleep(0.3)
        live = set(client.list_infrastructures())
        return [i for i in (ids if ids is not None else live) if i in live]
    finally:
        client.close()


def fill_registry(home: Path, count: int, im_url: str, url: str | None = None) -> None:
    """``count`` configured clusters of two VMs in the state of ``home`` (``url``: that database instead), written
    straight into the store: figures 2 and 8 list them, no IM holds them."""
    vms = [
        {"id": "0", "role": "front", "state": "configured", "private_ip": "10.0.0.1", "public_ip": None},
        {"id": "1", "role": "wn", "state": "configured", "private_ip": "10.0.0.2", "public_ip": None},
    ]
    use_url(url)
    try:
        with open_store(home) as store, store.transaction():
            for i in range(count):
                store.upsert_cluster(
                    f"reg-{i:04d}",
                    im_url=im_url,
                    template="oscar",
                    site="local-sim",
                    inputs={"wn_num": 1},
                    deployment_id=new_deployment_id(),
                    infra_id=f"00000000-0000-0000-0000-{i:012d}",
                    state="configured",
                    workers=1,
                    extra={"vms": vms},
                )
    finally:
        use_url(None)
