"""The gallery a benchmark split is searched in: its images, or its captions (caption space), built once and reused.

Image mode indexes the split's gallery files (found under the images folder as the dataset lays them out) into a
Chroma image gallery. Caption-space mode needs no image at all: every gallery image is represented by its captions
(e.g. CIRR's multimodal-LLM captions) in a caption-only gallery, and each query's reference by its captions, given
to the pipeline as the reference caption so no vision model is called. A gallery is named after what determines
its embeddings (benchmark, split, gallery names, captions-file hash or images folder, embedders), so runs with other
presets or prompts reuse it and gallery embeddings are computed once per (gallery, embedder). A marker written after
a complete build lets later runs skip even the check; an interrupted build resumes (indexing is idempotent).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirgraph.errors import InputError
from cirgraph.evals.task import Query
from cirgraph.evals.loaders import SplitData, image_candidates, sha256_of
from cirgraph.tools.cache import hash_key

if TYPE_CHECKING:
    from cirgraph.settings import Settings
    from cirgraph.stores.base import GalleryReader
    from cirgraph.stores.captions import CaptionTable

Progress = Callable[[int, int], None]
CAPTION_CHARS = 1000  # reference captions are joined up to this length (whole captions, at least one)


class MissingCaptionError(InputError):
    """A caption-space query whose reference image has no caption: it cannot be represented."""


@dataclass
class Space:
    """A built gallery and how benchmark names map onto it."""

    mode: str  # "captions" | "images"
    gallery: GalleryReader
    info: dict[str, Any]
    captions: dict[str, list[str]] = field(default_factory=dict)  # captions by image name (the captions file)
    image_files: dict[str, Path] = field(default_factory=dict)  # image mode: name -> file
    file_names: dict[str, str] = field(default_factory=dict)  # image mode: indexed file name -> benchmark name
    missing_references: list[str] = field(default_factory=list)  # query ids
    missing_targets: list[str] = field(default_factory=list)  # query ids
    notes: list[str] = field(default_factory=list)
    _ids: dict[str, str] | None = field(default=None, repr=False)  # image mode: benchmark name -> gallery id

    def reference(self, query: Query) -> tuple[Any, str | None]:
        """What the pipeline gets for the query's reference: (a gallery id or image file, a caption or None)."""
        from cirgraph.agents.query import GalleryRef

        texts = self.captions.get(query.reference)
        caption = reference_caption(texts) if texts else None
        if self.mode == "captions":
            if caption is None:
                raise MissingCaptionError(f"reference {query.reference!r}", "has no caption in the captions file")
            return GalleryRef(query.reference), caption
        path = self.image_files.get(query.reference)
        if path is None:
            raise InputError(f"reference {query.reference!r}", f"no image file under {self.info['images_dir']}")
        return path, caption

    def item_ids(self, names: Sequence[str]) -> dict[str, str]:
        """Benchmark name -> gallery id, for the names in the gallery (caption space: the names themselves; images:
        read once from the indexed files' uris)."""
        if self.mode == "captions":
            return {n: n for n in names}
        if self._ids is None:
            self._ids = {self.name_of(item_id, uri): item_id for item_id, uri, _ in self.gallery.iter_items()}
        return {n: self._ids[n] for n in names if n in self._ids}

    def name_of(self, item_id: str, uri: str | None) -> str:
        """The benchmark name of a gallery hit (caption space: the id itself; images: from the indexed file)."""
        if self.mode == "captions":
            return item_id
        return self.file_names.get(Path(uri).name, item_id) if uri else item_id


