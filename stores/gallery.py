"""The Chroma-backed gallery: image, caption and (caption-only) item collections behind the GalleryReader protocol.

An image gallery keeps one record per image in `{name}.images` (id = content hash) and one per caption in
`{name}.captions` (id = "{item_id}#{i}", the item's metadata copied so filters apply to captions too). A
caption-only gallery (e.g. CIRR names with imported captions) has no image embedder: its items are the names of
the captions file, one record each in `{name}.items`. Writes put captions before item records, so a killed run
leaves at worst captions without an item, which `sweep_orphans` removes; readers only look up captions of items.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cirgraph.errors import ConfigError, GalleryError
from cirgraph.stores import chroma
from cirgraph.stores.base import Item
from cirgraph.stores.chroma import Layout, chunks, get_records
from cirgraph.stores.search import FactSearch, query_vector  # noqa: F401 -- query_vector is part of this API
from cirgraph.stores.sharing import StoreWatch

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from cirgraph.stores.facts import GalleryFacts
    from cirgraph.tools.protocols import ImageTextEmbedder, TextEmbedder

_PLACEHOLDER = [1.0]  # the embedding of an item record in a caption-only gallery (Chroma requires one)


@dataclass(slots=True)
class NewItem:
    """An item to write: its record, and its captions with their embeddings."""

    id: str
    uri: str | None
    metadata: dict[str, Any]
    embedding: np.ndarray | None = None  # image embedding; None in a caption-only gallery
    captions: list[str] = field(default_factory=list)
    caption_embeddings: np.ndarray | None = None
    caption_source: str = "file"


class Gallery(FactSearch):
    """A named gallery in a Chroma store: implements cirgraph.stores.base.GalleryReader, plus the writes of indexing.

    `embedder` / `text_embedder`: a live embedder or a model reference; omitted, an existing gallery uses the model
    it was built with (loaded on first use). With `create=True` a missing gallery is created: an image gallery when
    an image embedder is given, else a caption-only one.
    """

    def __init__(self, client: ClientAPI, name: str, *, embedder: ImageTextEmbedder | str | None = None,
                 text_embedder: TextEmbedder | str | None = None, device: str = "cpu", create: bool = False,
                 max_pixels: int | None = None) -> None:
        self.client, self.name, self.layout = client, chroma.check_gallery_name(name), Layout(name)
        self._batch = client.get_max_batch_size()
        self._device, self._max_pixels = device, max_pixels
        # an embedded store may be written by other processes: reads follow them (cirgraph.stores.sharing)
        self._watch = StoreWatch.of(client)
        self._generation = self._watch.generation if self._watch is not None else 0
        self._reopen_lock = threading.Lock()
        # facts read once per state of the gallery (cirgraph.stores.facts): (key, facts), rebuilt after a change
        self._facts: tuple[Any, GalleryFacts] | None = None
        self._facts_lock = threading.Lock()
        self._writes = 0  # writes through this object (the change key of a server gallery)
        self._server_stamp: tuple[float, Any] = (-1e18, None)
        self._open(client, chroma.embedding_function("images", embedder, device),
                   chroma.embedding_function("captions", text_embedder, device), create=create)

    def _open(self, client: ClientAPI, image_ef: Any, text_ef: Any, *, create: bool) -> None:
        cols = chroma.open_gallery_collections(client, self.layout, image_ef, text_ef, create=create,
                                               max_pixels=self._max_pixels, device=self._device)
        self.client = client
        self._images, self._items, self._captions = cols.images, cols.items, cols.captions  # _items: caption-only
        self._image_ef, self._text_ef = cols.image_ef, cols.text_ef

    def _follow(self) -> None:
        """Before a read: reopen when another process changed the store since this gallery last looked."""
        if self._watch is None:
            return
        generation = self._watch.check(chroma.reopen_embedded)
        if generation != self._generation:
            with self._reopen_lock:
                if generation != self._generation:
                    self._open(self._watch.client, self._image_ef, self._text_ef, create=False)
                    self._generation = generation

    def _changed(self) -> None:
        """After a write: tell readers in other processes (and this one's kept facts)."""
        self._writes += 1
        self._server_stamp = (-1e18, None)  # the next key reads the counts after this write
        if self._watch is not None:
            self._watch.bump()

    # --- what the gallery is -------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """"images" (items are images) or "captions" (caption-only: items are names)."""
        return "images" if self._images is not None else "captions"

    @property
    def items_collection(self) -> Collection:
        """One record per item: the image collection, or the items collection of a caption-only gallery."""
        return self._images if self._images is not None else self._items

    @property
    def images_collection(self) -> Collection | None:
        """The multimodal image collection: it also answers Chroma's query_texts, query_images and query_uris."""
        return self._images

    @property
    def captions_collection(self) -> Collection | None:
        return self._captions

    @property
    def image_model(self) -> str | None:
        return self._image_ef.model if self._images is not None else None

    @property
    def text_model(self) -> str | None:
        return self._text_ef.model if self._text_ef is not None else None

    @property
    def image_embedder(self) -> ImageTextEmbedder:
        """The gallery's image-text embedder (loaded on first access)."""
        if self._images is None:
            raise ConfigError(f"gallery {self.name!r} is caption-only: it has no image-text embedder")
        return self._image_ef.embedder

    @property
    def text_embedder(self) -> TextEmbedder:
        """The gallery's caption text embedder (loaded on first access)."""
        if self._text_ef is None:
            raise ConfigError(f"gallery {self.name!r}: no caption text embedder was given (CIRGRAPH_TEXT_EMBEDDER)")
        return self._text_ef.embedder

    @property
    def has_images(self) -> bool:  # an image gallery with at least one image
        return self._images is not None and self.count() > 0

    @property
    def has_captions(self) -> bool:
        facts = self.facts(build=False)
        if facts is not None:
            return facts.caption_count > 0
        return self._captions is not None and self._guard("count", self._captions.count) > 0

    def count(self) -> int:
        facts = self.facts(build=False)  # kept facts answer without a round trip
        return facts.count if facts is not None else self._guard("count", self.items_collection.count)

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return chroma.guarded(self._what(what), fn, *args, **kwargs)

    def _what(self, what: str) -> str:  # names the gallery and the operation in errors
        return f"gallery {self.name!r}: {what}"

    # --- reads ---------------------------------------------------------------------------------------------

    def existing(self, ids: Sequence[str]) -> dict[str, str | None]:
        """id -> stored uri, for the ids that have an item record."""
        self._follow()
        return {r["id"]: r["uris"] for r in get_records(self.items_collection, self._what("get"), ["uris"], ids=ids)}

    def captions_of(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """id -> stored captions in order, for the ids that have any."""
        self._follow()
        return {i: [r["documents"] for r in rows] for i, rows in self._caption_rows(ids, ["documents"]).items()}

    def _caption_rows(self, ids: Sequence[str], include: list[str]) -> dict[str, list[dict]]:
        """id -> its caption records (with `include`), in caption order."""
        if self._captions is None or not ids:
            return {}
        rows: dict[str, list[dict]] = {}
        for r in get_records(self._captions, self._what("get captions"), ["metadatas", *include],
                             where_in=("item_id", ids)):
            rows.setdefault(r["metadatas"]["item_id"], []).append(r)
        return {i: sorted(rs, key=lambda r: r["metadatas"].get("caption_index", 0)) for i, rs in rows.items()}

    def iter_items(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """Every item as (id, uri, metadata), page by page."""
        self._follow()
        for r in chroma.page_records(self.items_collection, self._what("get"), ["uris", "metadatas"]):
            yield r["id"], r["uris"], r["metadatas"] or {}

    def get(self, ids: Sequence[str]) -> dict[str, Item]:
        facts = self.facts(build=False)
        if facts is not None:
            return {i: Item(id=i, uri=facts.uris[r], captions=facts.captions_of(i), metadata=dict(facts.metadata[r]))
                    for i in dict.fromkeys(ids) if (r := facts.row.get(i)) is not None}
        records = get_records(self.items_collection, self._what("get"), ["uris", "metadatas"], ids=ids)
        captions = self.captions_of([r["id"] for r in records])
        return {r["id"]: Item(id=r["id"], uri=r["uris"], captions=captions.get(r["id"], []),
                              metadata=dict(r["metadatas"] or {})) for r in records}

    def image_embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        facts = self.facts(build=False)
        if self._images is None:
            return {}
        if facts is not None and facts.images is not None:
            mat = facts.images.matrix
            return {i: mat[r] for i in ids if (r := facts.row.get(i)) is not None}
        records = get_records(self._images, self._what("get"), ["embeddings"], ids=ids)
        return {r["id"]: np.asarray(r["embeddings"], dtype=np.float32) for r in records}

    def caption_embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        facts = self.facts(build=False)
        if facts is not None and facts.captions is not None:
            mat, out = facts.captions.matrix, {}
            for i in ids:
                r = facts.row.get(i)
                if r is not None and (rows := facts.caption_rows(r)):
                    out[i] = mat[rows.start:rows.stop]
            return out
        rows = self._caption_rows(ids, ["embeddings"])
        return {i: np.asarray([r["embeddings"] for r in rs], dtype=np.float32) for i, rs in rows.items()}

    # --- writes (used by the indexer) ----------------------------------------------------------------------

    def add(self, items: Sequence[NewItem]) -> None:
        """Write items: their captions first (replacing any stale ones), then the item records (upserts)."""
        if not items:
            return
        if any(it.captions for it in items):
            self.replace_captions(items)
        for chunk in chunks(list(items), self._batch):
            kwargs: dict[str, Any] = {"ids": [it.id for it in chunk], "metadatas": [it.metadata for it in chunk],
                                      "embeddings": [_PLACEHOLDER] * len(chunk) if self._images is None else
                                      np.asarray([it.embedding for it in chunk], dtype=np.float32)}
            if all(it.uri for it in chunk):
                kwargs["uris"] = [it.uri for it in chunk]
            self._guard("write items", self.items_collection.upsert, **kwargs)
        self._changed()

    def replace_captions(self, items: Sequence[NewItem]) -> None:
        """Make the stored captions of `items` exactly theirs (item records are not touched)."""
        if self._captions is not None:
            chroma.delete_where_in(self._captions, self._what("delete captions"), "item_id", [it.id for it in items])
        rows = []
        for it in items:
            embeddings = [] if it.caption_embeddings is None else list(it.caption_embeddings)
            if len(embeddings) != len(it.captions):
                raise GalleryError(f"item {it.id!r}: {len(it.captions)} captions need as many embeddings")
            rows += [(f"{it.id}#{i}", text, emb, {**it.metadata, "item_id": it.id, "caption_index": i,
                                                  "caption_source": it.caption_source})
                     for i, (text, emb) in enumerate(zip(it.captions, embeddings))]
        col = self._ensure_captions() if rows else None
        for chunk in chunks(rows, self._batch):
            self._guard("write captions", col.upsert, ids=[r[0] for r in chunk], documents=[r[1] for r in chunk],
                        embeddings=np.asarray([r[2] for r in chunk], dtype=np.float32),
                        metadatas=[r[3] for r in chunk])
        self._changed()

    def _ensure_captions(self) -> Collection:
        if self._captions is None:
            self.text_embedder  # noqa: B018 -- ConfigError when there is none
            self._captions = chroma.create_collection(self.client, self.layout.captions, "captions", self._text_ef)
        return self._captions

    def update_uris(self, uris: Mapping[str, str]) -> None:
        """Point existing items at new files (a moved file keeps its id and embedding)."""
        for chunk in chunks(list(uris.items()), self._batch):
            self._guard("update uris", self.items_collection.update, ids=[i for i, _ in chunk],
                        uris=[u for _, u in chunk])
        self._changed()

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items: the item records first, then their captions (an interruption leaves orphans to sweep)."""
        for chunk in chunks(list(dict.fromkeys(ids))):
            self._guard("delete items", self.items_collection.delete, ids=list(chunk))
        if self._captions is not None:
            chroma.delete_where_in(self._captions, self._what("delete captions"), "item_id", ids)
        self._changed()

    def sweep_orphans(self) -> int:
        """Delete caption records whose item has no record (left by an interrupted write); return how many."""
        if self._captions is None:
            return 0
        per_item = Counter(r["metadatas"]["item_id"]
                           for r in chroma.page_records(self._captions, self._what("get captions"), ["metadatas"]))
        present = self.existing(list(per_item))
        orphans = [i for i in per_item if i not in present]
        chroma.delete_where_in(self._captions, self._what("delete captions"), "item_id", orphans)
        if orphans:
            self._changed()
        return sum(per_item[i] for i in orphans)

    def __repr__(self) -> str:
        return f"Gallery({self.name!r}, kind={self.kind!r}, image_model={self.image_model!r})"
