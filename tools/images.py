"""Reading images safely and normalising them to 8-bit RGB.

One entry point, `load_image`, used by the indexer, the SDK and the model clients: it rejects non-images, truncated
or corrupt files and decompression bombs with an ImageError naming the input, and normalises CMYK, 16-bit,
palette/alpha and EXIF-rotated images instead of rejecting them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Union

from cirgraph.errors import ImageError

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_MAX_PIXELS = 64_000_000
# Bytes read before decoding; a compressed file far larger than any sane photo is refused before it is read.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".ppm", ".pgm", ".pbm"}
)

# Formats we decode, and the only ones a reference, an upload or a gallery image may come in. Pillow knows many more
# (EPS goes through Ghostscript, PSD, ...): untrusted input, and not what cameras, phones and browsers produce.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM"})

ImageSource = Union[str, os.PathLike, bytes, "Image"]


def content_hash(data: bytes) -> str:
    """The id of an image: sha256 of its file bytes, hex, first 32 characters (128 bits)."""
    return hashlib.sha256(data).hexdigest()[:32]


def read_image_bytes(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file's bytes, turning OS errors into ImageError that names the path."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise ImageError(str(p), "not a regular file")
        if size == 0:
            raise ImageError(str(p), "empty file")
        if size > max_bytes:
            raise ImageError(str(p), f"file is {size} bytes, over the {max_bytes}-byte limit")
        return p.read_bytes()
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(str(p), "permission denied") from None
    except FileNotFoundError:
        raise ImageError(str(p), "no such file") from None
    except OSError as exc:  # ELOOP (symlink loop), EISDIR, EIO...
        raise ImageError(str(p), exc.strerror or str(exc)) from None


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode bytes into a normalised RGB image, or raise ImageError naming `name` and the reason."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError(name, "empty image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data), formats=decodable_formats())
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(name, f"{width}x{height} = {width * height} pixels, over the {max_pixels}-pixel cap")
            img.load()  # decode now: truncated or corrupt data fails here, not later in a batch
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            name, f"not an image file (unrecognised format; accepted: {', '.join(sorted(ALLOWED_FORMATS))})"
        ) from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageError(name, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(name, f"corrupt or truncated image ({exc})") from None
    return normalise(ImageOps.exif_transpose(img) or img)


def decodable_formats() -> list[str]:
    """The allowed formats this Pillow can open, by Pillow's format name."""
    from PIL import Image as PILImage

    PILImage.init()  # registers every plugin, so the allow-list can be matched against what this Pillow has
    return [f for f in sorted(ALLOWED_FORMATS) if f in PILImage.OPEN]


def normalise(img: Image) -> Image:
    """8-bit RGB: palette and alpha are flattened onto white, CMYK and 16-bit converted, frames beyond the first
    dropped."""
    from PIL import Image as PILImage

    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = PILImage.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = PILImage.fromarray(scaled.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PILImage.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """A path, bytes or PIL image -> normalised RGB PIL image. Raises ImageError naming the input."""
    from PIL import Image as PILImage

    if isinstance(source, PILImage.Image):
        w, h = source.size
        if w * h > max_pixels:
            raise ImageError("<image>", f"{w}x{h} = {w * h} pixels, over the {max_pixels}-pixel cap")
        return normalise(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return decode_image(read_image_bytes(source), name=str(source), max_pixels=max_pixels)
    raise ImageError(repr(source)[:80], f"unsupported image source type {type(source).__name__}")


def downscale(img: Image, max_side: int) -> Image:
    """Shrink so that the longer side is at most `max_side`, keeping the aspect ratio (never enlarges)."""
    from PIL import Image as PILImage

    w, h = img.size
    if max(w, h) <= max_side:
        return img
    scale = max_side / max(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), PILImage.Resampling.LANCZOS)


def to_data_url(img: Image, *, max_side: int = 768, fmt: str = "JPEG", quality: int = 90) -> str:
    """A base64 data URL of the image, downscaled to `max_side`, as vision chat APIs accept."""
    small = downscale(img, max_side)
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        small.convert("RGB").save(buf, format="JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        small.save(buf, format="PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def image_fingerprint(img: Image) -> str:
    """A content hash of decoded pixels, for images that arrive without file bytes (cache keys)."""
    h = hashlib.sha256()
    h.update(f"{img.mode}:{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()[:32]
