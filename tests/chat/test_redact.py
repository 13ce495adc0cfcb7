"""What the HTTP API says about the server's disk: absolute paths cut to their last component, uris to names."""

from __future__ import annotations

from cirgraph.chat.redact import public, redact_text


def test_absolute_paths_in_texts_are_cut_to_their_last_component() -> None:
    assert redact_text("/home/ann/photos/coins.png: truncated") == "…/coins.png: truncated"
    assert redact_text("candidate image unreadable ('/srv/g/x.jpg')") == "candidate image unreadable ('…/x.jpg')"
    assert redact_text("store at file:///var/lib/cirgraph/chroma, retry") == "store at …/chroma, retry"
    assert redact_text("see ~/data/cirr/mllm.json") == "see …/mllm.json"


def test_texts_without_paths_are_left_alone() -> None:
    for text in ("red and/or blue", "w/o the hood", "1/2 price", "http://example.org/a/b.png", "/api", "a / b",
                 "no slash here"):
        assert redact_text(text) == text


def test_public_replaces_uris_by_names_at_any_depth() -> None:
    value = {"results": [{"id": "a", "uri": "/data/photos/a.png", "captions": ["seen at /data/photos"]}],
             "explanation": {"degraded": [{"reason": "/data/photos/b.png: not an image"}]}, "k": 3}
    out = public(value)
    assert out == {"results": [{"id": "a", "name": "a.png", "captions": ["seen at …/photos"]}],
                   "explanation": {"degraded": [{"reason": "…/b.png: not an image"}]}, "k": 3}
    assert value["results"][0]["uri"] == "/data/photos/a.png"  # the input is not changed
    assert public({"id": "c", "uri": None}) == {"id": "c", "name": None}
