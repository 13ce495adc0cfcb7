"""ef_search measured on a gallery's own vectors, stored with it, read back, and reported by `cirgraph index --json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cirgraph.stores.search as search_module
from cirgraph.tools.embedders import load_text_embedder
from cirgraph.stores import hnsw
from cirgraph.stores.chroma import GALLERY_HNSW, clear_client_cache, embedded_client
from cirgraph.stores.gallery import Gallery, NewItem


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim))
    x = centers[rng.integers(20, size=n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def captioned(tmp_path: Path):
    """An embedded caption-only gallery of 400 items, one caption each, with clustered 16-d caption vectors."""
    clear_client_cache()
    g = Gallery(embedded_client(tmp_path / "store"), "tuned", text_embedder=load_text_embedder("hash:16"),
                create=True)
    vectors = _clustered(400, 16)
    g.add([NewItem(id=f"i{i}", uri=None, metadata={"item_id": f"i{i}"}, captions=[f"caption {i}"],
                   caption_embeddings=vectors[i:i + 1]) for i in range(400)])
    yield g, vectors
    clear_client_cache()


def test_tuning_stores_the_smallest_ef_search_reaching_the_target(captioned, monkeypatch) -> None:
    g, vectors = captioned
    monkeypatch.setattr(hnsw, "SAMPLE", 60)
    tried: list[int] = []
    measure = hnsw.recall
    monkeypatch.setattr(hnsw, "recall", lambda col, *a: tried.append(hnsw.ef_search_of(col)) or measure(col, *a))
    result = hnsw.tune_gallery(g, sample=60)
    chosen = result["captions"]["ef_search"]
    assert set(result) == {"captions"} and result["captions"]["vectors"] == 400
    assert chosen in hnsw.EF_LADDER and result["captions"]["recall_at_50"] >= hnsw.TARGET_RECALL
    # each value tried was searched with (the index was reopened), and every smaller one tried fell short
    assert chosen in tried and max(tried) == hnsw.EF_LADDER[-1]
    # stored: the configuration Chroma searches with, and the measurement in the metadata, read back afresh
    reopened = Gallery(g.client, "tuned")
    col = reopened.captions_collection
    assert hnsw.ef_search_of(col) == chosen and col.metadata[hnsw.EF_KEY] == chosen
    assert col.metadata["cirgraph_kind"] == "captions"  # the collection's own metadata is kept
    assert hnsw.stored_settings(reopened) == {"captions": {"ef_search": chosen,
                                                           "recall_at_50": result["captions"]["recall_at_50"]}}
    monkeypatch.setattr(search_module, "EXACT_MAX_VECTORS", 0)  # the HNSW path still answers
    assert reopened.query_captions(vectors[7], 3)[0].id == "i7"
    assert g.query_captions(vectors[9], 3)[0].id == "i9"


def test_repeated_vectors_count_as_found_whichever_copy_comes_back(tmp_path) -> None:
    clear_client_cache()
    g = Gallery(embedded_client(tmp_path / "dups"), "dups", text_embedder=load_text_embedder("hash:16"), create=True)
    base = _clustered(57, 16, seed=3)
    vectors = base[np.arange(400) % 57]  # every vector 7 or 8 times (as captions repeat): the 50th place is a tie
    g.add([NewItem(id=f"i{i}", uri=None, metadata={"item_id": f"i{i}"}, captions=[f"c {i}"],
                   caption_embeddings=vectors[i:i + 1]) for i in range(400)])
    tuned = hnsw.tune_gallery(g, sample=40)["captions"]
    assert tuned["recall_at_50"] >= hnsw.TARGET_RECALL and tuned["ef_search"] < hnsw.EF_LADDER[-1]
    clear_client_cache()


def test_a_gallery_indexed_before_tuning_reports_its_configured_ef_search(captioned) -> None:
    g, _ = captioned
    assert hnsw.stored_settings(g) == {"captions": {"ef_search": GALLERY_HNSW["ef_search"],
                                                    "recall_at_50": None}}


def test_index_json_reports_the_measured_ef_search(tmp_path, capsys, monkeypatch, _isolated_settings) -> None:
    from cirgraph.cli import main

    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:16")
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "")
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"candidate": f"img{i}", "captions": [f"a photo of thing {i} in place {i % 9}"]}
                                for i in range(80)]))
    monkeypatch.setattr(sys, "argv", ["cirgraph", "index", "--captions", str(caps), "-g", "c", "--json"])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    clear_client_cache()
    summary = json.loads(capsys.readouterr().out)
    assert code in (0, None) and summary["added"] == 80 and summary["total"] == 80  # the existing keys stay
    assert summary["hnsw"]["captions"]["ef_search"] in hnsw.EF_LADDER
    assert summary["hnsw"]["captions"]["recall_at_50"] >= hnsw.TARGET_RECALL
