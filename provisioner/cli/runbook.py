"""``provision runbook [NAME]``: print a runbook that ships with the tool (the ``see provision runbook NAME`` lines).

The pages are the same Markdown files readers of the repository find under ``provisioner/data/runbooks/``.
"""

from __future__ import annotations

import typer

from provisioner.cli.common import OutputFormat, OutputOption, emit
from provisioner.cli.render import table
from provisioner.errors import InputError
from provisioner.settings import data_path


def _pages() -> dict[str, str]:
    """Runbook name -> its first heading, for every page shipped (the index README aside)."""
    pages: dict[str, str] = {}
    for path in sorted(data_path("runbooks").glob("*.md")):
        if path.stem == "README":
            continue
        first = next((ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("#")), path.stem)
        pages[path.stem] = first.lstrip("# ").strip()
    return pages


def runbook(
    name: str | None = typer.Argument(None, help="The runbook to print (omit to list them)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Print a runbook (the page an error's ``see provision runbook NAME`` line names), or list them."""
    pages = _pages()
    if name is None:
        rows = [{"name": n, "title": t} for n, t in pages.items()]
        emit(rows, output, lambda: table(["RUNBOOK", "TITLE"], pages.items(), empty="no runbooks"))
        return
    key = name.removesuffix(".md")
    if key not in pages:
        raise InputError(f"no runbook {name!r} (known: {', '.join(pages)})", field="runbook")
    text = data_path("runbooks", f"{key}.md").read_text(encoding="utf-8")
    emit({"name": key, "title": pages[key], "text": text}, output, text.rstrip("\n"))
