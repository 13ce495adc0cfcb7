"""`cirgraph ARGS` run in the test's own process through the real entry point (usage errors, one-line errors and
exit codes included), for tests that need the CLI's whole behaviour without a subprocess."""

from __future__ import annotations

import sys

import pytest

from cirgraph.stores.chroma import clear_client_cache


def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: object) -> tuple[int, str, str]:
    """Run `cirgraph ARGS` in this process through the real entry point; (exit code, stdout, stderr)."""
    from cirgraph.cli import main

    monkeypatch.setattr(sys, "argv", ["cirgraph", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        clear_client_cache()
    out, err = capsys.readouterr()
    return code, out, err
