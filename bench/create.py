"""Figure 1: create an oscar cluster on local-sim, wait until configured, read its outputs.

Three ways, all through the same counting proxy in front of the same IM: (a) the provision CLI, one process
(``cluster create --wait -o json`` answers with the outputs), (b) GRyCAP's im_client (if it could be installed),
(c) bare curl polling every 0.1 s. Run i of the floor, of the CLI and of im_client's three calls are taken one after
the other, so each pair compared saw the same machine and the same IM, after one untimed round of all three (the
IM was started seconds before, and its first deployments are slower than a long-running IM's).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import IMCLIENT_VENV, PROVISION, Context, must, render_oscar, run
from bench.report import ERROR, FAIL, NA, Row, verdict
from provisioner.im.auth import AuthData


@dataclass
class Measure:
    wall: float
    requests: int
    polls: int
    infra_id: str
    kinds: dict[str, int] | None = None
    split: str = ""
    connections: int = 0  # client connections the proxy accepted


def mix(kinds: dict[str, int] | None) -> str:
    return ", ".join(f"{k.replace('/infrastructures', '/inf')} ×{v}" for k, v in sorted((kinds or {}).items()))


# --- (a) the CLI -------------------------------------------------------------------------------------------------


def via_cli(ctx: Context, name: str = "bench-cli") -> Measure:
    """One process: ``cluster create --wait -o json`` answers with the cluster and its outputs."""
    env = ctx.env(ctx.home("fig1-cli"))
    ctx.proxy.reset()
    start = time.perf_counter()
    created = json.loads(
        must(
            run(
                [str(PROVISION), "cluster", "create", name, "-t", "oscar", "-s", "local-sim", "--wait", "-o", "json"],
                env,
            ),
            "cluster create",
        )
    )
    wall = time.perf_counter() - start
    m = Measure(
        wall, ctx.proxy.count, ctx.proxy.polls(), created["infra_id"], ctx.proxy.by_kind(), "", ctx.proxy.connections
    )
    if created["state"] != "configured":
        raise RuntimeError(f"the CLI's cluster ended {created['state']}")
    if not isinstance(created.get("outputs"), dict) or "oscar_endpoint" not in created["outputs"]:
        raise RuntimeError(f"the CLI's answer has no outputs: {sorted(created)}")
    must(run([str(PROVISION), "cluster", "destroy", name, "--yes"], env), "cluster destroy")
    return m


# --- (b) im_client -----------------------------------------------------------------------------------------------


def imclient_bin(ctx: Context) -> tuple[Path | None, str]:
    """im_client from bench/.venv-imclient, installing it there if it is missing (needs PyPI)."""
    exe = IMCLIENT_VENV / "bin" / "im_client"
    if exe.exists():
        return exe, ""
    if ctx.args.no_install:
        return None, "not installed in bench/.venv-imclient and --no-install given"
    ctx.say("installing IM-client into bench/.venv-imclient ...")
    try:
        subprocess.run(["python3", "-m", "venv", str(IMCLIENT_VENV)], check=True, capture_output=True, timeout=120)
        pip = subprocess.run(
            [
                str(IMCLIENT_VENV / "bin" / "pip"),
                "install",
                "--disable-pip-version-check",
                "--timeout",
                "15",
                "IM-client==1.8.4",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create bench/.venv-imclient: {exc}"
    if pip.returncode != 0 or not exe.exists():
        last = (pip.stderr or pip.stdout).strip().splitlines()[-1:] or ["?"]
        return None, (
            f"pip install IM-client failed ({last[0][:160]}); inside .ci/netns PyPI is unreachable: install it once "
            "outside with: make bench (or python3 -m venv bench/.venv-imclient && "
            "bench/.venv-imclient/bin/pip install IM-client==1.8.4)"
        )
    return exe, ""


def _imc(exe: Path, ctx: Context, *args: str) -> subprocess.CompletedProcess[str]:
    # -r is im_client's REST URL option (-u is its XML-RPC one).
    return run([str(exe), "-r", ctx.proxy.url, "-a", str(ctx.auth_file), *args], dict(os.environ), timeout=1200)


def via_imclient_steps(ctx: Context, exe: Path, tosca_file: Path) -> Measure:
    ctx.proxy.reset()
    start = time.perf_counter()
    out = must(_imc(exe, ctx, "create", str(tosca_file)), "im_client create")
    infra_id = out.strip().split()[-1]
    must(_imc(exe, ctx, "wait", infra_id), "im_client wait")
    must(_imc(exe, ctx, "getoutputs", infra_id), "im_client getoutputs")
    wall = time.perf_counter() - start
    return Measure(wall, ctx.proxy.count, ctx.proxy.polls(), infra_id, ctx.proxy.by_kind(), "", ctx.proxy.connections)


def via_imclient_cwo(ctx: Context, exe: Path, tosca_file: Path) -> Measure:
    ctx.proxy.reset()
    start = time.perf_counter()
    out = must(_imc(exe, ctx, "-q", "create_wait_outputs", str(tosca_file)), "im_client create_wait_outputs")
    wall = time.perf_counter() - start
    doc = json.loads(out.strip().splitlines()[-1])
    if "error" in doc:
        raise RuntimeError(f"im_client create_wait_outputs: {doc}")
    return Measure(
        wall, ctx.proxy.count, ctx.proxy.polls(), str(doc["infid"]), ctx.proxy.by_kind(), "", ctx.proxy.connections
    )


# --- (c) the floor: bare curl ------------------------------------------------------------------------------------


def curl_header(ctx: Context) -> Path:
    """A 0600 file with the Authorization header, for curl's ``-H @file`` (never on a command line)."""
    header = ctx.tmp / "curl-auth-header"
    fd = os.open(header, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"Authorization: {AuthData.load(ctx.auth_file).header()}\n")
    return header


