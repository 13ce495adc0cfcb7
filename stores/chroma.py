"""Chroma clients and the layout of a gallery's collections.

Embedded (`PersistentClient` under `<home>/galleries/chroma`) by default; a Chroma server (`chroma run`) when
CIRGRAPH_CHROMA_HOST is set. Telemetry is off. chromadb is imported inside the functions, so importing this module
is cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirgraph.errors import GalleryError, InputError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from cirgraph.settings import Settings

# HNSW index of every gallery collection, chosen with benchmarks/bench_hnsw.py on real embeddings (MiniLM, 384-d):
# CIRR's 17,390 captions and 100k real-shaped vectors (34,917 annotation texts, then means of two), 200 held-out
# CIRR modification texts as queries, recall@50 against exact search, 2 busy cores. At 100k, M=32 /
# ef_construction=200 reaches 0.955 / 0.982 / 0.991 at ef_search 50 / 100 / 200 (p50 1.5 / 2.0 / 2.2 ms) and builds
# at 8.4 s per 10k vectors; M=16 / 100 (Chroma's default) needs ef_search 400 for 0.982 (3.4 ms), builds at 6.0 s;
# M=16 / 200 builds at 9.9 s for 0.989 at 200. On CIRR's captions M=32 / 200 reaches 0.985 at ef_search 100.
# ef_search 200 is the start; `cirgraph index` then measures the gallery's own (cirgraph.stores.hnsw). The old
# setting (ef_search 4000) came from uniform random 512-d vectors, HNSW's worst case; galleries built with it keep
# it until they are indexed again. The space is fixed at creation; ef_search can be changed with collection.modify.
GALLERY_HNSW: dict[str, Any] = {"space": "cosine", "max_neighbors": 32, "ef_construction": 200, "ef_search": 200}

# A gallery name becomes a prefix of Chroma collection names ("{name}.images"): letters, digits, "_" and "-".
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
KIND_KEY = "cirgraph_kind"  # collection metadata: "images", "captions" or "items"


@dataclass(frozen=True, slots=True)
class Layout:
    """Collection names of one gallery.

    `images`: one record per image (id = content hash, embedding, uri, metadata), multimodal (Chroma can embed
    query texts, images and uris with the gallery's own model). `captions`: one record per caption
    (id = "{item_id}#{i}", document = caption, item metadata copied so filters apply). `items`: in a caption-only
    gallery, one record per named item (id = the name, a placeholder 1-d embedding, metadata). Each collection's
    metadata names its role under KIND_KEY.
    """

    name: str

    @property
    def images(self) -> str:
        return f"{self.name}.images"

    @property
    def captions(self) -> str:
        return f"{self.name}.captions"

    @property
    def items(self) -> str:
        return f"{self.name}.items"


def check_gallery_name(name: str) -> str:
    """The name itself, or InputError saying what a gallery name may contain."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"gallery name {name!r}", "use 1-64 letters, digits, '_' or '-', starting and ending with a "
                                                   "letter or digit")
    return name


def chroma_settings():
    """chromadb client settings: no telemetry."""
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


def embedded_client(path: str | Path) -> ClientAPI:
    """A PersistentClient on `path` (created if missing). Chroma caches one client per path in a process."""
    import chromadb

    target = Path(path).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(target), settings=chroma_settings())
    except OSError as exc:
        raise GalleryError(f"gallery store {target}: {exc.strerror or exc}") from None
    except Exception as exc:  # chromadb raises ValueError/RuntimeError for a locked or incompatible store
        raise GalleryError(f"gallery store {target}: cannot be opened ({exc})") from None


def server_client(host: str, port: int) -> ClientAPI:
    """An HttpClient to a Chroma server; GalleryError when it does not answer."""
    import chromadb

    try:
        client = chromadb.HttpClient(host=host, port=port, settings=chroma_settings())
        client.heartbeat()
        return client
    except Exception as exc:
        raise GalleryError(f"Chroma server at http://{host}:{port} is unreachable: {exc}") from None


def make_client(settings: Settings) -> ClientAPI:
    """The client `settings` ask for: the configured Chroma server, else the embedded store under home."""
    if settings.uses_chroma_server:
        return server_client(settings.chroma_host, settings.chroma_port)
    return embedded_client(settings.galleries_dir / "chroma")


