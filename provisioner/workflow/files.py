"""An FDL file from disk: its text checked (:mod:`.fdl`), its scripts read, its dataflow drawn (:mod:`.dataflow`).

Each stage's ``script`` is a path relative to the FDL's directory; its text is what OSCAR is sent (inline, as
oscar-cli sends it). A script that cannot be read is a problem at the ``script`` line like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import FdlInvalid, InputError
from provisioner.workflow.dataflow import Dataflow, dataflow
from provisioner.workflow.fdl import Fdl, Problem, Stage, parse_fdl
from provisioner.yamlfile import read_text_file

__all__ = ["Workflow", "load_workflow"]


@dataclass(frozen=True)
class Workflow:
    """A checked FDL file with what its stages need: the script texts, and the graph between stages."""

    path: Path
    fdl: Fdl
    flow: Dataflow
    scripts: dict[tuple[str, str], str]  # stage key -> the script's text

    @property
    def stem(self) -> str:
        return self.path.stem

    def definition(self, stage: Stage) -> dict[str, object]:
        """What OSCAR is sent for ``stage`` (before storage credentials are filled in)."""
        body: dict[str, object] = dict(stage.definition)
        script = self.scripts.get(stage.key)
        if script is not None:
            body["script"] = script
        body["cluster_id"] = stage.cluster
        return body


def load_workflow(path: Path, *, known_clusters: frozenset[str] = frozenset()) -> Workflow:
    """Read and check the FDL at ``path``; raises :class:`~provisioner.errors.FdlInvalid` (exit 2)."""
    label = str(path)
    try:
        text = read_text_file(path, label=label, field="FDL")
    except InputError as exc:
        raise FdlInvalid([f"{label}:?: FDL: {exc.message.removeprefix('FDL: ')}"]) from None
    fdl = parse_fdl(text, label, known_clusters=known_clusters)
    scripts: dict[tuple[str, str], str] = {}
    problems: list[Problem] = []
    for stage in fdl.stages:
        if stage.script is None:
            continue
        line = stage.field_line(fdl.lines, "script")
        where = f"{stage.where}.script"
        script_path = (path.parent / stage.script).resolve()
        if not script_path.is_file():
            problems.append(Problem(line, where, f"no such file: {stage.script} (looked in {path.parent.resolve()})"))
            continue
        try:
            scripts[stage.key] = read_text_file(script_path, label=f"script {stage.script}", field=where)
        except InputError as exc:
            problems.append(Problem(line, where, exc.message.removeprefix(f"{where}: ")))
    if problems:
        raise FdlInvalid([problem.render(label) for problem in problems])
    return Workflow(path=path, fdl=fdl, flow=dataflow(fdl), scripts=scripts)
