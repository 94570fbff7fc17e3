"""What ``workflow validate`` shows of a checked FDL: its stages, the dataflow between them, the warnings (pure)."""

from __future__ import annotations

from typing import Any

from provisioner.workflow.fdl import IOSpec, Stage
from provisioner.workflow.files import Workflow

__all__ = ["describe", "describe_text", "io_label"]


def io_label(spec: IOSpec, cluster: str) -> str:
    """``minio.cloud:masks/in`` (the cluster's own MinIO named by the cluster: ``minio.edge:faces/in``)."""
    where = f"{spec.kind}.{cluster}" if spec.own else spec.provider
    filters = ""
    if spec.suffix:
        filters += f" *{'|*'.join(spec.suffix)}"
    if spec.prefix:
        filters += f" {'|'.join(spec.prefix)}*"
    return f"{where}:{spec.path}{filters}"


def _stage(stage: Stage, workflow: Workflow) -> dict[str, Any]:
    return {
        "cluster": stage.cluster,
        "name": stage.name,
        "image": stage.definition.get("image"),
        "script": stage.script,
        "inputs": [io_label(spec, stage.cluster) for spec in stage.inputs],
        "outputs": [io_label(spec, stage.cluster) for spec in stage.outputs],
        "line": stage.line,
    }


def describe(workflow: Workflow) -> dict[str, Any]:
    """The JSON document of ``workflow validate``."""
    fdl, flow = workflow.fdl, workflow.flow
    stages = {stage.key: stage for stage in fdl.stages}

    def label(key: tuple[str, str]) -> str:
        return f"{key[0]}/{key[1]}"

    return {
        "file": str(workflow.path),
        "name": workflow.stem,
        "clusters": list(fdl.cluster_ids),
        "stages": [_stage(stage, workflow) for stage in fdl.stages],
        "dataflow": [
            {
                "from": label(edge.source),
                "output": io_label(stages[edge.source].outputs[edge.output], edge.source[0]),
                "to": label(edge.target),
                "input": io_label(stages[edge.target].inputs[edge.input], edge.target[0]),
            }
            for edge in flow.edges
        ],
        "entry_points": [
            {"stage": label(key), "inputs": [io_label(spec, key[0]) for spec in stages[key].inputs]}
            for key in flow.entries
        ],
        "final_outputs": [
            {"stage": label(key), "output": io_label(stages[key].outputs[index], key[0])} for key, index in flow.finals
        ],
        "deploy_order": [label(key) for key in flow.order],
        "warnings": [warning.render(fdl.filename) for warning in fdl.warnings],
    }


def describe_text(doc: dict[str, Any]) -> str:
    """``describe``'s document as text."""
    lines = [f"{doc['file']}: valid; {len(doc['stages'])} stage(s) on {', '.join(doc['clusters']) or 'no cluster'}"]
    lines.append("dataflow:")
    if not doc["dataflow"]:
        lines.append("  (no stage feeds another)")
    for edge in doc["dataflow"]:
        lines.append(f"  {edge['from']} --[{edge['output']}]--> {edge['to']}")
    lines.append("entry points (upload here):")
    for entry in doc["entry_points"]:
        lines.append(f"  {entry['stage']}: {', '.join(entry['inputs']) or '(no input)'}")
    lines.append("final outputs (no stage reads them):")
    if not doc["final_outputs"]:
        lines.append("  (none)")
    for final in doc["final_outputs"]:
        lines.append(f"  {final['stage']}: {final['output']}")
    lines.append(f"deploy order (downstream first): {', '.join(doc['deploy_order'])}")
    return "\n".join(lines)