def reopen_embedded(path: str | Path) -> ClientAPI:
    """A new client on the embedded store at `path`, its vector indexes read afresh from disk (Chroma caches one
    system per path: only that one is stopped and forgotten, other stores of the process keep theirs)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(Path(path).expanduser())
    system = SharedSystemClient._identifier_to_system.pop(key, None)
    SharedSystemClient._identifier_to_refcount.pop(key, None)
    if system is not None:
        try:
            system.stop()
        except Exception:  # a system that cannot stop cleanly is replaced all the same
            pass
    return embedded_client(path)


def clear_client_cache() -> None:
    """Forget Chroma's per-path client cache (tests, and reopening a store after it was changed on disk)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def collection_names(client: ClientAPI) -> set[str]:
    """Names of every collection in the store."""
    try:
        return {c if isinstance(c, str) else c.name for c in client.list_collections()}
    except Exception as exc:
        raise GalleryError(f"cannot list the gallery store's collections: {exc}") from None


def drop_gallery(client: ClientAPI, name: str) -> list[str]:
    """Delete every collection of gallery `name`; the names deleted."""
    layout, present = Layout(name), collection_names(client)
    gone = [c for c in (layout.images, layout.captions, layout.items) if c in present]
    for collection in gone:
        client.delete_collection(collection)
    return gone


def gallery_names(client: ClientAPI) -> list[str]:
    """Galleries in the store (names with an images or items collection)."""
    names = collection_names(client)
    return sorted({n.rsplit(".", 1)[0] for n in names if n.endswith((".images", ".items"))})


def model_ref(ref: str) -> str:
    """A model reference as stored with a collection: a local folder as an absolute path (reopened from anywhere)."""
    return str(Path(ref).expanduser().resolve()) if Path(ref).expanduser().exists() else ref


def embedding_function(kind: str, embedder: Any, device: str) -> Any:
    """Our function for the "images" (image-text) or "captions" (text) space, from a live embedder or a model
    reference; None stays None."""
    from cirgraph.stores.embedding_function import ImageTextEmbeddingFunction, TextEmbeddingFunction

    if embedder is None:
        return None
    cls = ImageTextEmbeddingFunction if kind == "images" else TextEmbeddingFunction
    if isinstance(embedder, str):
        return cls(model_ref(embedder), device=device)
    return cls(model_ref(embedder.name), device=device, embedder=embedder)


def _loader(kind: str, max_pixels: int | None):
    from cirgraph.stores.embedding_function import SafeImageLoader

    return SafeImageLoader(max_pixels) if kind == "images" else None


def create_collection(client: ClientAPI, name: str, kind: str, ef: Any, max_pixels: int | None = None) -> Collection:
    """Create (or, after a concurrent create, get) a gallery collection with our HNSW settings and embedding function.

    `kind` is "images", "captions" or "items"; items collections get an embedding function that refuses to embed,
    so Chroma's default one (which downloads a model) is never used.
    """
    from cirgraph.stores.embedding_function import NoEmbeddingFunction

    try:
        return client.get_or_create_collection(
            name, configuration={"hnsw": dict(GALLERY_HNSW)}, metadata={KIND_KEY: kind, "cirgraph_schema": 1},
            embedding_function=ef if ef is not None else NoEmbeddingFunction(), data_loader=_loader(kind, max_pixels),
        )
    except Exception as exc:
        raise GalleryError(f"collection {name!r}: cannot be created: {exc}") from None


def open_collection(client: ClientAPI, name: str, kind: str, ef: Any, max_pixels: int | None = None,
                    device: str = "cpu") -> tuple[Collection, Any]:
    """(collection, embedding function) of an existing gallery collection: `ef` when its model matches the stored
    one, else the stored function rebuilt from its configuration.

    GalleryError when the collection was built with another model (its vectors would live in another space).
    """
    from cirgraph.stores.embedding_function import (ImageTextEmbeddingFunction, NoEmbeddingFunction,
                                                    TextEmbeddingFunction)

    expected = {"images": ImageTextEmbeddingFunction, "captions": TextEmbeddingFunction,
                "items": NoEmbeddingFunction}[kind]
    try:
        persisted = client.get_collection(name, embedding_function=None).configuration_json.get("embedding_function")
    except Exception as exc:
        raise GalleryError(f"collection {name!r}: cannot be opened: {exc}") from None
    if not persisted or persisted.get("name") != expected.name():
        raise GalleryError(f"collection {name!r} was not created by cirgraph (embedding function "
                           f"{(persisted or {}).get('name')!r}, expected {expected.name()!r})")
    stored = persisted.get("config") or {}
    if ef is None:
        ef = expected.build_from_config({**stored, "device": device}) if stored else expected()
    elif stored.get("model") != ef.model:
        raise GalleryError(f"collection {name!r} was indexed with model {stored.get('model')!r}, not {ef.model!r}: "
                           "query it with the same model, or index a new gallery")
    try:
        return client.get_collection(name, embedding_function=ef, data_loader=_loader(kind, max_pixels)), ef
    except Exception as exc:
        raise GalleryError(f"collection {name!r}: cannot be opened: {exc}") from None


