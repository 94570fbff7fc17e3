"""The dataflow of an FDL: which stage's output feeds which stage's input, in what order to deploy (pure).

An output feeds an input when both name the same store (the same cluster's MinIO, or the same ``TYPE.ID``) and
the input's path holds what the output writes: the same path, or the output's path under the input's. When both
sides filter by suffix (or prefix), they must share one. Stages nobody feeds are the entry points (a user's
upload starts them); outputs nobody reads are the workflow's final outputs. A cycle is refused: a file written
by its last stage would start the first again, forever.

OSCAR creates a service's input bucket and its notification when the service is created, so a stage writing to
another must be deployed after it: :func:`deploy_order` gives downstream stages first.
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from provisioner.errors import FdlInvalid
from provisioner.workflow.fdl import Fdl, IOSpec, Stage

__all__ = ["Dataflow", "Edge", "dataflow"]


@dataclass(frozen=True)
class Edge:
    """Stage ``source``'s output ``output`` lands where stage ``target`` reads ``input``."""

    source: tuple[str, str]  # (cluster, service)
    output: int
    target: tuple[str, str]
    input: int
    store: tuple[str, str]  # (kind, id): ("minio", "cloud")
    path: str


@dataclass(frozen=True)
class Dataflow:
    """The graph of an FDL's stages (:func:`dataflow`): which output feeds which input, the entry stages, the final
    outputs, and the order to deploy in."""

    edges: tuple[Edge, ...]
    entries: tuple[tuple[str, str], ...]  # stages nobody feeds, in file order
    finals: tuple[tuple[tuple[str, str], int], ...]  # (stage, output index) that no stage reads
    order: tuple[tuple[str, str], ...]  # deployment order: every stage after the stages it writes to

    def feeds(self, stage: tuple[str, str]) -> list[Edge]:
        return [edge for edge in self.edges if edge.source == stage]

    def fed_by(self, stage: tuple[str, str]) -> list[Edge]:
        return [edge for edge in self.edges if edge.target == stage]


def _holds(input_path: str, output_path: str) -> bool:
    return output_path == input_path or output_path.startswith(input_path.rstrip("/") + "/")


def _filters_meet(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return not a or not b or bool(set(a) & set(b))


def connects(source: Stage, out: IOSpec, target: Stage, inp: IOSpec) -> bool:
    return (
        out.target(source.cluster) == inp.target(target.cluster)
        and _holds(inp.path, out.path)
        and _filters_meet(out.suffix, inp.suffix)
        and _filters_meet(out.prefix, inp.prefix)
    )


def dataflow(fdl: Fdl) -> Dataflow:
    """The graph of ``fdl``'s stages; raises :class:`~provisioner.errors.FdlInvalid` on a cycle."""
    edges: list[Edge] = []
    for source in fdl.stages:
        for o, out in enumerate(source.outputs):
            for target in fdl.stages:
                for i, inp in enumerate(target.inputs):
                    if connects(source, out, target, inp):
                        edges.append(Edge(source.key, o, target.key, i, out.target(source.cluster), out.path))
    fed = {edge.target for edge in edges}
    read = {(edge.source, edge.output) for edge in edges}
    entries = tuple(stage.key for stage in fdl.stages if stage.key not in fed)
    finals = tuple(
        (stage.key, o) for stage in fdl.stages for o in range(len(stage.outputs)) if (stage.key, o) not in read
    )
    # Deploy a stage after every stage it writes to: its "predecessors" in the sorter are its targets.
    sorter: TopologicalSorter[tuple[str, str]] = TopologicalSorter()
    for stage in fdl.stages:
        sorter.add(stage.key, *[edge.target for edge in edges if edge.source == stage.key and edge.target != stage.key])
    self_loops = [edge for edge in edges if edge.source == edge.target]
    try:
        order = tuple(sorter.static_order())
    except CycleError as exc:
        cycle = list(reversed(exc.args[1]))
        raise FdlInvalid([_cycle_line(fdl, cycle)]) from None
    if self_loops:
        raise FdlInvalid([_cycle_line(fdl, [self_loops[0].source, self_loops[0].source])])
    return Dataflow(tuple(edges), entries, finals, order)


def _cycle_line(fdl: Fdl, cycle: list[tuple[str, str]]) -> str:
    by_key = {stage.key: stage for stage in fdl.stages}
    first = by_key[cycle[0]]
    chain = " -> ".join(f"{cluster}/{name}" for cluster, name in cycle)
    line = first.field_line(fdl.lines, "output")
    return f"{fdl.filename}:{line}: {first.where}.output: the stages feed each other in a cycle: {chain}"
