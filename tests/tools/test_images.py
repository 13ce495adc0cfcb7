"""Image loading: bad input is refused with the file and the reason; odd formats are normalised."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirgraph.errors import ImageError
from cirgraph.tools.images import content_hash, downscale, load_image, to_data_url


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_rgb_jpeg_round_trip(tmp_path: Path) -> None:
    p = _save(Image.new("RGB", (40, 30), (200, 10, 10)), tmp_path / "a.jpg")
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (40, 30)


def test_non_image_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("hello, not a picture")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image file"):
        load_image(p)


def test_truncated_image_is_refused(tmp_path: Path) -> None:
    full = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: corrupt or truncated"):
        load_image(p)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    p = _save(Image.new("L", (5000, 5000)), tmp_path / "bomb.png")
    with pytest.raises(ImageError, match=r"bomb\.png: 5000x5000 = 25000000 pixels, over the 1000000-pixel cap"):
        load_image(p, max_pixels=1_000_000)


def test_empty_missing_and_directory_paths(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def test_symlink_loop_is_named(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    with pytest.raises(ImageError, match=r"a\.png"):
        load_image(tmp_path / "a.png")


def test_cmyk_16bit_palette_alpha_are_normalised(tmp_path: Path) -> None:
    cmyk = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    assert load_image(cmyk).mode == "RGB"
    arr16 = np.full((8, 8), 65535, dtype=np.uint16)
    p16 = _save(Image.fromarray(arr16), tmp_path / "deep.png")
    assert Image.open(p16).mode.startswith("I")
    img16 = load_image(p16)
    assert img16.mode == "RGB" and img16.getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    pal.info["transparency"] = 0
    ppal = _save(pal, tmp_path / "pal.png", transparency=0)
    assert load_image(ppal).getpixel((0, 0)) == (255, 255, 255), "transparent pixels flatten onto white"
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 255))
    assert load_image(_save(rgba, tmp_path / "rgba.png")).getpixel((1, 1)) == (0, 0, 255)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_image(p).size == (20, 40)


def test_bytes_and_pil_sources() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5, 5)).save(buf, "PNG")
    assert load_image(buf.getvalue()).size == (5, 5)
    assert load_image(Image.new("LA", (3, 3))).mode == "RGB"
    with pytest.raises(ImageError, match="empty image data"):
        load_image(b"")
    with pytest.raises(ImageError, match="unsupported image source type int"):
        load_image(42)  # type: ignore[arg-type]


def test_data_url_is_downscaled() -> None:
    url = to_data_url(Image.new("RGB", (1000, 500)), max_side=100)
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (100, 50)
    assert downscale(Image.new("RGB", (10, 10)), 100).size == (10, 10)


def test_content_hash_depends_on_bytes_only() -> None:
    assert content_hash(b"abc") == content_hash(b"abc") != content_hash(b"abd")
    assert len(content_hash(b"abc")) == 32


def test_formats_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    """Pillow could open EPS through Ghostscript; a photo gallery never needs that, so it is refused."""
    p = tmp_path / "doc.eps"
    p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match=r"doc\.eps: not an image file"):
        load_image(p)
    ico = tmp_path / "icon.ico"
    Image.new("RGB", (16, 16)).save(ico, "ICO")
    with pytest.raises(ImageError, match="unrecognised format"):
        load_image(ico)
