"""Rows, machine details and the markdown table."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PASS, FAIL, NA, INFO = "pass", "FAIL", "n/a", "info"
ERROR = "error (see notes)"


@dataclass
class Row:
    figure: str
    what: str
    measured: str
    goal: str = "—"
    result: str = INFO
    notes: str = ""


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else platform.processor() or "unknown"


def _ram() -> str:
    try:
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return "unknown"
    return f"{int(found.group(1)) / 1024 / 1024:.1f} GiB" if found else "unknown"


def _os() -> str:
    try:
        found = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', Path("/etc/os-release").read_text(), re.M)
        name = found.group(1) if found else ""
    except OSError:
        name = ""
    return f"{name} (kernel {platform.release()})".strip()


def machine(im_version: str) -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} (usable: {usable})",
        "RAM": _ram(),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "OS": _os(),
        "IM": im_version,
    }


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(
    rows: list[Row], details: dict[str, str], started: datetime, took: float, argv: list[str], figures: list[int]
) -> str:
    lines = [
        f"# provisioner benchmarks — {started.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
        f"Command: `{' '.join(['python -m bench', *argv])}` — whole run {took:.0f} s.",
        f"Figures {', '.join(map(str, figures))}, measured side by side in this one run"
        + (", against the same local IM (started fresh, stopped at the end)." if set(figures) & {1, 4, 5} else "."),
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in details.items()),
        "",
        "| # | figure | measured | goal | result | notes |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r.figure} | {_cell(r.what)} | {_cell(r.measured)} | {_cell(r.goal)} | {r.result} | {_cell(r.notes)} |"
            for r in rows
        ),
        "",
    ]
    counts = {k: sum(1 for r in rows if r.result == k) for k in (PASS, FAIL, NA, INFO)}
    lines.append(f"{counts[PASS]} pass, {counts[FAIL]} FAIL, {counts[NA]} not available, {counts[INFO]} informational.")
    return "\n".join(lines) + "\n"
