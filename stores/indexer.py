"""Indexing a folder (or one file) of images, and caption files, into a gallery: idempotent and resumable.

Ids are content hashes, so indexing twice adds nothing and a killed run resumes where it stopped: each run first
sweeps orphan captions (written just before a kill, without their item), then per batch reads, hashes and decodes
files and turns new images into model inputs (in background threads, overlapping the model's run on the batch
before), skips what is stored, embeds the rest, and writes captions before item records. Duplicate content is one
item; a known file at a new path is a move (its uri is updated); `prune` removes items whose files under the
indexed path are gone. Bad files are reported, never half-written.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirgraph.errors import GalleryError, ImageError, InputError, ModelNotFoundError
from cirgraph.stores.captions import CaptionTable, embed_captions, match_names, name_keys
from cirgraph.stores.gallery import Gallery, NewItem
from cirgraph.stores.scan import Failure, IndexReport, Scan, clean_metadata, is_under, same_content, scan_path
from cirgraph.tools.images import DEFAULT_MAX_PIXELS, content_hash, decode_image, read_image_bytes

if TYPE_CHECKING:
    from PIL.Image import Image

    from cirgraph.tools.protocols import ChatModel

# The instruction given with each image when a vision model captions the gallery (prompts/templates/caption).
CAPTION_PROMPT = ("caption", "gallery")
# Decoded images are shrunk to this shorter side before embedding or captioning: image-text models take 224-512 px
# inputs, and resizing a full-size photo in the model's preprocessor (on the critical path) costs more than the model.
SHORT_SIDE = 640
_MISSING = object()


@dataclass(slots=True)
class _File:
    """One file as prepared in the background: hashed, and decoded when it must be embedded or captioned."""

    path: Path
    id: str = ""
    size: int = 0
    image: Image | None = None
    error: str | None = None
    stored: Any = _MISSING  # the stored uri when the id already has an item record
    size_wh: tuple[int, int] = (0, 0)  # decoded size, before shrinking for the model
    prepared: Any = None  # (the batch's prepared model inputs, this file's row) when prepared in the background


class Indexer:
    """Writes images and captions into a gallery with its embedders (or the ones given) and an optional captioner."""

    def __init__(self, gallery: Gallery, *, embedder: Any = None, text_embedder: Any = None,
                 captioner: ChatModel | None = None, batch_size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_concurrency: int = 4, short_side: int | None = SHORT_SIDE,
                 progress: Callable[[int, int], None] | None = None) -> None:
        if batch_size < 1:
            raise InputError("batch_size", f"must be at least 1, got {batch_size}")
        self.short_side = short_side
        self.gallery, self.captioner, self.batch_size = gallery, captioner, batch_size
        self._embedder, self._text_embedder = embedder, text_embedder
        self.max_pixels, self.max_concurrency, self.progress = max_pixels, max_concurrency, progress
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = self.gallery.image_embedder
        return self._embedder

    @property
    def text_embedder(self) -> Any:
        if self._text_embedder is None:
            self._text_embedder = self.gallery.text_embedder
        return self._text_embedder

    # --- images --------------------------------------------------------------------------------------------

    def index(self, path: str | os.PathLike | Scan, *, captions: CaptionTable | None = None, prune: bool = False,
              metadata: Mapping[str, Any] | None = None, follow_links: bool = False) -> IndexReport:
        """Index the images under `path` (or an earlier scan of it), with captions from `captions` (matched by file
        name, with or without extension, or path under the folder) or else from the captioner; `metadata` is added
        to every new item. Links out of a folder are skipped (counted in `links_outside`) unless `follow_links`."""
        scan = path if isinstance(path, Scan) else scan_path(path, follow_links=follow_links)
        report = IndexReport(ignored=scan.ignored, failed=list(scan.failed), links_outside=len(scan.outside))
        extra = clean_metadata(metadata or {})
        file_captions = self._match_files(captions, scan, report) if captions is not None else {}
        self.embedder  # noqa: B018 -- load the models now: a missing model is fatal before anything is written
        if file_captions or self.captioner is not None:
            self.text_embedder  # noqa: B018
        report.orphans_removed = self.gallery.sweep_orphans()
        seen: dict[str, str] = {}
        batches = [scan.files[i:i + self.batch_size] for i in range(0, len(scan.files), self.batch_size)]
        done = 0
        try:
            with ThreadPoolExecutor(max_workers=1) as prefetch, ThreadPoolExecutor(max_workers=4) as readers:
                pending = prefetch.submit(self._prepare, batches[0], readers)
                for i in range(len(batches)):  # batch i is written while batch i + 1 is read and decoded
                    files = pending.result()
                    if i + 1 < len(batches):
                        pending = prefetch.submit(self._prepare, batches[i + 1], readers)
                    self._write_batch(files, seen, file_captions, extra, report)
                    done += len(files)
                    if self.progress:
                        self.progress(done, len(scan.files))
        finally:
            self._close_loop()
        if prune:
            self._prune(scan, set(seen), report)
        report.total = self.gallery.count()
        return report

    def _match_files(self, table: CaptionTable, scan: Scan, report: IndexReport) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        for f in scan.files:
            for key in name_keys(f, scan.root if scan.root.is_dir() else None):
                keys.setdefault(key, []).append(str(f))
        matched, report.unknown_caption_names = match_names(table, keys)
        if not matched:
            raise InputError(f"captions file {table.source}", f"none of its {len(table)} names matches a file "
                                                              f"under {scan.root} (first: {list(table.captions)[:3]})")
        return matched

    def _prepare(self, paths: Sequence[Path], readers: ThreadPoolExecutor) -> list[_File]:
        """Read and hash files, look their ids up, and decode those that must be embedded or captioned."""
        files = list(readers.map(self._read, paths))
        stored = self.gallery.existing([f.id for f in files if f.id])
        for f in files:
            f.stored = stored.get(f.id, _MISSING)
        uncaptioned = set()
        if self.captioner is not None:
            have = self.gallery.captions_of([f.id for f in files if f.stored is not _MISSING])
            uncaptioned = {f.id for f in files if f.stored is not _MISSING and f.id not in have}
        files = list(readers.map(lambda f: self._decode(f, f.stored is _MISSING or f.id in uncaptioned), files))
        self._prepare_inputs([f for f in files if f.image is not None and f.stored is _MISSING])
        return files

    def _prepare_inputs(self, files: list[_File]) -> None:
        """Resize and normalise new images for the model here, in the background, when the embedder can do that
        apart from its forward pass; if it fails, the batch is embedded from its images and bad files are named."""
        prepare = getattr(self.embedder, "prepare_images", None)
        if prepare is None or not hasattr(self.embedder, "embed_prepared") or not files:
            return
        try:
            prepared = prepare([f.image for f in files])
        except Exception:  # _embed_images retries from the images and reports the offending file
            return
        for row, f in enumerate(files):
            f.prepared = (prepared, row)

    def _read(self, path: Path) -> _File:
        f = _File(path=path)
        try:
            data = read_image_bytes(path)
            f.id, f.size, f.image = content_hash(data), len(data), data  # bytes kept until decoded
        except ImageError as exc:
            f.error = exc.reason
        return f

    def _decode(self, f: _File, needed: bool) -> _File:
        """Decode (in a background thread) and shrink to `short_side`, so the model's own resize is cheap."""
        data, f.image = f.image, None
        if needed and f.error is None:
            try:
                img = decode_image(data, name=str(f.path), max_pixels=self.max_pixels)
            except ImageError as exc:
                f.error = exc.reason
                return f
            f.size_wh = img.size
            if self.short_side and min(img.size) > self.short_side:
                from PIL import Image as PILImage

                scale = self.short_side / min(img.size)
                img = img.resize((round(img.width * scale), round(img.height * scale)),
                                 PILImage.Resampling.BICUBIC, reducing_gap=2.0)
            f.image = img
        return f

    def _classify(self, f: _File, seen: dict[str, str], report: IndexReport, moves: dict[str, str]) -> str:
        """"new" (to embed), "stored" (already indexed here, or moved here) or "duplicate" (counted as skipped)."""
        uri = str(f.path)
        if f.id in seen:
            report.skipped += 1
            report.duplicates.append({"path": uri, "duplicate_of": seen[f.id]})
            return "duplicate"
        seen[f.id] = uri
        if f.stored is _MISSING:
            return "new"
        if f.stored != uri and same_content(f.stored, f.id):
            report.skipped += 1
            report.duplicates.append({"path": uri, "duplicate_of": f.stored})
            return "duplicate"
        if f.stored != uri:
            moves[f.id] = uri
            report.moved += 1
        else:
            report.skipped += 1
        return "stored"

    def _write_batch(self, files: list[_File], seen: dict[str, str], file_captions: dict[str, list[str]],
                     metadata: dict[str, Any], report: IndexReport) -> None:
        new, existing, moves = [], [], {}
        for f in files:
            if f.error is not None:
                report.failed.append(Failure(str(f.path), f.error))
                continue
            kind = self._classify(f, seen, report, moves)
            (new if kind == "new" else existing if kind == "stored" else []).append(f)
        new = self._embed_images(new, report)
        items = [NewItem(id=f.id, uri=str(f.path), embedding=emb, metadata={
            **metadata, "item_id": f.id, "sha256": f.id, "file_name": f.path.name, "bytes": f.size,
            "width": f.size_wh[0], "height": f.size_wh[1]}) for f, emb in new]
        self._attach_captions(items, [f for f, _ in new], file_captions, report)
        refresh = self._refreshed_captions(existing, file_captions, report)
        self.gallery.add(items)
        self.gallery.replace_captions(refresh)
        self.gallery.update_uris(moves)
        report.added += len(items)
        report.updated += len(refresh)

    def _embed_images(self, files: list[_File], report: IndexReport) -> list[tuple[_File, Any]]:
        """Embed a batch; if the model fails on it, embed one by one so only the offending files fail."""
        if not files:
            return []
        try:
            return list(zip(files, self._embed(files)))
        except (GalleryError, ModelNotFoundError):
            raise
        except Exception as exc:
            if len(files) == 1:
                report.failed.append(Failure(str(files[0].path), f"the embedder failed on this image ({exc})"))
                return []
            out = [pair for f in files for pair in self._embed_images([f], report)]
            if not out:  # every image failed alone too: the model is broken, not the files
                raise
            return out

    def _embed(self, files: list[_File]) -> Any:
        """Embed from the inputs prepared in the background where every file has them, else from the images."""
        batch = files[0].prepared[0] if files[0].prepared else None
        if batch is not None and all(f.prepared and f.prepared[0] is batch for f in files):
            rows = [f.prepared[1] for f in files]
            return self.embedder.embed_prepared(batch if rows == list(range(len(batch))) else batch.take(rows))
        return self.embedder.embed_images([f.image for f in files])

    def _attach_captions(self, items: list[NewItem], files: list[_File], file_captions: dict[str, list[str]],
                         report: IndexReport) -> None:
        """Captions of new items: from the captions file, else from the captioner; then embed them."""
        for item, f in zip(items, files):
            item.captions = list(file_captions.get(str(f.path), []))
        todo = [(item, f) for item, f in zip(items, files) if not item.captions]
        self._caption_with_model(todo, report)
        self._embed_captions(items, report)

    def _refreshed_captions(self, files: list[_File], file_captions: dict[str, list[str]],
                            report: IndexReport) -> list[NewItem]:
        """Existing items whose captions change: the captions file differs, or the captioner fills missing ones."""
        wanted = {f.id: (f, file_captions[str(f.path)]) for f in files if str(f.path) in file_captions}
        todo = [f for f in files if f.image is not None and f.id not in wanted]  # decoded: uncaptioned, captioner on
        if not wanted and not todo:
            return []
        stored = self.gallery.captions_of(list(wanted))
        meta = self.gallery.get([*wanted, *(f.id for f in todo)])
        items = [NewItem(id=i, uri=None, metadata=meta[i].metadata, captions=list(texts))
                 for i, (f, texts) in wanted.items() if stored.get(i) != texts and i in meta]
        model_items = [NewItem(id=f.id, uri=None, metadata=meta[f.id].metadata, caption_source="model")
                       for f in todo if f.id in meta]
        self._caption_with_model(list(zip(model_items, todo)), report)
        items += [it for it in model_items if it.captions]
        self._embed_captions(items, report)
        return items

    def _caption_with_model(self, todo: list[tuple[NewItem, _File]], report: IndexReport) -> None:
        if self.captioner is None or not todo:
            return
        from cirgraph.prompts.loader import render
        from cirgraph.tools.messages import Message

        prompt = render(*CAPTION_PROMPT)

        async def caption_all() -> list[Any]:
            sem = asyncio.Semaphore(self.max_concurrency)

            async def one(img: Image) -> str:
                async with sem:
                    return await self.captioner.complete([Message.user(img, prompt.text)], max_tokens=prompt.max_tokens)

            return await asyncio.gather(*(one(f.image) for _, f in todo), return_exceptions=True)

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        for (item, f), reply in zip(todo, self._loop.run_until_complete(caption_all())):
            text = reply.strip() if isinstance(reply, str) else ""
            if text:
                item.captions, item.caption_source = [text], "model"
            else:
                reason = f"captioning failed: {reply}" if isinstance(reply, BaseException) else "empty caption"
                report.caption_failures.append(Failure(str(f.path), reason))

    def _embed_captions(self, items: list[NewItem], report: IndexReport) -> None:
        report.captions += embed_captions(items, self.text_embedder) if any(it.captions for it in items) else 0

    def _prune(self, scan: Scan, seen: set[str], report: IndexReport) -> None:
        """Remove items whose file under the indexed path is gone (or now holds other content)."""
        failed = {f.path for f in report.failed}
        root = str(scan.root)
        gone = [i for i, uri, _ in self.gallery.iter_items()
                if i not in seen and uri and is_under(uri, root) and uri not in failed]
        self.gallery.delete(gone)
        report.pruned = len(gone)

    def _close_loop(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
