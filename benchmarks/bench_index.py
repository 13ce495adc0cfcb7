"""Indexing throughput (images/s) and the share of wall time spent outside the model forward pass.

Indexes N real photos (scikit-image's bundled ones, resized, cropped and flipped into distinct files of realistic
sizes) into a fresh embedded gallery with a CLIP checkpoint folder, and splits the wall time with the embedder's
own timings: model forward vs everything else (decode, hashing, preprocessing, Chroma writes). Reading, hashing
and decoding run in background threads that overlap the model, so they count only where they make it wait.

    python benchmarks/bench_index.py                 # tiny CLIP (cirgraph.testing.tiny_models), 200 photos
    python benchmarks/bench_index.py --model base    # random-weight CLIP ViT-B/32: the real model's compute
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
           "colorwheel", "coins", "retina", "moon", "clock")


def make_photos(folder: Path, n: int) -> list[Path]:
    """N distinct photos: each source image at a random scale (long side 320-1200 px), crop and flip."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in SOURCES]
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        img = sources[i % len(sources)]
        w, h = img.size
        left, top = int(rng.integers(0, w // 8 + 1)), int(rng.integers(0, h // 8 + 1))
        img = img.crop((left, top, w - int(rng.integers(0, w // 8 + 1)), h - int(rng.integers(0, h // 8 + 1))))
        scale = rng.uniform(320, 1200) / max(img.size)
        img = img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))))
        if i % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"photo{i:04d}.{'jpg' if i % 4 else 'png'}"
        img.save(path, quality=90) if path.suffix == ".jpg" else img.save(path)
        paths.append(path)
    return paths


def build_model(kind: str, folder: Path) -> Path:
    """The tiny CLIP test checkpoint, or the same files with a full-size random-weight ViT-B/32 CLIP inside."""
    from cirgraph.testing.tiny_models import build_tiny_clip

    path = build_tiny_clip(folder)
    if kind == "base":
        import transformers
        from transformers import CLIPConfig, CLIPModel

        tiny = CLIPConfig.from_pretrained(path).text_config  # keep the tokenizer's vocabulary and special ids
        text = {k: getattr(tiny, k) for k in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")}
        CLIPModel(CLIPConfig(text_config=text, projection_dim=512)).save_pretrained(path)
        processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        processor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(path)
    return path


def main() -> None:
    from cirgraph.stores.chroma import embedded_client
    from cirgraph.stores.gallery import Gallery
    from cirgraph.stores.indexer import Indexer
    from cirgraph.tools.hf_embedders import HFImageTextEmbedder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="photos to index")
    parser.add_argument("--model", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        paths = make_photos(work / "photos", args.n)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        embedder = HFImageTextEmbedder(str(build_model(args.model, work / "model")), batch_size=args.batch_size)
        gallery = Gallery(embedded_client(work / "store"), "bench", embedder=embedder, create=True)
        writes = [0.0]
        add = gallery.add

        def timed_add(items):
            started = time.perf_counter()
            add(items)
            writes[0] += time.perf_counter() - started

        gallery.add = timed_add
        embedder.timings.reset()
        started = time.perf_counter()
        report = Indexer(gallery, batch_size=args.batch_size).index(work / "photos")
        wall = time.perf_counter() - started
        t = embedder.timings
        outside = wall - t.model_s
        print(f"{report.added} photos ({megabytes:.1f} MB, JPEG+PNG, 320-1200 px), model {args.model!r} "
              f"(dim {embedder.dim}), batch {args.batch_size}, failed {len(report.failed)}")
        print(f"wall {wall:.2f} s  ->  {report.added / wall:.1f} images/s")
        print(f"model forward      {t.model_s:7.2f} s  {100 * t.model_s / wall:5.1f} %")
        print(f"outside the model  {outside:7.2f} s  {100 * outside / wall:5.1f} %  (target <= 15 %)")
        print(f"  of which preprocessing (processor resize/normalise) {t.preprocess_s:.2f} s, "
              f"Chroma writes {writes[0]:.2f} s; read/hash/decode run in background threads")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
