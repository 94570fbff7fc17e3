"""``provisioner.text.shorten``: cut on a word boundary, ellipsis counted in the limit."""

from __future__ import annotations

import pytest

from provisioner.text import shorten


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly ten", 11, "exactly ten"),  # at the limit: unchanged, no ellipsis
        ("exactly ten!", 11, "exactly…"),  # one over: the last word goes
        ("connection refused by peer", 15, "connection…"),  # a cut inside "refused": the whole word goes
        ("connection refused by peer", 20, "connection refused…"),  # the cut falls on the space: no space kept
        ("a" * 50, 10, "a" * 9 + "…"),  # one long word: cut inside it
        ("word  " + "b" * 40, 10, "word…"),  # several spaces before the cut: none before the ellipsis
        ("x" * 300 + " tail", 200, "x" * 199 + "…"),
    ],
)
def test_shorten(text: str, limit: int, expected: str) -> None:
    result = shorten(text, limit)
    assert result == expected
    assert len(result) <= limit
    assert not result.endswith(" …")


def test_shorten_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError):
        shorten("text", 0)
