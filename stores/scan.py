"""What an indexing run looks at and what it reports: the image files under a path, failures, counts.

Files are picked by image suffix (other files are counted as ignored). The walk stays inside the given folder:
links (to folders or files) that resolve outside it are skipped and counted, unless `follow_links` is set; links
within it are followed once, so a link loop or alias is cut instead of walked forever; unreadable folders are
reported, not fatal. A path that does not exist,
or a folder without a single image file, is an InputError: nothing would be indexed. Also the small checks a run
makes on its inputs: user metadata Chroma can store, paths under the indexed root, a stored file's content.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from cirgraph.errors import ImageError, InputError
from cirgraph.tools.images import IMAGE_SUFFIXES, content_hash, read_image_bytes


@dataclass(slots=True)
class Failure:
    path: str
    reason: str


@dataclass(slots=True)
class IndexReport:
    """What a run did. `total` is the number of items in the gallery after it."""

    added: int = 0
    skipped: int = 0
    moved: int = 0
    pruned: int = 0
    ignored: int = 0
    updated: int = 0  # existing items whose captions were replaced
    captions: int = 0  # caption records written
    orphans_removed: int = 0
    links_outside: int = 0  # links resolving outside the indexed folder, skipped (not followed)
    total: int = 0
    failed: list[Failure] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    caption_failures: list[Failure] = field(default_factory=list)
    unknown_caption_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unknown_caption_names"] = len(self.unknown_caption_names)
        return out


@dataclass(slots=True)
class Scan:
    """The image files under a path (sorted), other files ignored, folders that could not be read, and the links
    that were not followed because they lead outside the root (`outside`: link path -> where it resolves)."""

    root: Path
    files: list[Path]
    ignored: int = 0
    failed: list[Failure] = field(default_factory=list)
    outside: dict[str, str] = field(default_factory=dict)


def scan_path(path: str | os.PathLike, *, follow_links: bool = False) -> Scan:
    """List image files (by suffix) under a folder, or one file. Links that resolve outside the folder are skipped
    (listed in `Scan.outside`) unless `follow_links`; links are followed at most once either way (loops are cut)."""
    root = Path(path).absolute()
    if not root.exists():
        raise InputError(str(root), _missing_reason(root))
    if not root.is_dir():
        return Scan(root=root, files=[root])
    scan, visited, real_root = Scan(root=root, files=[]), set(), os.path.realpath(root)

    def onerror(exc: OSError) -> None:
        scan.failed.append(Failure(str(exc.filename), exc.strerror or str(exc)))

    def inside(dirpath: str, name: str) -> bool:
        """False (and recorded) for a link resolving outside the root, unless links are followed anywhere."""
        full = os.path.join(dirpath, name)
        if follow_links or not os.path.islink(full):
            return True
        target = os.path.realpath(full)
        if is_under(target, real_root):
            return True
        scan.outside[full] = target
        return False

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in visited:  # a link back to a folder already walked: a loop or an alias
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if inside(dirpath, d))
        for name in sorted(filenames):
            if not inside(dirpath, name):
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                scan.files.append(Path(dirpath) / name)
            else:
                scan.ignored += 1
    if not scan.files:
        detail = f"; {scan.failed[0].path}: {scan.failed[0].reason}" if scan.failed else ""
        links = (f", {len(scan.outside)} links outside it skipped (follow them with --follow-links)"
                 if scan.outside else "")
        raise InputError(str(root), f"folder holds no image files ({scan.ignored} other files ignored{links}){detail}")
    return scan


def _missing_reason(path: Path) -> str:
    """Why `path` does not exist: no such file, a link to nothing, or a loop of links."""
    import errno

    if not path.is_symlink():
        return "no such file or directory"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
    return "broken symbolic link"


def clean_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """User metadata as Chroma stores it: None values dropped (Chroma rejects them), other non-scalars refused."""
    out = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise InputError(f"metadata {key!r}", f"values must be str, int, float or bool, got {type(value).__name__}")
        out[key] = value
    return out


def is_under(uri: str, root: str) -> bool:
    """True when the path `uri` is `root` or lies below it."""
    return uri == root or uri.startswith(root.rstrip(os.sep) + os.sep)


def same_content(uri: str | None, item_id: str) -> bool:
    """True when the stored file still exists with the same content (so a second path is a duplicate, not a move)."""
    if not uri:
        return False
    try:
        return content_hash(read_image_bytes(uri)) == item_id
    except ImageError:
        return False
