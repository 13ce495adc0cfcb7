"""DataUrls: each live image is encoded once, however many requests (and threads) send it."""

from __future__ import annotations

import base64
import gc
import io
import threading

from PIL import Image

from cirgraph.tools import image_urls
from cirgraph.tools.image_urls import DataUrls
from cirgraph.tools.images import to_data_url


def counting(monkeypatch) -> list:
    encoded: list = []

    def encode(img, **kwargs):
        encoded.append(img)
        return to_data_url(img, **kwargs)

    monkeypatch.setattr(image_urls, "to_data_url", encode)
    return encoded


def test_an_image_is_encoded_once_and_downscaled(monkeypatch) -> None:
    encoded, urls = counting(monkeypatch), DataUrls(max_side=100)
    img = Image.new("RGB", (400, 200), (200, 30, 30))
    assert urls.cached(img) is None
    first = urls(img)
    assert urls(img) is first and urls.cached(img) is first and len(encoded) == 1
    decoded = Image.open(io.BytesIO(base64.b64decode(first.split(",", 1)[1])))
    assert first.startswith("data:image/jpeg;base64,") and decoded.size == (100, 50)


def test_equal_images_are_distinct_entries(monkeypatch) -> None:
    encoded, urls = counting(monkeypatch), DataUrls()
    a, b = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))  # equal content, two objects
    urls(a), urls(b)
    assert len(encoded) == 2 and len(urls) == 2


def test_concurrent_requests_share_one_encoding(monkeypatch) -> None:
    encoded, urls = counting(monkeypatch), DataUrls()
    img = Image.new("RGB", (640, 480), (10, 200, 10))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(urls(img))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(encoded) == 1 and len(set(results)) == 1 and len(results) == 8


def test_entries_of_dead_images_are_dropped() -> None:
    urls = DataUrls()
    img = Image.new("RGB", (8, 8))
    urls(img)
    del img
    gc.collect()
    assert len(urls) == 0
    urls(Image.new("RGB", (8, 8), (1, 2, 3)))  # a new entry prunes the dead one
    assert len(urls._entries) <= 1
