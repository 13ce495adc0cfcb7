"""Settings: the CIRGRAPH_ environment contract and its defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from cirgraph.settings import DEFAULT_EMBEDDER, DEFAULT_TEXT_EMBEDDER, Settings, default_home


def test_defaults_point_to_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIRGRAPH_HOME")
    s = Settings(_env_file=None)
    assert s.home == default_home() and s.home.name == "cirgraph"
    assert s.embedder == DEFAULT_EMBEDDER and s.text_embedder == DEFAULT_TEXT_EMBEDDER
    assert s.llm_base_url is None and s.vlm_base_url is None and not s.uses_chroma_server


def test_every_contract_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "CIRGRAPH_HOME": str(tmp_path), "CIRGRAPH_EMBEDDER": "/models/clip", "CIRGRAPH_TEXT_EMBEDDER": "/models/mini",
        "CIRGRAPH_LLM_BASE_URL": "http://127.0.0.1:8001/v1", "CIRGRAPH_LLM_API_KEY": "k1",
        "CIRGRAPH_LLM_MODEL": "qwen", "CIRGRAPH_VLM_BASE_URL": "http://127.0.0.1:8002/v1",
        "CIRGRAPH_VLM_API_KEY": "k2", "CIRGRAPH_VLM_MODEL": "qwen-vl", "CIRGRAPH_CHROMA_HOST": "127.0.0.1",
        "CIRGRAPH_CHROMA_PORT": "9000",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)
    assert s.home == tmp_path and s.embedder == "/models/clip" and s.text_embedder == "/models/mini"
    assert (s.llm_base_url, s.llm_api_key.get_secret_value(), s.llm_model) == ("http://127.0.0.1:8001/v1", "k1", "qwen")
    assert (s.vlm_base_url, s.vlm_api_key.get_secret_value(), s.vlm_model) == (
        "http://127.0.0.1:8002/v1", "k2", "qwen-vl")
    assert s.uses_chroma_server and (s.chroma_host, s.chroma_port) == ("127.0.0.1", 9000)
    assert "k1" not in repr(s), "API keys must not leak into reprs and logs"


def test_vision_model_defaults_to_the_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_LLM_BASE_URL", "http://127.0.0.1:8001/v1")
    monkeypatch.setenv("CIRGRAPH_LLM_MODEL", "qwen")
    monkeypatch.setenv("CIRGRAPH_LLM_API_KEY", "secret")
    s = Settings(_env_file=None)
    assert (s.vlm_base_url, s.vlm_model, s.vlm_api_key.get_secret_value()) == (
        "http://127.0.0.1:8001/v1", "qwen", "secret")


def test_empty_embedder_means_caption_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "")
    assert Settings(_env_file=None).embedder is None


def test_dotenv_is_optional_and_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CIRGRAPH_LLM_MODEL=from-dotenv\n")
    assert Settings().llm_model == "from-dotenv"


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_CHROMA_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="chroma_port"):
        Settings(_env_file=None)


ENV_READ = re.compile(r"""(environ(\.get)?[\[(]|getenv\()\s*["']CIRGRAPH_""")
SETTINGS_BUILT = re.compile(r"(?<![\w.])Settings\(\s*(_env_file[^)]*)?\)")


def test_pipeline_code_never_reads_the_environment() -> None:
    """Settings are read at the edges only: pipeline modules never read CIRGRAPH_* variables or build Settings.

    (Honouring the Hugging Face hub's own HF_HUB_OFFLINE convention in the model loader is allowed.)
    """
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("agents", "tools", "stores", "prompts", "evals"):
        for py in (root / folder).rglob("*.py"):
            text = py.read_text()
            if ENV_READ.search(text) or SETTINGS_BUILT.search(text):
                offenders.append(str(py.relative_to(root)))
    assert offenders == []
