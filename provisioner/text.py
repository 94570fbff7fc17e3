"""Pure text helpers every layer may use (no I/O, no imports from the rest of the package)."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """``text`` when it has at most ``limit`` characters; else cut on a word boundary, ending in ``…``.

    The result never exceeds ``limit`` characters (the ellipsis counts) and has no space before the ellipsis.
    A first word longer than the limit is cut inside the word (there is no boundary to cut on)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if not text[limit - 1].isspace():  # the cut falls inside a word: drop that word's start
        space = max(head.rfind(" "), head.rfind("\t"))
        if space > 0 and head[:space].strip():
            head = head[:space]
    return head.rstrip() + ELLIPSIS
