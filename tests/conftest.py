"""Shared fixtures: every test runs with a private CIRGRAPH_HOME and no CIRGRAPH_* settings from the caller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The benchmark annotations beside the project (../shared/data), or CIRGRAPH_SHARED_DATA."""
    return Path(os.environ.get("CIRGRAPH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("CIRGRAPH_") and key not in ("CIRGRAPH_SHARED_DATA", "CIRGRAPH_LIVE_BASE_URL",
                                                        "CIRGRAPH_LIVE_MODEL"):
            monkeypatch.delenv(key)
    home = tmp_path_factory.mktemp("cirgraph-home")
    monkeypatch.setenv("CIRGRAPH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    return home