def curl_create(ctx: Context, tosca_file: Path, header: Path, interval: float = 0.1, limit: float = 900) -> str:
    """The floor's create, with bare curl (a process per request, as a shell script would): POST, GET state every
    ``interval`` s until IM is done, GET outputs. Returns the infrastructure id; raises unless it is configured."""
    base = ["curl", "-sS", "--fail", "-H", f"@{header}"]
    env = dict(os.environ)
    start = time.perf_counter()
    out = must(
        run(
            [
                *base,
                "-H",
                "Content-Type: text/yaml",
                "--data-binary",
                f"@{tosca_file}",
                f"{ctx.proxy.url}/infrastructures?async=1",
            ],
            env,
        ),
        "curl POST",
    )
    infra_id = out.strip().rstrip("/").rsplit("/", 1)[-1]
    state = "?"
    while True:
        polled_at = time.perf_counter()
        doc = json.loads(
            must(
                run(
                    [*base, "-H", "Accept: application/json", f"{ctx.proxy.url}/infrastructures/{infra_id}/state"], env
                ),
                "curl state",
            )
        )
        state = doc["state"]["state"]
        if state in ("configured", "unconfigured", "failed"):
            break
        if time.perf_counter() - start > limit:
            raise RuntimeError(f"curl: {infra_id} not done after {limit:g} s (state {state})")
        time.sleep(max(0.0, polled_at + interval - time.perf_counter()))
    must(
        run([*base, "-H", "Accept: application/json", f"{ctx.proxy.url}/infrastructures/{infra_id}/outputs"], env),
        "curl outputs",
    )
    if state != "configured":
        raise RuntimeError(f"curl: the infrastructure {infra_id} ended {state}")
    return infra_id


def via_curl(ctx: Context, tosca_file: Path, interval: float = 0.1) -> Measure:
    header = curl_header(ctx)
    ctx.proxy.reset()
    start = time.perf_counter()
    infra_id = curl_create(ctx, tosca_file, header, interval)
    wall = time.perf_counter() - start
    return Measure(wall, ctx.proxy.count, ctx.proxy.polls(), infra_id, ctx.proxy.by_kind(), "", ctx.proxy.connections)


