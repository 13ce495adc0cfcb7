"""Caption files: image name -> one or more captions, from JSON, JSON Lines or CSV, and matching names to files.

Accepted layouts (names may carry an image extension or not):
- JSON list of objects, e.g. CIRR's `[{"candidate": "dev-1032-0-img0", "captions": ["...", "..."]}]` (name key:
  candidate, name, image, image_name, file, file_name, filename, id; captions key: captions or caption, a string
  or a list of strings);
- JSON object `{"name": "caption" | ["caption", ...]}`;
- JSON Lines (.jsonl), one object per line as in the list form;
- CSV/TSV with a header: a name column (as above) and one or more columns starting with "caption"; several rows
  may name the same image.
The whole file is validated before anything is written: a bad file is one CaptionFileError naming the file, the
line (or entry) and the reason. `import_captions` writes a table without images: into a caption-only gallery (one
item per name, the names as ids) or onto the stored items of an image gallery, matched by file name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cirgraph.errors import InputError
from cirgraph.tools.images import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from cirgraph.stores.gallery import Gallery, NewItem
    from cirgraph.stores.scan import IndexReport
    from cirgraph.tools.protocols import TextEmbedder

NAME_KEYS = ("candidate", "name", "image", "image_name", "file", "file_name", "filename", "id")
CAPTION_KEYS = ("captions", "caption")


class CaptionFileError(InputError):
    """A captions file that cannot be used; the message names the file, the place and the reason."""


@dataclass(slots=True)
class CaptionTable:
    """Captions by image name, in file order, and the file they came from."""

    source: str
    captions: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captions)

    def add(self, name: str, texts: Iterable[str]) -> None:
        self.captions.setdefault(name, []).extend(texts)


def _fail(path: Path, where: str, reason: str) -> CaptionFileError:
    return CaptionFileError(f"captions file {path}", f"{where}: {reason}")


def _texts(value: Any, path: Path, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise _fail(path, where, "captions must be a non-empty string or list of strings")
    for text in values:
        if not isinstance(text, str) or not text.strip():
            raise _fail(path, where, f"caption {text!r} is not a non-empty string")
    return [t.strip() for t in values]


def _entry(obj: Any, path: Path, where: str) -> tuple[str, list[str]]:
    """One {name-key: ..., captions-key: ...} object -> (name, captions)."""
    if not isinstance(obj, dict):
        raise _fail(path, where, f"expected an object, got {type(obj).__name__}")
    name_key = next((k for k in NAME_KEYS if k in obj), None)
    cap_key = next((k for k in CAPTION_KEYS if k in obj), None)
    if name_key is None or cap_key is None:
        raise _fail(path, where, f"needs a name key ({'/'.join(NAME_KEYS)}) and a captions key "
                                 f"({'/'.join(CAPTION_KEYS)}); found {sorted(obj)[:6]}")
    name = obj[name_key]
    if not isinstance(name, (str, int)) or not str(name).strip():
        raise _fail(path, where, f"name {name!r} is not a non-empty string")
    return str(name).strip(), _texts(obj[cap_key], path, where)


def _parse_json(path: Path, text: str, table: CaptionTable) -> None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"line {exc.lineno} column {exc.colno}", f"invalid JSON ({exc.msg})") from None
    if isinstance(data, list):
        for i, obj in enumerate(data):
            table.add(*_entry(obj, path, f"entry {i}"))
    elif isinstance(data, dict):
        for name, value in data.items():
            texts = _entry({"name": name, **value}, path, f"entry {name!r}")[1] if isinstance(value, dict) else \
                _texts(value, path, f"entry {name!r}")
            table.add(name.strip(), texts)
    else:
        raise _fail(path, "top level", f"expected a list or an object, got {type(data).__name__}")


def _parse_jsonl(path: Path, text: str, table: CaptionTable) -> None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, f"line {lineno} column {exc.colno}", f"invalid JSON ({exc.msg})") from None
            table.add(*_entry(obj, path, f"line {lineno}"))


def _parse_csv(path: Path, text: str, table: CaptionTable, delimiter: str) -> None:
    reader = csv.reader(text.splitlines(), delimiter=delimiter, strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
        name_col = next((header.index(k) for k in NAME_KEYS if k in header), None)
        cap_cols = [i for i, h in enumerate(header) if h.startswith("caption")]
        if name_col is None or not cap_cols:
            raise _fail(path, "line 1", f"the header needs a name column ({'/'.join(NAME_KEYS)}) and caption "
                                        f"column(s) named caption...; found {header[:6]}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"line {reader.line_num}"
            if len(row) != len(header):
                raise _fail(path, where, f"{len(row)} fields, the header has {len(header)}")
            name = row[name_col].strip()
            if not name:
                raise _fail(path, where, "empty name")
            texts = [row[i].strip() for i in cap_cols if row[i].strip()]
            table.add(name, _texts(texts, path, where))
    except csv.Error as exc:
        raise _fail(path, f"line {reader.line_num}", f"invalid CSV ({exc})") from None
    except StopIteration:
        raise _fail(path, "line 1", "empty file") from None


def load_captions(path: str | Path) -> CaptionTable:
    """Read and validate a captions file (format from the suffix: .json, .jsonl, .csv, .tsv)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CaptionFileError(f"captions file {p}", "no such file") from None
    except UnicodeDecodeError as exc:
        raise _fail(p, f"byte {exc.start}", "not UTF-8 text") from None
    except OSError as exc:
        raise CaptionFileError(f"captions file {p}", exc.strerror or str(exc)) from None
    table = CaptionTable(source=str(p))
    suffix = p.suffix.lower()
    if suffix == ".json":
        _parse_json(p, text, table)
    elif suffix in (".jsonl", ".ndjson"):
        _parse_jsonl(p, text, table)
    elif suffix in (".csv", ".tsv"):
        _parse_csv(p, text, table, "\t" if suffix == ".tsv" else ",")
    else:
        raise CaptionFileError(f"captions file {p}", f"unknown format {suffix or '(no suffix)'!r}; use .json, "
                                                     ".jsonl, .csv or .tsv")
    if not table.captions:
        raise CaptionFileError(f"captions file {p}", "holds no captions")
    return table


