"""Every command answers bad arguments with one line on stderr and exit 2 (click's convention), never a traceback."""

from __future__ import annotations

import sys

import pytest

from cirgraph.cli import main

BAD = [
    ["search", "--gallery", "x"],                      # no --text
    ["search", "--text", "x"],                         # neither --image nor --ref-id
    ["search", "--text", "x", "--ref-id", "a", "-k", "0"],
    ["search", "--text", "x", "--ref-id", "a", "--nope"],
    ["nosuch"],
    ["index"],                                         # neither PATH nor --captions
    ["index", "--batch-size", "0", "--captions", "c.json"],
    ["chat", "--k", "zero"],
    ["ui", "--port", "http"],
    ["eval", "run", "cirr", "--split", "val"],         # no --data
    ["eval", "run"],
    ["eval", "compare"],
    ["cache", "clear", "--nope"],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["cirgraph", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    out, err = capsys.readouterr()
    assert stop.value.code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
