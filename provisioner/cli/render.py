"""The text (non-JSON) rendering every command shares: human values, singular/plural, and tables.

``human`` turns a value into what a person reads (``-`` for none, lists joined with ``, ``, yes/no);
``plural`` counts with the right noun; ``table`` lays rows out under headers with rich, as a string ``emit`` prints.
On a terminal the table fits the terminal's width (cells wrap, nothing is lost) and its headers are bold; on a pipe
or a file it has no colour and no width limit, so ``grep`` and ``awk`` see whole rows. Cells are never read as
rich markup or emoji codes: a value such as ``[steady]`` or ``:x:`` prints as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NONE = "-"
# A pipe has no width: wide enough that no row is ever wrapped or cut (rich tables only take the width they need).
PIPE_WIDTH = 100_000


def human(value: Any) -> str:
    """A value as a person reads it: ``-`` for none or empty, yes/no, lists joined with ``, ``, ``4`` for ``4.0``."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return value if value != "" else NONE
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={human(item)}" for key, item in value.items()) or NONE
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ", ".join(human(item) for item in items) or NONE
    return str(value)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 worker``, ``0 workers``, ``3 workers`` (``many`` for nouns that do not just take an s)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _numeric(values: Iterable[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "", indent: int = 0) -> str:
    """Rows under their column headers (``human`` values; number columns right-aligned), or ``empty`` when none.

    ``indent`` shifts the table right, under a heading line of a record (``cluster status``'s VMs)."""
    data = [list(row) for row in rows]
    if not data:
        return empty
    for row in data:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns: {row!r}")
    right = [_numeric(row[index] for row in data) for index in range(len(columns))]
    cells = [[human(cell) for cell in row] for row in data]
    terminal = sys.stdout.isatty()
    if not terminal:
        plain = _plain_table(list(columns), cells, right, indent)
        if plain is not None:
            return plain
    return _rich_table(list(columns), cells, right, indent, terminal=terminal)


def _plain_table(columns: list[str], cells: list[list[str]], right: list[bool], indent: int) -> str | None:
    """The table as rich lays it out on a pipe (columns two spaces apart, no colour, lines not cut), without rich:
    when every header and cell is printable ASCII (one character, one column) and neither empty nor padded with
    spaces; else None (rich does it). tests/unit/test_cli_render.py checks that both give the same."""
    if not all(map(_simple, columns)) or not all(_simple(text) for row in cells for text in row):
        return None
    widths = [max(len(name), *(len(row[index]) for row in cells)) for index, name in enumerate(columns)]
    if indent + sum(widths) + 2 * (len(widths) - 1) > PIPE_WIDTH:
        return None
    lines = []
    for row in [columns, *cells]:
        laid = [
            text.rjust(width) if on_right else text.ljust(width)
            for text, width, on_right in zip(row, widths, right, strict=True)
        ]
        lines.append((" " * indent + "  ".join(laid)).rstrip())
    return "\n".join(lines)


def _simple(text: str) -> bool:
    return text.isascii() and text.isprintable() and text != "" and text == text.strip()


def _rich_table(columns: list[str], cells: list[list[str]], right: list[bool], indent: int, *, terminal: bool) -> str:
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold" if terminal else None)
    for name, on_right in zip(columns, right, strict=True):
        grid.add_column(name, justify="right" if on_right else "left", overflow="fold")
    for row in cells:
        grid.add_row(*(Text(text) for text in row))
    console = Console(
        file=sys.stdout,
        width=None if terminal else PIPE_WIDTH,
        color_system="auto" if terminal else None,
        force_terminal=terminal,
        markup=False,
        emoji=False,
        highlight=False,
    )
    with console.capture() as captured:
        console.print(Padding(grid, (0, 0, 0, indent), expand=False) if indent else grid)
    return "\n".join(line.rstrip() for line in captured.get().rstrip("\n").split("\n"))