class PreparedTextEmbedder:
    """A text embedder whose answers for texts known in advance were computed in batches (an eval knows every query
    text before it starts; a transformers encoder embeds short texts about 10x faster on 2 cores in batches than
    one at a time); any other text is embedded when asked. Everything else is the wrapped embedder's.

    Batches of 64 stay on the numpy BERT's per-text path (cirgraph.tools.bert_numpy, up to 64 texts a call), so a
    MiniLM query vector is bit for bit the one a single search computes and rankings do not move."""

    def __init__(self, inner: Any, texts: Sequence[str], batch_size: int = 64) -> None:
        import numpy as np

        self._inner, self._known = inner, {}
        unique = list(dict.fromkeys(texts))
        for start in range(0, len(unique), batch_size):
            chunk = unique[start:start + batch_size]
            self._known.update(zip(chunk, np.asarray(inner.embed_texts(chunk), dtype=np.float32)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_texts(self, texts: Sequence[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._known]
        fresh = dict(zip(missing, self._inner.embed_texts(missing))) if missing else {}
        return np.stack([self._known[t] if t in self._known else fresh[t] for t in texts]) if len(texts) else \
            self._inner.embed_texts(texts)


def query_texts(space: Space, queries: Sequence[Query], config: Any, empty_text: str) -> list[str]:
    """The texts the pipeline will embed for these queries that are known before it runs: the modification (or
    `empty_text`), the reference caption and caption+modification, each where the configuration searches with it
    (descriptions written by an LLM are embedded as they come)."""
    from cirgraph.agents.texts import baseline_query

    baseline = None if config.recompose else config.baseline_text
    with_modification = config.w_modification > 0 or baseline in ("modification", "caption+modification")
    with_caption = config.w_reference > 0 or baseline == "caption"
    texts: list[str] = []
    for query in queries:
        modification = query.modification if query.modification.strip() else empty_text
        names = space.captions.get(query.reference)
        caption = reference_caption(names) if names else None
        if with_modification or (baseline and not caption):  # without a caption every baseline is the modification
            texts.append(modification)
        if caption and with_caption:
            texts.append(caption)
        if caption and baseline == "caption+modification":
            texts.append(baseline_query({"caption": caption, "modification": modification}, baseline))
    return texts


def reference_caption(texts: list[str], limit: int = CAPTION_CHARS, n: int | None = 1) -> str:
    """An image's captions as one reference caption: the first `n` whole captions (default 1: one caption, as
    CIReVL captions the reference once; on CIRR dev, three joined captions drown the modification), joined while
    they fit in `limit` characters (the first is always kept whole)."""
    out = texts[0]
    for text in texts[1:n]:
        if len(out) + 1 + len(text) > limit:
            break
        out = f"{out} {text}"
    return out


def read_captions(path: Path | str) -> dict[str, list[str]]:
    """Captions by image name from a captions file (any format cirgraph.stores.captions reads), names without an
    image extension, so "dev-1-0-img0.png" and "dev-1-0-img0" are the same image."""
    from cirgraph.stores.captions import load_captions, strip_image_suffix

    captions: dict[str, list[str]] = {}
    for name, texts in load_captions(path).captions.items():
        captions.setdefault(strip_image_suffix(name), []).extend(texts)
    return captions


def build_space(settings: Settings, data: SplitData, *, images_dir: Path | None = None,
                captions_file: Path | None = None, embedder: Any = None, text_embedder: Any = None,
                progress: Progress | None = None) -> Space:
    """The gallery of one split part: image mode with `images_dir`, caption space with `captions_file` alone."""
    if images_dir is None and captions_file is None:
        raise InputError(f"{data.benchmark} {data.split}", "give an images folder (--images) or a captions file "
                                                            "(--captions) to search in")
    captions = read_captions(captions_file) if captions_file is not None else {}
    names = list(data.gallery) if data.gallery is not None else sorted(captions)
    key = {"benchmark": data.benchmark, "split": data.split, "category": data.category,
           "gallery": hash_key(sorted(names)), "captions": sha256_of(captions_file) if captions_file else None,
           "text_embedder": text_embedder.name if text_embedder is not None and captions else None,
           "images": str(Path(images_dir).absolute()) if images_dir is not None else None,
           "embedder": embedder.name if embedder is not None and images_dir is not None else None}
    mode = "images" if images_dir is not None else "captions"
    part = f"-{data.category}" if data.category else ""
    name = f"eval-{data.benchmark}-{data.split}{part}-{mode[0]}{hash_key(key)[:12]}"
    space = Space(mode=mode, gallery=None, captions=captions,  # type: ignore[arg-type]
                  info={"gallery": name, "kind": mode, "category": data.category, "key": key,
                        "captions_file": str(captions_file) if captions_file else None,
                        "images_dir": str(images_dir) if images_dir else None})
    if data.gallery is None:
        space.notes.append(f"{name}: gallery list unknown; the captions file's {len(names)} images are the gallery")
    _check_captions(space, data, names)
    if mode == "captions":
        _caption_gallery(settings, space, names, text_embedder, progress)
    else:
        _image_gallery(settings, space, data, names, Path(images_dir), embedder, text_embedder, progress)
    space.info["count"], space.info["has_captions"] = space.gallery.count(), space.gallery.has_captions
    if "hnsw" not in space.info:  # a reused gallery: the settings stored with it
        from cirgraph.stores.hnsw import stored_settings

        space.info["hnsw"] = stored_settings(space.gallery) if hasattr(space.gallery, "hnsw_collection") else {}
    return space


def _check_captions(space: Space, data: SplitData, names: list[str]) -> None:
    """List queries whose reference or targets have no caption, and gallery images without one."""
    if not space.captions:
        return
    space.missing_references = [q.id for q in data.queries if q.reference not in space.captions]
    space.missing_targets = [q.id for q in data.queries if any(t not in space.captions for t in q.ground_truths)]
    uncaptioned = sum(1 for n in names if n not in space.captions)
    where = f"{data.benchmark} {data.split}" + (f"/{data.category}" if data.category else "")
    if uncaptioned:
        space.notes.append(f"{where}: {uncaptioned} of {len(names)} gallery images have no caption")
    if space.missing_references or space.missing_targets:
        space.notes.append(f"{where}: {len(space.missing_references)} queries lack a reference caption, "
                           f"{len(space.missing_targets)} a target caption")


def _marker(settings: Settings, name: str) -> Path:
    return settings.home / "eval" / "spaces" / f"{name}.json"


def _is_built(settings: Settings, space: Space, gallery: Any) -> bool:
    path = _marker(settings, space.info["gallery"])
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("key") == space.info["key"] and marker.get("count") == gallery.count()


def _mark_built(settings: Settings, space: Space, gallery: Any) -> None:
    from cirgraph.evals.records import write_atomic

    marker = {"key": space.info["key"], "count": gallery.count()}
    write_atomic(_marker(settings, space.info["gallery"]), json.dumps(marker, indent=1) + "\n")


def _caption_gallery(settings: Settings, space: Space, names: list[str], text_embedder: Any,
                     progress: Progress | None) -> None:
    from cirgraph.clients import open_gallery
    from cirgraph.stores.captions import CaptionTable, import_captions
    from cirgraph.stores.hnsw import tune_gallery

    if text_embedder is None:
        raise InputError("caption space", "needs a text embedder (CIRGRAPH_TEXT_EMBEDDER)")
    table = CaptionTable(source=space.info["captions_file"],
                         captions={n: space.captions[n] for n in names if n in space.captions})
    if not table.captions:
        raise InputError(f"captions file {space.info['captions_file']}", "has a caption for none of the gallery's "
                                                                         f"{len(names)} images")
    gallery = open_gallery(settings, space.info["gallery"], text_embedder=text_embedder, create=True,
                           kind="captions")
    space.gallery, space.info["reused"] = gallery, _is_built(settings, space, gallery)
    if not space.info["reused"]:
        import_captions(gallery, table, text_embedder=text_embedder, prune=True, progress=progress)
        space.info["hnsw"] = tune_gallery(gallery)
        _mark_built(settings, space, gallery)


def _image_gallery(settings: Settings, space: Space, data: SplitData, names: list[str], images_dir: Path,
                   embedder: Any, text_embedder: Any, progress: Progress | None) -> None:
    from cirgraph.clients import open_gallery
    from cirgraph.stores.hnsw import tune_gallery
    from cirgraph.stores.indexer import Indexer

    if embedder is None:
        raise InputError("image mode", "needs an image-text embedder (CIRGRAPH_EMBEDDER)")
    links = _marker(settings, space.info["gallery"]).with_suffix("") / "images"
    missing = _link_files(space, data, names, images_dir, links)
    if missing:
        space.notes.append(f"{space.info['gallery']}: {len(missing)} of {len(names)} gallery images not found under "
                           f"{images_dir} (first: {', '.join(missing[:3])})")
    if not space.image_files:
        raise InputError(str(images_dir), f"holds none of the {len(names)} gallery images of {data.benchmark} "
                                          f"{data.split}")
    with_captions = text_embedder if space.captions else None
    gallery = open_gallery(settings, space.info["gallery"], embedder=embedder, text_embedder=with_captions,
                           create=True, kind="images")
    space.gallery, space.info["reused"] = gallery, _is_built(settings, space, gallery)
    if not space.info["reused"]:
        table = _table(space) if space.captions else None
        report = Indexer(gallery, embedder=embedder, text_embedder=with_captions,
                         progress=progress).index(links, captions=table, prune=True, follow_links=True)
        if report.duplicates:
            space.notes.append(f"{space.info['gallery']}: {len(report.duplicates)} gallery images duplicate "
                               "another's content and cannot be ranked apart")
        if report.failed:
            space.notes.append(f"{space.info['gallery']}: {len(report.failed)} images failed to index "
                               f"(first: {report.failed[0].path}: {report.failed[0].reason})")
        space.info["hnsw"] = tune_gallery(gallery)
        _mark_built(settings, space, gallery)


def _table(space: Space) -> CaptionTable:
    from cirgraph.stores.captions import CaptionTable

    return CaptionTable(source=str(space.info["captions_file"]),
                        captions={n: space.captions[n] for n in space.image_files if n in space.captions})


def _link_files(space: Space, data: SplitData, names: list[str], images_dir: Path, links: Path) -> list[str]:
    """Give every gallery image a file `<name><suffix>` in one folder (a link, or a copy where links fail), so the
    indexer sees exactly the split's gallery and every hit maps back to its name. Returns the names not found."""
    links.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in names:
        found = next((p for p in image_candidates(data, name, images_dir) if p.is_file()), None)
        if found is None:
            missing.append(name)
            continue
        link = links / f"{name}{found.suffix.lower()}"
        if link.is_symlink() and not link.exists():  # left pointing at a file that moved
            link.unlink()
        if not link.exists():
            try:
                os.symlink(found.absolute(), link)
            except OSError:
                shutil.copyfile(found, link)
        space.image_files[name] = found
        space.file_names[link.name] = name
    return missing