def typical(ms: list[Measure]) -> Measure:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(ms, key=lambda m: m.wall)[(len(ms) - 1) // 2]


def walls(ms: list[Measure]) -> str:
    return ", ".join(f"{m.wall:.2f}" for m in ms) + " s"


def spread_req(ms: list[Measure]) -> str:
    reqs = sorted({m.requests for m in ms})
    polls = sorted({m.polls for m in ms})
    span = lambda xs: str(xs[0]) if len(xs) == 1 else f"{xs[0]}–{xs[-1]}"  # noqa: E731
    return f"{span(reqs)} req ({span(polls)} state polls)"


# --- (d) the CLI's own cost: against an IM stand-in that answers at once ----------------------------------------


class InstantIM:
    """An HTTP server on 127.0.0.1 answering the five requests of a create --wait in IM's shapes, at once: a
    deployment configured before the first check. What a create costs then is the CLI's own time (its start, its
    imports, its work) plus its wait before the first check."""

    def __init__(self) -> None:
        import itertools
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        ids = itertools.count()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, doc: object) -> None:
                data = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer({"uri": f"http://{self.headers['Host']}/infrastructures/instant-{next(ids)}"})

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.endswith("/state"):
                    self._answer(
                        {"state": {"state": "configured", "vm_states": {"0": "configured", "1": "configured"}}}
                    )
                elif "/vms/" in path:
                    system = {"class": "system", "id": "front" if path.endswith("/0") else "wn", "state": "configured"}
                    system.update({"net_interface.0.connection": "private", "net_interface.0.ip": "10.0.0.1"})
                    self._answer({"radl": [{"class": "network", "id": "private", "outbound": "no"}, system]})
                else:
                    self._answer({"outputs": {"oscar_endpoint": "http://10.0.0.1:31000"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def own_cost_row(ctx: Context, k: int, floor: Measure, cli: Measure) -> Row:
    from provisioner.polling import DEFAULT_SCHEDULE

    ctx.say(f"figure 1d: provision cluster create --wait -o json against an IM stand-in answering at once, {k} runs")
    stand_in = InstantIM()
    try:
        times = []
        env = ctx.env(ctx.home("fig1-instant"))  # one home, as 1a's runs share one: its registry already made
        env["PROVISION_IM_URL"] = stand_in.url
        for i in range(k + 1):  # the first run is not timed
            start = time.perf_counter()
            must(run([str(PROVISION), "cluster", "create", f"instant-{i}", "-t", "oscar", "-s", "local-sim", "--wait",
                      "-o", "json"], env), "cluster create against the stand-in")  # fmt: skip
            times.append(time.perf_counter() - start)
    finally:
        stand_in.close()
    own = sorted(times[1:])[(k - 1) // 2]
    first = DEFAULT_SCHEDULE.first_max
    work = own - first
    return Row(
        "1d",
        f"the same create against an IM stand-in answering at once (the CLI's own cost), median of {k}",
        f"{own:.2f} s = {work:.2f} s of the CLI's own + its {first:g} s wait for the first check",
        notes=f"all {', '.join(f'{t:.2f}' for t in times[1:])} s; what a create costs when IM costs nothing. "
        f"In 1a the CLI took {cli.wall - floor.wall:+.2f} s more than the floor. Waiting as long for IM as curl "
        "does, the CLI is within 1.5x of the floor only when the floor is at least twice the CLI's own time less "
        "curl's (4-5 process starts). The stand-in answers POST, state, the two VMs and the outputs in IM's shapes "
        "(bench/create.py InstantIM), from a thread of the bench",
    )


# --- the figure --------------------------------------------------------------------------------------------------


def conns(ms: list[Measure]) -> str:
    found = sorted({m.connections for m in ms})
    return str(found[0]) if len(found) == 1 else f"{found[0]}–{found[-1]}"


def figure(ctx: Context) -> list[Row]:
    from bench.common import destroy_all

    rows: list[Row] = []
    tosca_file = ctx.tmp / "oscar-local-sim.yaml"  # .yaml: im_client sends it as TOSCA (text/yaml)
    made: list[str] = []

    k = ctx.args.create_runs
    exe, why = imclient_bin(ctx)
    version = run([str(exe), "--version"], dict(os.environ)).stdout.strip().splitlines() if exe else []
    imc_version = f"IM-client {version[-1] if version else '?'} (PyPI), REST via -r"
    floors: list[Measure] = []
    clis: list[Measure] = []
    steps: list[Measure] = []
    steps_error = ""
    # One untimed round first: the local IM was started seconds ago, and its first deployments run slower (its own
    # lazy imports and caches), which would charge whichever of the three went first. Every timed run below then
    # meets an IM that has served a create, as a long-running IM has.
    ctx.say("figure 1, warm-up round (not timed): curl floor; provision cluster create --wait -o json; im_client x3")
    tosca_file.write_text(render_oscar("bench-warm-curl"))
    made.append(via_curl(ctx, tosca_file).infra_id)
    made.append(via_cli(ctx, "bench-warm-cli").infra_id)
    if exe is not None:
        tosca_file.write_text(render_oscar("bench-warm-imclient"))
        try:
            made.append(via_imclient_steps(ctx, exe, tosca_file).infra_id)
        except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            steps_error = str(exc)[:300]
    for i in range(k):
        # Run i of each, one after the other: the CLI and im_client's three calls are compared run by run.
        ctx.say(f"figure 1, run {i + 1}/{k}: curl floor; provision cluster create --wait -o json; im_client x3")
        tosca_file.write_text(render_oscar(f"bench-curl-{i}"))
        floors.append(via_curl(ctx, tosca_file))
        made.append(floors[-1].infra_id)
        clis.append(via_cli(ctx, f"bench-cli-{i}"))
        if exe is not None and not steps_error:
            tosca_file.write_text(render_oscar(f"bench-imclient-steps-{i}"))
            try:
                steps.append(via_imclient_steps(ctx, exe, tosca_file))
                made.append(steps[-1].infra_id)
            except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                steps_error = str(exc)[:300]
    floor = typical(floors)
    rows.append(
        Row(
            "1c",
            f"floor: curl POST + GET state every 0.1 s + GET outputs, median of {k}",
            f"{floor.wall:.2f} s, {spread_req(floors)}",
            notes=f"all walls {walls(floors)}; a curl process (a connection) per request; "
            f"requests: {mix(floor.kinds)}; after one untimed round of all three against the freshly started IM",
        )
    )
    cli = typical(clis)
    ratio = cli.wall / floor.wall
    rows.append(
        Row(
            "1a",
            f"provision cluster create --wait -o json (1 process, outputs in the answer), median of {k}",
            f"{cli.wall:.2f} s = {ratio:.2f}× floor, {spread_req(clis)}, {conns(clis)} connection(s)",
            "≤ 1.5× floor",
            verdict(ratio <= 1.5),
            f"all walls {walls(clis)}; requests: {mix(cli.kinds)}; each VM is read once (its role and addresses, "
            "for the registry and the answer)",
        )
    )

    label = "im_client create; wait; getoutputs (3 processes)"
    goal = f"CLI not slower in any of {k} runs"
    if exe is None:
        rows.append(Row("1b", label, "not available", goal, NA, why))
    elif steps_error:
        rows.append(Row("1b", label, ERROR, goal, FAIL, steps_error))
    else:
        m = typical(steps)
        not_slower = sum(1 for c, s in zip(clis, steps, strict=True) if c.wall <= s.wall)
        pairs = ", ".join(f"{c.wall:.2f}/{s.wall:.2f}" for c, s in zip(clis, steps, strict=True))
        rows.append(
            Row(
                "1b",
                f"{label}, median of {k}",
                f"{m.wall:.2f} s, {spread_req(steps)}; CLI not slower in {not_slower} of {k} runs",
                goal,
                verdict(not_slower == k),
                f"run by run, CLI/im_client walls: {pairs} s; {imc_version}; requests: {mix(m.kinds)}",
            )
        )

    label = "im_client create_wait_outputs (1 process)"
    goal = "CLI ≥ 10× faster"
    if exe is None:
        rows.append(Row("1b", label, "not available", goal, NA, why))
    else:
        ctx.say(f"figure 1b: {label}, {k} runs (im_client sleeps 30 s between state checks)")
        runs: list[Measure] = []
        try:
            for i in range(k):
                tosca_file.write_text(render_oscar(f"bench-imclient-{i}"))
                runs.append(via_imclient_cwo(ctx, exe, tosca_file))
                made.append(runs[-1].infra_id)
        except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            rows.append(Row("1b", label, ERROR, goal, FAIL, str(exc)[:300]))
        else:
            m = typical(runs)
            speedup = m.wall / cli.wall
            slept = sum(1 for r in runs if r.polls > 1)
            rows.append(
                Row(
                    "1b",
                    f"{label}, median of {k}",
                    f"{m.wall:.2f} s, {spread_req(runs)}; CLI is {speedup:.1f}× faster",
                    goal,
                    verdict(speedup >= 10),
                    f"all walls {walls(runs)}; {slept}/{k} runs slept 30 s (im_client checks once at once, then "
                    f"every 30 s: when the Dummy deployment (floor {floor.wall:.2f} s) is already configured at "
                    f"its first check it never sleeps); {imc_version}; requests: {mix(m.kinds)}",
                )
            )
    rows.append(own_cost_row(ctx, k, floor, cli))
    left = destroy_all(ctx, made)
    if left:
        rows.append(Row("1", "infrastructures left after figure 1", str(len(left)), "0", FAIL, ", ".join(left)))
    return rows
