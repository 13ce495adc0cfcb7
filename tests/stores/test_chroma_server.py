"""Clients from settings: the embedded store under home, or a Chroma server process; telemetry off."""

from __future__ import annotations

import socket

import pytest

from cirgraph.errors import GalleryError
from cirgraph.clients import open_gallery
from cirgraph.settings import Settings
from cirgraph.stores.chroma import clear_client_cache, gallery_names, make_client, server_client
from cirgraph.stores.indexer import Indexer


def test_embedded_store_lives_under_home_without_telemetry(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home")
    client = make_client(settings)
    try:
        assert client.get_settings().anonymized_telemetry is False
        assert client.get_settings().persist_directory == str(tmp_path / "home" / "galleries" / "chroma")
        assert gallery_names(client) == []
    finally:
        clear_client_cache()


@pytest.mark.server
def test_settings_with_a_chroma_host_index_and_query_through_the_server(chroma_server, photos, tmp_path) -> None:
    host, port = chroma_server
    settings = Settings(home=tmp_path / "unused", chroma_host=host, chroma_port=port, embedder="hash:32",
                        text_embedder="hash:16")
    gallery = open_gallery(settings, "served", create=True, kind="images")
    report = Indexer(gallery).index(photos)
    assert (report.added, report.total) == (8, 8)
    assert "served" in gallery_names(server_client(host, port))
    again = open_gallery(settings.model_copy(update={"embedder": None}), "served")  # a second client, same store
    assert again.count() == 8 and again.image_model == "hash:32"
    first = next(again.iter_items())[0]
    hit = again.query_images(again.image_embeddings([first])[first], 1)[0]
    assert hit.id == first and hit.score == pytest.approx(1.0, abs=1e-5) and hit.uri.startswith(str(photos))
    assert not (tmp_path / "unused").exists()  # nothing embedded was created


def test_an_unreachable_server_is_a_gallery_error_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GalleryError, match=rf"^Chroma server at http://127.0.0.1:{port} is unreachable"):
        make_client(Settings(chroma_host="127.0.0.1", chroma_port=port))
