"""local_source: one rule, for the SDK and the terminal chat, for what a local caller's reference is."""

from __future__ import annotations

import pytest
from PIL import Image

from cirgraph.agents.query import GalleryRef, ImageBytes, local_source
from cirgraph.errors import ImageError, InputError


def test_a_reference_is_a_gallery_item_an_image_or_image_bytes(world) -> None:
    assert local_source("red-dress", world.gallery) == GalleryRef("red-dress")
    assert local_source(GalleryRef("red-dress"), world.gallery) == GalleryRef("red-dress")
    image = Image.new("RGB", (4, 4))
    assert local_source(image, world.gallery) is image
    assert local_source(b"\x89PNG", world.gallery) == ImageBytes(b"\x89PNG", "reference bytes")
    found = local_source(world.path("blue-dress"), world.gallery, subject="image")
    assert isinstance(found, ImageBytes) and found.data == world.path("blue-dress").read_bytes()
    assert (found.name, found.file_name) == (str(world.path("blue-dress")), "blue-dress.png")


def test_an_existing_file_wins_over_a_gallery_id(world, monkeypatch) -> None:
    monkeypatch.chdir(world.dir)
    assert isinstance(local_source("red-dress.png", world.gallery), ImageBytes)
    assert local_source("red-dress", world.gallery) == GalleryRef("red-dress")


@pytest.mark.parametrize(("source", "error", "match"), [
    ("no-such-item", InputError, "reference 'no-such-item': no such file, and no item with this id in gallery"),
    ("missing.png", ImageError, "no such file"),
    ("x" * 5000 + ".png", InputError, "not a usable file name"),
    (None, InputError, "unsupported type NoneType"),
])
def test_what_is_no_reference_is_named(world, source, error, match) -> None:
    with pytest.raises(error, match=match):
        local_source(source, world.gallery)