@dataclass(slots=True)
class GalleryCollections:
    """A gallery's collections (None where absent) and the embedding functions of its image and caption spaces."""

    images: Any = None
    items: Any = None
    captions: Any = None
    image_ef: Any = None
    text_ef: Any = None


def open_gallery_collections(client: ClientAPI, layout: Layout, image_ef: Any, text_ef: Any, *, create: bool,
                             max_pixels: int | None, device: str) -> GalleryCollections:
    """The collections of a gallery; a missing gallery is created on request.

    A new gallery is an image gallery when `image_ef` is given, else caption-only (needs `text_ef`); its caption
    collection is created with the first caption.
    """
    from cirgraph.errors import ConfigError

    existing = collection_names(client)
    out = GalleryCollections(image_ef=image_ef, text_ef=text_ef)
    if layout.images in existing:
        out.images, out.image_ef = open_collection(client, layout.images, "images", image_ef, max_pixels, device)
    elif layout.items in existing:
        out.items = open_collection(client, layout.items, "items", None)[0]
    elif not create:
        raise GalleryError(f"gallery {layout.name!r} does not exist (galleries in the store: "
                           f"{', '.join(gallery_names(client)) or 'none'}); create it with `cirgraph index`")
    elif image_ef is not None:
        out.images = create_collection(client, layout.images, "images", image_ef, max_pixels)
    elif text_ef is not None:
        out.items = create_collection(client, layout.items, "items", None)
    else:
        raise ConfigError(f"gallery {layout.name!r}: creating a gallery needs an image-text embedder (image "
                          "gallery) or a text embedder (caption-only gallery)")
    if layout.captions in existing:
        out.captions, out.text_ef = open_collection(client, layout.captions, "captions", text_ef, device=device)
    return out


# --- batched record access: Chroma calls in chunks, failures as GalleryError naming the operation ---------------

ID_CHUNK = 500  # ids per get() call or `$in` filter


def guarded(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a Chroma call; its failures become GalleryError naming `what` (our own errors pass through)."""
    from cirgraph.errors import CirgraphError

    try:
        return fn(*args, **kwargs)
    except CirgraphError:
        raise
    except Exception as exc:
        raise GalleryError(f"{what} failed: {exc}") from None


def chunks(seq: Any, size: int = ID_CHUNK) -> Any:
    """Consecutive slices of `seq` of at most `size` elements."""
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def get_records(col: Collection, what: str, include: list[str], *, ids: Any = None, where_in: tuple | None = None,
                ) -> list[dict[str, Any]]:
    """Records by ids, or whose metadata key is in a list of values (`where_in=(key, values)`), as dicts."""
    keys = list(dict.fromkeys(ids if ids is not None else where_in[1]))
    out: list[dict[str, Any]] = []
    for chunk in chunks(keys):
        selector = {"ids": list(chunk)} if ids is not None else {"where": {where_in[0]: {"$in": list(chunk)}}}
        res = guarded(what, col.get, include=include, **selector)
        out.extend(_rows(res, include))
    return out


def page_records(col: Collection, what: str, include: list[str], page: int = 2000) -> Any:
    """Every record of a collection, page by page, as dicts."""
    offset = 0
    while True:
        res = guarded(what, col.get, include=include, limit=page, offset=offset)
        if not res["ids"]:
            return
        yield from _rows(res, include)
        offset += len(res["ids"])


def delete_where_in(col: Collection, what: str, key: str, values: Any) -> None:
    """Delete the records whose metadata `key` is one of `values`."""
    for chunk in chunks(list(dict.fromkeys(values))):
        guarded(what, col.delete, where={key: {"$in": list(chunk)}})


def _rows(res: Any, include: list[str]) -> list[dict[str, Any]]:
    n = len(res["ids"])
    columns = {name: res.get(name) if res.get(name) is not None else [None] * n for name in include}
    return [{"id": res["ids"][i], **{name: columns[name][i] for name in include}} for i in range(n)]
