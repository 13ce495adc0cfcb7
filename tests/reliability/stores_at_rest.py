"""What a gallery holds on disk, read after its writer is gone: item ids and uris, caption records, orphans."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoreState:
    items: dict[str, str | None]  # id -> uri
    captions: dict[str, tuple[str, str]]  # caption record id -> (item id, text)

    @property
    def orphans(self) -> int:
        """Caption records whose item has no record."""
        return sum(1 for item, _ in self.captions.values() if item not in self.items)

    def duplicate_uris(self) -> list[str]:
        return [uri for uri, n in Counter(self.items.values()).items() if n > 1 and uri is not None]

    def captions_per_item(self) -> Counter[str]:
        return Counter(item for item, _ in self.captions.values())


def read_store(home: Path, gallery: str) -> StoreState:
    """The gallery `gallery` of the embedded store under CIRGRAPH_HOME `home`; empty when there is none yet."""
    from cirgraph.stores.chroma import clear_client_cache, embedded_client, gallery_names, page_records
    from cirgraph.stores.gallery import Gallery

    path = home / "galleries" / "chroma"
    if not (path / "chroma.sqlite3").exists():
        return StoreState({}, {})
    try:
        client = embedded_client(path)
        if gallery not in gallery_names(client):
            return StoreState({}, {})
        g = Gallery(client, gallery)
        items = {i: uri for i, uri, _ in g.iter_items()}
        col = g.captions_collection
        rows = [] if col is None else page_records(col, "captions", ["metadatas", "documents"])
        captions = {r["id"]: (r["metadatas"]["item_id"], r["documents"]) for r in rows}
    finally:
        clear_client_cache()  # the next writer is another process, or this one through the CLI
    return StoreState(items, captions)
