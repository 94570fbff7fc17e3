"""Figure 1: create an oscar cluster on local-sim, wait until configured, read its outputs.

Three ways, one after the other, all through the same counting proxy in front of the same IM:
(a) the provision CLI, (b) GRyCAP's im_client (if it could be installed), (c) bare curl polling every 0.1 s.
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


def mix(kinds: dict[str, int] | None) -> str:
    return ", ".join(f"{k.replace('/infrastructures', '/inf')} ×{v}" for k, v in sorted((kinds or {}).items()))


# --- (a) the CLI -------------------------------------------------------------------------------------------------


def via_cli(ctx: Context, name: str = "bench-cli") -> Measure:
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
    split = time.perf_counter() - start
    must(run([str(PROVISION), "cluster", "outputs", name], env), "cluster outputs")
    wall = time.perf_counter() - start
    m = Measure(wall, ctx.proxy.count, ctx.proxy.polls(), created["infra_id"], ctx.proxy.by_kind())
    m.split = f"create --wait {split:.2f} s + outputs {wall - split:.2f} s"
    if created["state"] != "configured":
        raise RuntimeError(f"the CLI's cluster ended {created['state']}")
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
    return Measure(wall, ctx.proxy.count, ctx.proxy.polls(), infra_id, ctx.proxy.by_kind())


def via_imclient_cwo(ctx: Context, exe: Path, tosca_file: Path) -> Measure:
    ctx.proxy.reset()
    start = time.perf_counter()
    out = must(_imc(exe, ctx, "-q", "create_wait_outputs", str(tosca_file)), "im_client create_wait_outputs")
    wall = time.perf_counter() - start
    doc = json.loads(out.strip().splitlines()[-1])
    if "error" in doc:
        raise RuntimeError(f"im_client create_wait_outputs: {doc}")
    return Measure(wall, ctx.proxy.count, ctx.proxy.polls(), str(doc["infid"]), ctx.proxy.by_kind())


# --- (c) the floor: bare curl ------------------------------------------------------------------------------------


def via_curl(ctx: Context, tosca_file: Path, interval: float = 0.1) -> Measure:
    header = ctx.tmp / "curl-auth-header"
    fd = os.open(header, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"Authorization: {AuthData.load(ctx.auth_file).header()}\n")
    base = ["curl", "-sS", "--fail", "-H", f"@{header}"]
    env = dict(os.environ)
    ctx.proxy.reset()
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
        time.sleep(max(0.0, polled_at + interval - time.perf_counter()))
    must(
        run([*base, "-H", "Accept: application/json", f"{ctx.proxy.url}/infrastructures/{infra_id}/outputs"], env),
        "curl outputs",
    )
    wall = time.perf_counter() - start
    if state != "configured":
        raise RuntimeError(f"curl: the infrastructure ended {state}")
    return Measure(wall, ctx.proxy.count, ctx.proxy.polls(), infra_id, ctx.proxy.by_kind())


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


# --- the figure --------------------------------------------------------------------------------------------------


def figure(ctx: Context) -> list[Row]:
    from bench.common import destroy_all

    rows: list[Row] = []
    tosca_file = ctx.tmp / "oscar-local-sim.yaml"  # .yaml: im_client sends it as TOSCA (text/yaml)
    made: list[str] = []

    k = ctx.args.create_runs
    ctx.say(f"figure 1c: the floor (curl, 0.1 s polling), {k} runs")
    floors = []
    for i in range(k):
        tosca_file.write_text(render_oscar(f"bench-curl-{i}"))
        floors.append(via_curl(ctx, tosca_file))
        made.append(floors[-1].infra_id)
    floor = typical(floors)
    rows.append(
        Row(
            "1c",
            f"floor: curl POST + GET state every 0.1 s + GET outputs, median of {k}",
            f"{floor.wall:.2f} s, {spread_req(floors)}",
            notes=f"all walls {walls(floors)}; requests: {mix(floor.kinds)}",
        )
    )

    ctx.say(f"figure 1a: provision cluster create --wait + outputs, {k} runs")
    clis = [via_cli(ctx, f"bench-cli-{i}") for i in range(k)]
    cli = typical(clis)
    ratio = cli.wall / floor.wall
    rows.append(
        Row(
            "1a",
            f"provision cluster create --wait -o json; cluster outputs (2 processes), median of {k}",
            f"{cli.wall:.2f} s = {ratio:.2f}× floor, {spread_req(clis)}",
            "≤ 1.5× floor",
            verdict(ratio <= 1.5),
            f"all walls {walls(clis)}; median run: {cli.split}; requests: {mix(cli.kinds)}",
        )
    )

    exe, why = imclient_bin(ctx)
    if exe is None:
        for what in ("im_client create; wait; getoutputs", "im_client create_wait_outputs"):
            rows.append(Row("1b", what, "not available", "CLI ≥ 10× faster", NA, why))
    else:
        version = run([str(exe), "--version"], dict(os.environ)).stdout.strip().splitlines()
        for label, fn in (
            ("im_client create; wait; getoutputs (3 processes)", via_imclient_steps),
            ("im_client create_wait_outputs (1 process)", via_imclient_cwo),
        ):
            ctx.say(f"figure 1b: {label}, {k} runs (im_client sleeps 30 s between state checks)")
            runs: list[Measure] = []
            try:
                for i in range(k):
                    tosca_file.write_text(render_oscar(f"bench-imclient-{i}"))
                    runs.append(fn(ctx, exe, tosca_file))
                    made.append(runs[-1].infra_id)
            except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                rows.append(Row("1b", label, ERROR, "CLI ≥ 10× faster", FAIL, str(exc)[:300]))
                continue
            m = typical(runs)
            speedup = m.wall / cli.wall
            slept = sum(1 for r in runs if r.polls > 1)
            rows.append(
                Row(
                    "1b",
                    f"{label}, median of {k}",
                    f"{m.wall:.2f} s, {spread_req(runs)}; CLI is {speedup:.1f}× faster",
                    "CLI ≥ 10× faster",
                    verdict(speedup >= 10),
                    f"all walls {walls(runs)}; {slept}/{k} runs slept 30 s (im_client checks once at once, then "
                    f"every 30 s: when the Dummy deployment (floor {floor.wall:.2f} s) is already configured at "
                    f"its first check it never sleeps); IM-client {version[-1] if version else '?'} (PyPI), "
                    f"REST via -r; requests: {mix(m.kinds)}",
                )
            )
    left = destroy_all(ctx, made)
    if left:
        rows.append(Row("1", "infrastructures left after figure 1", str(len(left)), "0", FAIL, ", ".join(left)))
    return rows
