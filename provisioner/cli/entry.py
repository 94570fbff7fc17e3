"""The console script's entry point (``provision``) and ``python -m provisioner``.

A command is a short-lived process that builds tens of thousands of long-lived objects while it imports (typer, the
CLI, the drivers it needs) and frees almost nothing before it exits. With the collector's default first threshold
(700 allocations) a ``cluster create`` ran about 60 collections, each walking every object imported so far: about
8 ms of its start. The threshold is raised before anything is imported, for the whole process (long-running
commands such as ``autoscale daemon`` still collect, after 50,000 allocations instead of 700). Kept out of
:mod:`provisioner.cli.main` so that importing the CLI (the tests' in-process runner) changes nothing.
"""

from __future__ import annotations

import gc

#: The collector's thresholds for a ``provision`` process (generation 0, 1, 2).
GC_THRESHOLDS = (50_000, 20, 20)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    from provisioner.cli.main import run

    run()
