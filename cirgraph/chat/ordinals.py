"""Reading a pick out of a chat message: "the second one, but blue", "#2 in red", "number 3 with a hood".

Only unambiguous phrasings count: an ordinal needs a noun after it ("the second one", "third image") so that a
modification such as "with a second pocket" is left alone. The matched phrase is removed; the rest is the
modification.
"""

from __future__ import annotations

import re

LAST = -1  # "the last one": resolved against the number of results when the turn is planned

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "last": LAST}
_VERB = r"(?:(?:take|use|pick|choose|select|start\s+from|go\s+with|i\s+like)\s+)?"
_NOUN = r"(?:one|result|image|picture|photo|item|option|match)"
_PATTERNS = (
    re.compile(_VERB + r"(?<![\w#])#\s?(\d{1,3})\b", re.I),
    re.compile(_VERB + r"\b(?:number|no\.|nr\.?|result|image|picture|photo|item|option)\s*#?\s*(\d{1,3})\b", re.I),
    re.compile(_VERB + r"\b(?:the\s+)?(" + "|".join(_ORDINALS) + r"|\d{1,3}(?:st|nd|rd|th))\s+" + _NOUN + r"\b",
               re.I),
)
_EDGE = re.compile(r"^[\s,;:.!?-]+|[\s,;:-]+$")
_LEAD = re.compile(r"^(?:(?:and|then|now|so)\b[\s,]*)+", re.I)


def _number(token: str) -> int:
    token = token.lower()
    if token in _ORDINALS:
        return _ORDINALS[token]
    return int(re.match(r"\d+", token).group())


def parse_pick(text: str) -> tuple[int | None, str]:
    """(the result number the text picks, or None; the text without the picking phrase).

    Numbers are 1-based; `LAST` stands for "the last one". Without a pick the text comes back unchanged.
    """
    best = None
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if match and (best is None or match.start() < best.start()):
            best = match
    if best is None:
        return None, text
    pick = _number(best.group(1))
    if pick == 0:
        return None, text
    rest = text[:best.start()] + " " + text[best.end():]
    return pick, _LEAD.sub("", _EDGE.sub("", " ".join(rest.split())))
