"""What the fault-injection suite shares: a real Chroma gallery of the toy pictures (hash embedders, so no model
weights), clients of the fake OpenAI-compatible server over real HTTP, `cirgraph` subprocesses, and a stopwatch whose
figures are printed (run with -s to see them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cirgraph.testing.memory_gallery import TOY_ITEMS, build_toy_gallery


@pytest.fixture(scope="module")
def chroma_gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """(the toy gallery in an embedded Chroma store, with captions; the folder of its pictures)."""
    from cirgraph import clients
    from cirgraph.settings import Settings
    from cirgraph.stores.captions import load_captions
    from cirgraph.stores.chroma import clear_client_cache
    from cirgraph.stores.indexer import Indexer

    root = tmp_path_factory.mktemp("reliability-gallery")
    build_toy_gallery(root / "images")
    captions = root / "captions.json"
    captions.write_text(json.dumps({f"{k}.png": v for k, v in TOY_ITEMS.items()}))
    settings = Settings(home=root / "home", embedder="hash:32", text_embedder="hash:16")
    clear_client_cache()
    gallery = clients.open_gallery(settings, "toy", create=True, kind="images")
    assert Indexer(gallery).index(root / "images", captions=load_captions(captions)).added == len(TOY_ITEMS)
    _warm_up(gallery, root / "images")
    yield gallery, root / "images"
    clear_client_cache()


def _warm_up(gallery: Any, images: Path) -> None:
    """One search against a healthy server, so imports and first-use costs stay out of the timed searches."""
    from cirgraph.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer() as server, retriever(gallery, chat_client(server.base_url)) as search:
        assert search.search(images / "red-dress.png", "make it blue", k=3).hits


def new_reference(images: Path, tmp: Path) -> Path:
    """A picture not in the gallery, so the search must caption it."""
    from PIL import Image

    img = Image.open(images / "blue-dress.png").convert("RGB")
    img.putpixel((3, 3), (7, 8, 9))
    path = tmp / "reference.png"
    img.save(path)
    return path


def chat_client(base_url: str, **kwargs: Any) -> Any:
    from cirgraph.tools.openai_chat import OpenAIChatModel

    kwargs = {"timeout": 1.0, "max_retries": 2, "retry_wait": (0.1, 0.5), **kwargs}
    return OpenAIChatModel("fake-model", base_url=base_url, api_key="k", **kwargs)


def retriever(gallery: Any, model: Any, config: str = "reflect") -> Any:
    from cirgraph.retriever import Retriever

    return Retriever(gallery=gallery, llm=model, vlm=model, embedder=gallery.image_embedder,
                     text_embedder=gallery.text_embedder, config=config)


@contextmanager
def stopwatch(label: str, figures: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Times the block; prints `label: N.NN s` and the figures the block put in the yielded dict."""
    out: dict[str, Any] = dict(figures or {})
    started = time.perf_counter()
    yield out
    out["seconds"] = time.perf_counter() - started
    shown = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items())
    print(f"\n[reliability] {label}: {shown}")


def cirgraph_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRGRAPH_")}
    env.update({"CIRGRAPH_HOME": str(home), "PYTHONUNBUFFERED": "1", "ANONYMIZED_TELEMETRY": "False",
                "HF_HUB_OFFLINE": "1"})
    env.update({f"CIRGRAPH_{k.upper()}": v for k, v in settings.items()})
    return env


def cirgraph(env: dict[str, str], *args: str, **popen: Any) -> subprocess.Popen:
    """`cirgraph ARGS` in a subprocess (text mode, stdout and stderr piped unless given)."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "cirgraph", *args], env=env, text=True, **popen)
