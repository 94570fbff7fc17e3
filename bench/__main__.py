"""``python -m bench``: run the figures side by side against one local IM and write bench/results/."""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import provisioner
from bench import create, load, startup, state, workflow
from bench.common import BENCH, REPO, Context, destroy_all
from bench.proxy import CountingProxy
from bench.report import ERROR, FAIL, Row, machine, markdown
from provisioner import localim
from provisioner.settings import ENV_IM_VENV

FIGURES: dict[int, tuple[str, Callable[[Context], list[Row]]]] = {
    1: ("create + wait + outputs: CLI vs im_client vs curl floor", create.figure),
    2: ("CLI start-up", startup.startup),
    3: ("template render + validate (warm)", startup.template),
    4: ("load: N clusters at once", load.load),
    5: ("autoscale: one tick over N clusters", load.autoscale),
    6: ("polling cost (fake clock)", startup.polling),
    7: ("workflow apply: 12 services over 3 clusters vs the same POSTs sent directly", workflow.figure),
    8: ("state backends: SQLite vs PostgreSQL", state.figure),
}
ORDER = (6, 3, 2, 7, 1, 4, 5, 8)  # quick, in-process ones first


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of provisioner against a local IM 2.0.0 (Dummy cloud). Run inside the loopback-only "
        "namespace: `make bench BENCH_ARGS='...'` or `.ci/netns .venv/bin/python -m bench ...`. Figures: "
        + "; ".join(f"{k} {v[0]}" for k, v in FIGURES.items()),
    )
    parser.add_argument("--only", default="", help="comma-separated figure numbers to run, e.g. --only 2,3,6")
    parser.add_argument("--load", type=int, default=50, help="clusters created at once in figure 4 (default 50)")
    parser.add_argument(
        "--load-rounds",
        type=int,
        default=3,
        help="rounds of figure 4 (curl floor, then the CLI, each round; medians; default 3)",
    )
    parser.add_argument(
        "--autoscale", type=int, default=200, help="clusters in the autoscale tick, figure 5 (default 200)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=10,
        help="repetitions for medians in figures 2, 3 and 7 (min 10 for 2, 5 for 3 and 7)",
    )
    parser.add_argument(
        "--registry", type=int, default=1000, help="clusters in the registry for `cluster list` (default 1000)"
    )
    parser.add_argument(
        "--create-runs",
        type=int,
        default=5,
        help="runs of each of figure 1's ways (median; the CLI against im_client's three calls run by run; default 5)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed (not only on errors)")
    parser.add_argument(
        "--no-install", action="store_true", help="do not try to pip install IM-client if it is missing"
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results", help="where the results go (default bench/results)"
    )
    args = parser.parse_args(argv)
    try:
        args.figures = sorted({int(x) for x in args.only.split(",") if x.strip()}) or sorted(FIGURES)
    except ValueError:
        parser.error(f"--only takes figure numbers like 1,3: {args.only!r}")
    if bad := [f for f in args.figures if f not in FIGURES]:
        parser.error(f"no figure {bad[0]} (known: {', '.join(map(str, FIGURES))})")
    for name in ("load", "load_rounds", "autoscale", "runs", "registry", "create_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    needs_im = any(f in (1, 4, 5, 8) for f in args.figures)
    if needs_im and not only_loopback():
        print(
            "bench: figures 1, 4, 5 and 8 run a local IM on its simulated cloud, which must run in a loopback-only "
            "network namespace: use `make bench` or `.ci/netns .venv/bin/python -m bench` (or --only 2,3,6)",
            file=sys.stderr,
        )
        return 2
    # What an installed package has (pip and pipx compile it): the bytecode of every module, so that no timed run of
    # any figure compiles a source (PYTHONDONTWRITEBYTECODE, set on some machines, would make every run compile).
    compileall.compile_dir(str(Path(provisioner.__file__).parent), quiet=1)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-"))
    os.chmod(tmp, 0o700)
    venv = Path(os.environ.get(ENV_IM_VENV) or REPO / ".im-venv")
    run_dir = tmp / "local-im"
    rows: list[Row] = []
    im_version = "not started (no figure needed IM)"
    proxy = None
    try:
        if needs_im:
            if not localim.is_installed(venv):
                print(f"bench: IM {localim.IM_VERSION} is not installed in {venv}: run `make setup`", file=sys.stderr)
                return 2
            print(f"[bench] starting the local IM from {venv}", file=sys.stderr, flush=True)
            info = localim.start(run_dir, venv, fresh=True)
            proxy = CountingProxy(info.url)
            ctx = Context(info.url, Path(info.auth_file), proxy, tmp, args)
            client = ctx.direct_client()
            im_version = f"{client.version()} (local on 127.0.0.1, Dummy cloud, SQLite; {venv})"
            client.close()
        else:
            ctx = Context("http://127.0.0.1:9", tmp / "none", None, tmp, args)  # type: ignore[arg-type]
        results: dict[int, list[Row]] = {}
        for number in (f for f in ORDER if f in args.figures):
            title, fn = FIGURES[number]
            ctx.say(f"figure {number}: {title}")
            try:
                results[number] = fn(ctx)
            except Exception as exc:  # noqa: BLE001 - one figure failing must not hide the others
                traceback.print_exc()
                results[number] = [Row(str(number), title, ERROR, "—", FAIL, f"{type(exc).__name__}: {exc}"[:400])]
        rows = [row for number in sorted(results) for row in results[number]]
        if needs_im:
            left = destroy_all(ctx)
            if left:
                rows.append(
                    Row("—", "infrastructures left in IM at the end", str(len(left)), "0", FAIL, ", ".join(left))
                )
    finally:
        if proxy is not None:
            proxy.close()
        if needs_im:
            localim.stop(run_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(rows, machine(im_version), started, time.perf_counter() - t0, argv, args.figures)
    args.out.mkdir(parents=True, exist_ok=True)
    stamped = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}.md"
    stamped.write_text(text)
    (args.out / "latest.md").write_text(text)
    print(text)
    print(f"[bench] written {stamped} and {args.out / 'latest.md'}", file=sys.stderr)
    if any(r.measured == ERROR for r in rows):
        return 1
    return 1 if args.strict and any(r.result == FAIL for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
