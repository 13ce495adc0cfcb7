"""Picking a result in words: "the second one, but blue", "#2 in red", "number 3 with a hood"."""

from __future__ import annotations

import pytest

from cirgraph.chat.ordinals import LAST, parse_pick


@pytest.mark.parametrize(("text", "pick", "rest"), [
    ("the second one, but blue", 2, "but blue"),
    ("#2 in red", 2, "in red"),
    ("number 3 with a hood", 3, "with a hood"),
    ("Result 4: darker", 4, "darker"),
    ("take the 3rd image and make it longer", 3, "make it longer"),
    ("I like the first one. Now in green", 1, "in green"),
    ("no. 2 please", 2, "please"),
    ("the last one", LAST, ""),
    ("#5", 5, ""),
    ("make it like the tenth picture but red", 10, "make it like but red"),
])
def test_picks_are_read_and_removed(text: str, pick: int, rest: str) -> None:
    assert parse_pick(text) == (pick, rest)


@pytest.mark.parametrize("text", [
    "make it red", "with a second pocket", "the first thing to change is the colour", "#0 in red",
    "size 2 smaller", "a dress with 3 buttons",
])
def test_other_texts_are_left_alone(text: str) -> None:
    assert parse_pick(text) == (None, text)
