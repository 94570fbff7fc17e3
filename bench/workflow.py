"""Figure 7: ``workflow apply`` of 12 services over 3 stand-in OSCAR clusters vs the same POSTs sent directly.

Three stand-in OSCAR clusters (``standin.oscar.StandInOscar``), each over its own moto S3 server standing in for
its MinIO, all on 127.0.0.1 in this process. The FDL: 4 chains of 3 stages, each chain crossing the 3 clusters
(stage 1 and 2 write into the next cluster's MinIO, ``minio.<cluster>``; stage 3 into its own), so the dataflow
deploys in 3 waves of 4 services (the last stages first), each wave spread over the clusters.

Measured in the same run, against the same stand-ins, the services deleted between repetitions (so every apply
really creates 12), the variants alternating:

- the floor: the very bodies the tool sends (read back from the stand-ins after a warm-up apply, without the
  ``token`` and ``owner`` the stand-in adds) POSTed to ``/system/services`` with one ``requests.Session`` per
  cluster (basic auth, user ``oscar``), wave after wave in the same dependency order, the clusters of a wave in
  parallel as the tool does (the same POSTs one at a time are reported too);
- the tool in-process: ``WorkflowEngine(...).apply(fdl)``, what ``provision workflow apply`` runs (the goal);
- the whole CLI as a subprocess, ``provision workflow apply FDL -o json`` (start-up included; not the goal).

Then a re-apply with nothing changed: the POST/PUT/DELETE the stand-ins received meanwhile must be none.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.common import PROVISION, Context, median, must, run
from bench.report import Row, verdict
from provisioner.settings import ENV_OSCAR_CLI_CONFIG
from provisioner.workflow.engine import ApplyResult, WorkflowEngine
from standin.oscar import MinioAccess, StandInOscar, moto_server

CLUSTERS = ("site-a", "site-b", "site-c")
CHAINS = 4
STAGES = 3
SERVICES = CHAINS * STAGES
GOAL = 1.3  # the tool's apply over the floor's, at most
FLOOR_DROPPED = ("token", "owner")  # what the stand-in adds to a definition it stores
STANDIN_POLL = 1.0  # s between the stand-ins' looks at input buckets (no file is uploaded in this figure)

Key = tuple[str, str]  # (cluster, service)


# --- the stand-ins and the FDL -------------------------------------------------------------------------------------


@contextmanager
def standins() -> Iterator[dict[str, StandInOscar]]:
    """3 stand-in OSCAR clusters, each over its own moto S3 server, all on 127.0.0.1."""
    with ExitStack() as stack:
        oscars: dict[str, StandInOscar] = {}
        for cluster in CLUSTERS:
            s3 = stack.enter_context(moto_server("127.0.0.1"))
            minio = MinioAccess(s3, access_key=f"{cluster}-access", secret_key=secrets.token_hex(16))
            oscar = StandInOscar(
                password=secrets.token_hex(16), minio=minio, name=cluster, address="127.0.0.1", poll=STANDIN_POLL
            )
            stack.enter_context(oscar)
            oscars[cluster] = oscar
        yield oscars


def cluster_of(chain: int, stage: int) -> str:
    return CLUSTERS[(chain + stage - 1) % len(CLUSTERS)]


def service_of(chain: int, stage: int) -> str:
    return f"chain{chain}-stage{stage}"


def waves() -> list[list[Key]]:
    """The deployment order the dataflow gives: the last stages first (each stage after the one it writes to)."""
    return [
        [(cluster_of(chain, stage), service_of(chain, stage)) for chain in range(CHAINS)]
        for stage in range(STAGES, 0, -1)
    ]


def write_fdl(folder: Path, oscars: dict[str, StandInOscar]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage.sh").write_text(
        '{ cat "$INPUT_FILE_PATH"; echo "[$CHAIN/$STAGE]"; } > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n'
    )
    lines = ["functions:", "  oscar:"]
    for chain in range(CHAINS):
        for stage in range(1, STAGES + 1):
            here = cluster_of(chain, stage)
            if stage < STAGES:
                there = cluster_of(chain, stage + 1)
                provider = "minio" if there == here else f"minio.{there}"
                output = f"{{storage_provider: {provider}, path: {service_of(chain, stage + 1)}/in}}"
            else:
                output = f"{{storage_provider: minio, path: results-chain{chain}/out}}"
            lines += [
                f"  - {here}:",
                f"      name: {service_of(chain, stage)}",
                "      image: ghcr.io/grycap/alpine:3.20",
                "      script: stage.sh",
                "      memory: 256Mi",
                "      cpu: '0.5'",
                f"      environment: {{Variables: {{CHAIN: '{chain}', STAGE: '{stage}'}}}}",
                f"      input: [{{storage_provider: minio, path: {service_of(chain, stage)}/in}}]",
                f"      output: [{output}]",
            ]
    lines.append("clusters:")
    for cluster, oscar in oscars.items():
        lines.append(f"  {cluster}: {{endpoint: '{oscar.url}', auth_user: oscar, auth_password: {oscar.password}}}")
    path = folder / "twelve.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def writes(oscars: dict[str, StandInOscar]) -> int:
    return sum(len(oscar.writes()) for oscar in oscars.values())


def clear(oscars: dict[str, StandInOscar]) -> None:
    """Delete every service (in-process, not timed), so the next apply creates all 12 again."""
    for oscar in oscars.values():
        for name in list(oscar.services):
            oscar.delete(name)


def stored(oscars: dict[str, StandInOscar]) -> dict[Key, dict[str, Any]]:
    """What each stand-in holds: the bodies it was POSTed, without the fields it adds."""
    return {
        (cluster, name): {k: v for k, v in body.items() if k not in FLOOR_DROPPED}
        for cluster, oscar in oscars.items()
        for name, body in list(oscar.services.items())
    }


# --- (a) the floor ---------------------------------------------------------------------------------------------------


def floor_once(oscars: dict[str, StandInOscar], bodies: dict[Key, dict[str, Any]], *, parallel: bool) -> float:
    """The 12 POSTs, wave after wave, one session per cluster (made inside the timing); the wall time."""
    start = time.perf_counter()
    sessions = {cluster: requests.Session() for cluster in oscars}
    for cluster, session in sessions.items():
        session.auth = ("oscar", oscars[cluster].password)

    def post(cluster: str, keys: list[Key]) -> None:
        for key in keys:
            resp = sessions[cluster].post(oscars[cluster].url + "/system/services", json=bodies[key], timeout=(5, 30))
            if resp.status_code != 201:
                raise RuntimeError(f"floor: POST {key[0]}/{key[1]} answered {resp.status_code}: {resp.text[:200]}")

    try:
        for wave in waves():
            by_cluster: dict[str, list[Key]] = {}
            for key in wave:
                by_cluster.setdefault(key[0], []).append(key)
            if parallel:
                with ThreadPoolExecutor(max_workers=len(by_cluster)) as pool:
                    list(pool.map(lambda pair: post(*pair), by_cluster.items()))
            else:
                for cluster, keys in by_cluster.items():
                    post(cluster, keys)
    finally:
        for session in sessions.values():
            session.close()
    return time.perf_counter() - start


# --- (b) the tool ----------------------------------------------------------------------------------------------------


def engine(home: Path) -> WorkflowEngine:
    return WorkflowEngine(
        home,
        verify=True,
        timeout=30,
        lock_timeout=10,
        oscar_cli_config=home / "no-oscar-cli-config.yaml",
        outputs_of=lambda _name: {},
    )


def tool_once(home: Path, fdl: Path) -> tuple[float, ApplyResult]:
    start = time.perf_counter()
    result = engine(home).apply(fdl)
    return time.perf_counter() - start, result


def checked(result: ApplyResult, what: str, sent: int) -> ApplyResult:
    if not result.ok or len(result.done) != sent:
        raise RuntimeError(
            f"{what}: ok={result.ok}, sent {len(result.done)} (expected {sent}), failed {result.failed}, "
            f"skipped {result.skipped}, unreadable {result.unreadable}, missing buckets {result.missing_buckets}"
        )
    return result


def cli_env(ctx: Context, home: Path) -> dict[str, str]:
    env = ctx.env(home, im=False)
    env[ENV_OSCAR_CLI_CONFIG] = str(home / "no-oscar-cli-config.yaml")
    return env


def cli_once(env: dict[str, str], fdl: Path) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = run([str(PROVISION), "workflow", "apply", str(fdl), "-o", "json"], env, timeout=300)
    wall = time.perf_counter() - start
    doc = json.loads(must(proc, "provision workflow apply"))
    return wall, doc


def checked_time(pair: tuple[float, ApplyResult], what: str) -> float:
    checked(pair[1], what, SERVICES)
    return pair[0]


def checked_cli(pair: tuple[float, dict[str, Any]]) -> float:
    wall, doc = pair
    if not doc.get("ok") or len(doc.get("sent", [])) != SERVICES:
        raise RuntimeError(f"CLI apply: {doc}")
    return wall


# --- the figure ------------------------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def figure(ctx: Context) -> list[Row]:
    runs = max(ctx.args.runs, 5)
    with standins() as oscars:
        fdl = write_fdl(ctx.tmp / "fig7-fdl", oscars)
        home, cli_home = ctx.home("fig7-home"), ctx.home("fig7-cli-home")
        env = cli_env(ctx, cli_home)

        # Warm-up (not counted): one apply of each kind; the first one's bodies are the floor's.
        checked(tool_once(home, fdl)[1], "warm-up apply", SERVICES)
        bodies = stored(oscars)
        if sorted(bodies) != sorted(key for wave in waves() for key in wave):
            raise RuntimeError(f"the warm-up apply left {sorted(bodies)} on the stand-ins")
        clear(oscars)
        floor_once(oscars, bodies, parallel=True)
        clear(oscars)
        checked_cli(cli_once(env, fdl))
        clear(oscars)

        floors: list[float] = []
        serial: list[float] = []
        tools: list[float] = []
        clis: list[float] = []
        steps: list[tuple[str, Callable[[], float]]] = [
            ("floor", lambda: floor_once(oscars, bodies, parallel=True)),
            ("serial", lambda: floor_once(oscars, bodies, parallel=False)),
            ("tool", lambda: checked_time(tool_once(home, fdl), "apply")),
            ("cli", lambda: checked_cli(cli_once(env, fdl))),
        ]
        into = {"floor": floors, "serial": serial, "tool": tools, "cli": clis}
        for i in range(runs):
            for what, step in steps[i % 2 :] + steps[: i % 2]:  # alternate which one goes first
                before = writes(oscars)
                into[what].append(step())
                if writes(oscars) - before != SERVICES:
                    raise RuntimeError(f"{what}: {writes(oscars) - before} writes, not {SERVICES}")
                clear(oscars)

        # Re-apply with no change: applied once more, then again; the second one must send nothing.
        checked(tool_once(home, fdl)[1], "apply before the re-apply", SERVICES)
        before = writes(oscars)
        again_wall, again = tool_once(home, fdl)
        sent_again = writes(oscars) - before
        checked(again, "re-apply", 0)
        _, cli_again = cli_once(env, fdl)  # the CLI's home owns them too: nothing to send either
        cli_sent_again = writes(oscars) - before - sent_again
        clear(oscars)

    floor, tool, cli, one_by_one = median(floors), median(tools), median(clis), median(serial)
    ratio = tool / floor
    return [
        Row(
            "7a",
            f"floor: the same {SERVICES} POSTs sent directly (1 requests.Session per cluster, 3 waves in dependency "
            f"order, clusters in parallel), median of {runs}",
            f"{floor:.3f} s",
            notes=f"all {spread(floors)}; one POST at a time, same order: median {one_by_one:.3f} s "
            f"(all {spread(serial)}); 3 stand-in OSCARs + 3 moto S3 on 127.0.0.1, each POST makes the stand-in "
            "create its buckets",
        ),
        Row(
            "7b",
            f"workflow apply, {SERVICES} services over {len(CLUSTERS)} clusters, in-process "
            f"(WorkflowEngine.apply), median of {runs}",
            f"{tool:.3f} s = {ratio:.2f}× floor",
            f"≤ {GOAL}× floor",
            verdict(ratio <= GOAL),
            f"all {spread(tools)}; 12 created each run",
        ),
        Row(
            "7b",
            f"provision workflow apply FDL -o json (CLI subprocess, start-up included), median of {runs}",
            f"{cli:.3f} s = {cli / floor:.2f}× floor",
            notes=f"all {spread(clis)}; {cli - tool:+.3f} s over the in-process apply",
        ),
        Row(
            "7c",
            "re-apply with no change: POST/PUT/DELETE received by the 3 stand-ins",
            str(sent_again),
            "0",
            verdict(sent_again == 0 and not again.done),
            f"in-process re-apply {again_wall:.3f} s, plan all unchanged; the CLI's re-apply sent "
            f"{len(cli_again.get('sent', []))} ({cli_sent_again} writes received)",
        ),
    ]