def name_keys(path: str | Path, root: str | Path | None = None) -> set[str]:
    """The names a captions file may use for an image file: its name, its stem, and its path under `root`."""
    p = Path(path)
    keys = {p.name, p.stem}
    if root is not None:
        try:
            rel = PurePosixPath(p.relative_to(root).as_posix())
            keys |= {str(rel), str(rel.with_suffix(""))}
        except ValueError:
            pass
    return keys


def strip_image_suffix(name: str) -> str:
    """`name` without an image extension ("a.jpg" -> "a"); other names unchanged."""
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and f".{suffix.lower()}" in IMAGE_SUFFIXES else name


def match_names(table: CaptionTable, keys: Mapping[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Captions per target (a file path or item id), and the table's names that match nothing.

    `keys` maps each name a target answers to (see `name_keys`) to its targets. A table name matches exactly, or
    without its image extension.
    """
    matched: dict[str, list[str]] = {}
    unknown: list[str] = []
    for name, texts in table.captions.items():
        targets = keys.get(name) or keys.get(strip_image_suffix(name))
        if not targets:
            unknown.append(name)
        for target in targets or ():
            matched.setdefault(target, []).extend(texts)
    return matched, unknown


def embed_captions(items: Sequence[NewItem], text_embedder: TextEmbedder) -> int:
    """Fill each item's caption_embeddings with one embedding call for the whole batch; return the caption count."""
    texts = [t for it in items for t in it.captions]
    if texts:
        vectors, start = text_embedder.embed_texts(texts), 0
        for it in items:
            it.caption_embeddings, start = vectors[start:start + len(it.captions)], start + len(it.captions)
    return len(texts)


def _stored_targets(gallery: Gallery, table: CaptionTable) -> tuple[dict[str, list[str]], list[str]]:
    """Match table names to the items of an image gallery by their file's name (current or original)."""
    keys: dict[str, list[str]] = {}
    for item_id, uri, meta in gallery.iter_items():
        names = name_keys(uri) if uri else set()
        if meta.get("file_name"):
            names |= name_keys(str(meta["file_name"]))
        for key in names:
            keys.setdefault(key, []).append(item_id)
    matched, unknown = match_names(table, keys)
    if not matched:
        first = list(table.captions)[:3]
        raise InputError(f"captions file {table.source}",
                         f"none of its {len(table)} names matches an item of gallery {gallery.name!r} (first: {first})")
    return matched, unknown


def import_captions(gallery: Gallery, table: CaptionTable, *, text_embedder: TextEmbedder | None = None,
                    batch_size: int = 256, prune: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> IndexReport:
    """Write a captions table without images: caption-only items named by the table, or captions of stored images.

    Items whose stored captions already equal the table's are skipped; others are replaced (`updated`). With
    `prune`, a caption-only gallery drops the items the table no longer names.
    """
    from cirgraph.stores.gallery import NewItem
    from cirgraph.stores.scan import IndexReport

    embedder = text_embedder or gallery.text_embedder  # loaded before anything is written
    report = IndexReport()
    if gallery.kind == "images":
        targets, report.unknown_caption_names = _stored_targets(gallery, table)
    else:
        targets = table.captions
    report.orphans_removed = gallery.sweep_orphans()
    ids = list(targets)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        stored = gallery.existing(chunk)
        items = gallery.get([i for i in chunk if i in stored])
        new = [NewItem(id=i, uri=None, metadata={"item_id": i}, captions=targets[i]) for i in chunk if i not in stored]
        changed = [NewItem(id=i, uri=it.uri, metadata=it.metadata, captions=targets[i])
                   for i, it in items.items() if it.captions != targets[i]]
        report.captions += embed_captions(new + changed, embedder)
        gallery.add(new)
        gallery.replace_captions(changed)
        report.added, report.updated = report.added + len(new), report.updated + len(changed)
        report.skipped += len(items) - len(changed)
        if progress:
            progress(min(start + batch_size, len(ids)), len(ids))
    if prune and gallery.kind == "captions":
        gone = [i for i, _, _ in gallery.iter_items() if i not in targets]
        gallery.delete(gone)
        report.pruned = len(gone)
    report.total = gallery.count()
    return report
