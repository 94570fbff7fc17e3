"""The runnable command blocks of a runbook (markdown): fenced ``sh`` blocks whose info string says ``runnable``.

Info string: ``sh runnable [exit=N] [stage=NAME] [expect="text"]...``:
- ``exit``: the status the block must end with (default 0); the block runs with ``set -eo pipefail``;
- ``stage``: a situation the doc-test sets up before the block (IM stopped, a token expired, ...), the thing an
  on-call person finds already broken;
- ``expect``: text that must appear in the block's output (stdout + stderr), repeatable.
Other fenced blocks (``text``, ``yaml``, plain ``sh``) are shown to the reader and not run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    source: Path
    line: int  # 1-based line of the opening fence
    code: str
    exit: int = 0
    stage: str | None = None
    expect: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        words = shlex.split(match.group("info"))
        if len(words) < 2 or words[0] not in ("sh", "bash", "console") or words[1] != "runnable":
            continue
        options: dict[str, list[str]] = {}
        for word in words[2:]:
            key, sep, value = word.partition("=")
            if not sep or key not in ("exit", "stage", "expect"):
                raise ValueError(f"{path.name}: bad runnable option {word!r} (exit=N, stage=NAME, expect=TEXT)")
            options.setdefault(key, []).append(value)
        blocks.append(
            Block(
                source=path,
                line=text.count("\n", 0, match.start()) + 1,
                code=match.group("body"),
                exit=int(options.get("exit", ["0"])[-1]),
                stage=options.get("stage", [None])[-1],
                expect=options.get("expect", []),
            )
        )
    return blocks
