"""Indexing folders of real photos: ids, idempotence, duplicates, moves, pruning, bad files, captions."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirgraph.errors import InputError, ModelError
from cirgraph.stores.captions import load_captions
from cirgraph.stores.gallery import Gallery, NewItem
from cirgraph.prompts.loader import render
from cirgraph.stores.indexer import CAPTION_PROMPT, Indexer
from cirgraph.stores.scan import scan_path
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.tools.images import content_hash

N_PHOTOS = 8  # the `photos` fixture's folder


@pytest.fixture
def gallery(embedded, gallery_name) -> Gallery:
    return Gallery(embedded, gallery_name, embedder="hash:32", text_embedder="hash:16", create=True)


def _ids(folder: Path) -> set[str]:
    return {content_hash(p.read_bytes()) for p in folder.rglob("*.jpg")}


def test_index_folder_stores_content_hash_ids_uris_and_metadata(gallery, photos) -> None:
    report = Indexer(gallery, batch_size=3).index(photos)
    assert (report.added, report.skipped, report.failed, report.total) == (N_PHOTOS, 0, [], N_PHOTOS)
    assert set(gallery.existing(list(_ids(photos)))) == _ids(photos)
    item = gallery.get([content_hash((photos / "rocket.jpg").read_bytes())]).popitem()[1]
    assert item.uri == str(photos / "rocket.jpg")
    assert item.metadata == {"item_id": item.id, "sha256": item.id, "file_name": "rocket.jpg", "width": 640,
                             "height": 427, "bytes": (photos / "rocket.jpg").stat().st_size}


def test_indexing_twice_adds_nothing(gallery, photos) -> None:
    Indexer(gallery).index(photos)
    report = Indexer(gallery).index(photos)
    assert (report.added, report.skipped, report.total) == (0, N_PHOTOS, N_PHOTOS)


def test_progress_is_reported_per_batch(gallery, photos) -> None:
    calls = []
    Indexer(gallery, batch_size=3, progress=lambda done, total: calls.append((done, total))).index(photos)
    assert calls == [(3, 8), (6, 8), (8, 8)]


def test_duplicate_content_is_one_item_reported_as_skipped(gallery, photos) -> None:
    (photos / "sub").mkdir()
    shutil.copy(photos / "coffee.jpg", photos / "sub" / "same-coffee.jpg")
    report = Indexer(gallery).index(photos)
    assert (report.added, report.skipped, report.total) == (N_PHOTOS, 1, N_PHOTOS)
    assert report.duplicates == [{"path": str(photos / "sub" / "same-coffee.jpg"),
                                  "duplicate_of": str(photos / "coffee.jpg")}]
    again = Indexer(gallery).index(photos / "sub")  # the stored file still exists: a duplicate, not a move
    assert (again.added, again.moved, again.duplicates[0]["duplicate_of"]) == (0, 0, str(photos / "coffee.jpg"))


def test_moved_files_keep_their_item_and_prune_removes_deleted_ones(gallery, photos) -> None:
    Indexer(gallery).index(photos, captions=load_captions(_captions_file(photos, {"camera": ["a man"]})))
    camera_id = content_hash((photos / "camera.jpg").read_bytes())
    (photos / "moved").mkdir()
    os.rename(photos / "rocket.jpg", photos / "moved" / "rocket-renamed.jpg")
    (photos / "camera.jpg").unlink()
    report = Indexer(gallery).index(photos)
    assert (report.added, report.moved, report.pruned, report.total) == (0, 1, 0, N_PHOTOS)
    rocket = content_hash((photos / "moved" / "rocket-renamed.jpg").read_bytes())
    assert gallery.existing([rocket]) == {rocket: str(photos / "moved" / "rocket-renamed.jpg")}
    report = Indexer(gallery).index(photos, prune=True)
    assert (report.pruned, report.total) == (1, N_PHOTOS - 1)
    assert gallery.existing([camera_id]) == {} and gallery.captions_of([camera_id]) == {}


def test_prune_only_touches_items_under_the_indexed_path(gallery, photos, tmp_path, make_photos) -> None:
    other = tmp_path / "other"
    make_photos(other, ("coins",), suffix=".png")
    Indexer(gallery).index(other)
    Indexer(gallery).index(photos)
    (photos / "coffee.jpg").unlink()
    report = Indexer(gallery).index(photos, prune=True)
    assert (report.pruned, report.total) == (1, N_PHOTOS)  # 7 photos + coins.png from the other folder


def _bad_files(folder: Path) -> dict[str, str]:
    """Broken inputs with image suffixes -> a fragment of the reason each must be reported with."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.jpg").write_text("this is not an image")
    good = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 120, 200)).save(good, "JPEG")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    os.symlink(folder / "nowhere.png", folder / "dangling.png")
    os.symlink(folder / "self-loop.png", folder / "self-loop.png")
    return {"text.jpg": "not an image", "truncated.jpg": "truncated", "empty.png": "empty file",
            "dangling.png": "no such file", "self-loop.png": "symbolic links"}


def test_bad_files_are_reported_one_line_each_and_nothing_is_half_written(gallery, photos) -> None:
    expected = _bad_files(photos / "bad")
    (photos / "notes.txt").write_text("ignored: not an image suffix")
    os.symlink(photos, photos / "bad" / "loop-to-root")  # a folder loop: walked once, not forever
    report = Indexer(gallery, batch_size=4).index(photos)
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == set(expected)
    for name, fragment in expected.items():
        assert fragment in failed[name] and "\n" not in failed[name]
    assert (report.added, report.ignored, report.total) == (N_PHOTOS, 1, N_PHOTOS)


def test_decompression_bombs_are_refused_by_the_pixel_cap(gallery, photos) -> None:
    report = Indexer(gallery, max_pixels=200_000).index(photos)
    refused = {Path(f.path).name for f in report.failed}
    assert refused == {"coffee.jpg", "rocket.jpg", "camera.jpg", "astronaut.jpg", "immunohistochemistry.jpg"}
    assert all("pixel cap" in f.reason for f in report.failed) and report.added == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_files_and_folders_are_reported(gallery, photos) -> None:
    (photos / "locked").mkdir()
    shutil.copy(photos / "coins.jpg", photos / "locked" / "x.jpg")
    os.chmod(photos / "locked", 0)
    os.chmod(photos / "coffee.jpg", 0)
    try:
        report = Indexer(gallery).index(photos)
    finally:
        os.chmod(photos / "locked", 0o755)
        os.chmod(photos / "coffee.jpg", 0o644)
    assert {Path(f.path).name: f.reason for f in report.failed} == {"locked": "Permission denied",
                                                                    "coffee.jpg": "permission denied"}


def test_odd_image_modes_are_normalised_and_indexed(gallery, tmp_path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.new("CMYK", (64, 48), (0, 128, 255, 10)).save(folder / "cmyk.jpg")
    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).save(folder / "sixteen.png")
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    palette.save(folder / "palette-alpha.png", transparency=0)
    rotated = Image.new("RGB", (80, 20), (0, 200, 0))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees when shown
    rotated.save(folder / "exif-rotated.jpg", exif=exif)
    report = Indexer(gallery).index(folder)
    assert (report.added, report.failed) == (4, [])
    sizes = {it.metadata["file_name"]: (it.metadata["width"], it.metadata["height"])
             for it in gallery.get([i for i, _, _ in gallery.iter_items()]).values()}
    assert sizes["exif-rotated.jpg"] == (20, 80) and sizes["sixteen.png"] == (64, 48)


def test_a_single_file_can_be_indexed_and_missing_or_empty_paths_are_errors(gallery, photos, tmp_path) -> None:
    assert Indexer(gallery).index(photos / "coins.jpg").added == 1
    with pytest.raises(InputError, match="no such file or directory"):
        Indexer(gallery).index(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(InputError, match=r"folder holds no image files \(1 other files ignored\)"):
        scan_path(tmp_path / "empty")


def _captions_file(folder: Path, captions: dict) -> Path:
    path = folder.parent / "captions.json"
    path.write_text(json.dumps([{"candidate": k, "captions": v} for k, v in captions.items()]))
    return path


def test_captions_file_matches_names_with_or_without_extension(gallery, photos) -> None:
    table = load_captions(_captions_file(photos, {"rocket": ["a rocket on a launch pad"],
                                                  "coffee.jpg": ["a cup of coffee", "coffee on a saucer"],
                                                  "unknown-1": ["x"], "unknown-2": ["y"]}))
    report = Indexer(gallery).index(photos, captions=table)
    assert report.unknown_caption_names == ["unknown-1", "unknown-2"] and report.captions == 3
    coffee = content_hash((photos / "coffee.jpg").read_bytes())
    assert gallery.captions_of([coffee]) == {coffee: ["a cup of coffee", "coffee on a saucer"]}
    hit = gallery.query_captions(gallery.text_embedder.embed_texts(["rocket launch"])[0], 1)[0]
    assert hit.uri == str(photos / "rocket.jpg") and hit.metadata["matched_caption"] == "a rocket on a launch pad"
    changed = load_captions(_captions_file(photos, {"coffee": ["an espresso"]}))
    again = Indexer(gallery).index(photos, captions=changed)  # existing items get the new captions
    assert (again.added, again.updated) == (0, 1) and gallery.captions_of([coffee])[coffee] == ["an espresso"]


def test_a_captions_file_naming_no_file_is_fatal_before_any_write(gallery, photos) -> None:
    table = load_captions(_captions_file(photos, {"nothing-here": ["x"]}))
    with pytest.raises(InputError, match="none of its 1 names matches a file"):
        Indexer(gallery).index(photos, captions=table)
    assert gallery.count() == 0


def test_captioner_captions_new_images_and_retries_missing_ones(gallery, photos) -> None:
    def reply(messages, schema):
        size = messages[0].images[0].size
        return ModelError("vlm", "server said 500") if size == (640, 427) else f"a photo of size {size[0]}"

    model = ScriptedChatModel(default=reply)
    report = Indexer(gallery, captioner=model).index(photos)
    assert report.added == N_PHOTOS and [Path(f.path).name for f in report.caption_failures] == ["rocket.jpg"]
    assert all(render(*CAPTION_PROMPT).text in m.text for msgs, _ in model.requests for m in msgs)
    rocket = content_hash((photos / "rocket.jpg").read_bytes())
    assert rocket not in gallery.captions_of([rocket])
    fixed = Indexer(gallery, captioner=ScriptedChatModel(default="a rocket")).index(photos)
    assert (fixed.added, fixed.updated, gallery.captions_of([rocket])[rocket]) == (0, 1, ["a rocket"])
    assert gallery.get([rocket])[rocket].metadata["file_name"] == "rocket.jpg"


def test_a_run_sweeps_orphans_left_by_an_interrupted_one(gallery, photos) -> None:
    text = gallery.text_embedder
    gallery.replace_captions([NewItem(id="gone", uri=None, metadata={}, captions=["c"],
                                      caption_embeddings=text.embed_texts(["c"]))])
    report = Indexer(gallery).index(photos)
    assert report.orphans_removed == 1 and gallery.captions_of(["gone"]) == {}


def test_an_image_the_embedder_chokes_on_fails_alone(gallery, photos) -> None:
    real = gallery.image_embedder

    class Picky:
        name, dim = real.name, real.dim

        def embed_images(self, images):
            if any(img.size == (451, 300) for img in images):
                raise RuntimeError("unsupported aspect ratio")
            return real.embed_images(images)

    report = Indexer(gallery, embedder=Picky(), batch_size=4).index(photos)
    assert [(Path(f.path).name, "unsupported aspect ratio" in f.reason) for f in report.failed] == \
        [("chelsea.jpg", True)]
    assert report.added == N_PHOTOS - 1


def test_user_metadata_is_stored_without_none_values(gallery, photos) -> None:
    Indexer(gallery).index(photos / "coins.jpg", metadata={"split": "val", "note": None})
    item = next(iter(gallery.get([content_hash((photos / "coins.jpg").read_bytes())]).values()))
    assert item.metadata["split"] == "val" and "note" not in item.metadata
    with pytest.raises(InputError, match="metadata 'tags'"):
        Indexer(gallery).index(photos / "coins.jpg", metadata={"tags": ["a"]})


def test_large_photos_are_shrunk_before_the_model_but_keep_their_size_in_metadata(gallery, photos) -> None:
    real = gallery.image_embedder
    seen = []

    class Recording:
        name, dim = real.name, real.dim

        def embed_images(self, images):
            seen.extend(img.size for img in images)
            return real.embed_images(images)

    Indexer(gallery, embedder=Recording(), short_side=200).index(photos / "coffee.jpg")
    assert seen == [(300, 200)]  # 600x400 -> shorter side 200
    item = next(iter(gallery.get([content_hash((photos / "coffee.jpg").read_bytes())]).values()))
    assert (item.metadata["width"], item.metadata["height"]) == (600, 400)


def test_a_link_loop_given_as_the_path_is_named_a_loop(tmp_path) -> None:
    from cirgraph.errors import InputError
    from cirgraph.stores.scan import scan_path

    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    with pytest.raises(InputError, match="symbolic link loop"):
        scan_path(tmp_path / "a.jpg")
    with pytest.raises(InputError, match="broken symbolic link"):
        scan_path(tmp_path / "dangling.jpg")
    with pytest.raises(InputError, match="no such file or directory"):
        scan_path(tmp_path / "missing.jpg")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    from cirgraph.testing.tiny_models import build_tiny_clip

    return str(build_tiny_clip(tmp_path_factory.mktemp("indexer-clip")))


def _stored_vectors(gallery: Gallery, ids: list[str]) -> np.ndarray:
    got = gallery.images_collection.get(ids=ids, include=["embeddings"])
    by_id = dict(zip(got["ids"], got["embeddings"]))
    return np.array([by_id[i] for i in ids])


def test_new_images_are_prepared_in_the_background_and_embed_as_the_images_would(
    embedded, gallery_name, photos, tiny_clip, monkeypatch
) -> None:
    import threading

    from cirgraph.tools.hf_embedders import HFImageTextEmbedder
    from cirgraph.tools.images import load_image

    embedder = HFImageTextEmbedder(tiny_clip, precision="float32")
    gallery = Gallery(embedded, gallery_name, embedder=embedder, text_embedder="hash:16", create=True)
    threads, direct = [], []
    prepare, embed_images = embedder.prepare_images, embedder.embed_images
    monkeypatch.setattr(embedder, "prepare_images",
                        lambda images: threads.append(threading.current_thread()) or prepare(images))
    monkeypatch.setattr(embedder, "embed_images", lambda images: direct.append(len(images)) or embed_images(images))
    (photos / "sub").mkdir()
    shutil.copy(photos / "coffee.jpg", photos / "sub" / "same-coffee.jpg")  # a duplicate inside a prepared batch
    report = Indexer(gallery, batch_size=3).index(photos)
    assert (report.added, report.skipped, report.failed) == (N_PHOTOS, 1, [])
    assert threads and threading.main_thread() not in threads and direct == []
    paths = sorted(photos.glob("*.jpg"))
    ids = [content_hash(p.read_bytes()) for p in paths]
    expected = embed_images([load_image(p) for p in paths])
    np.testing.assert_allclose(_stored_vectors(gallery, ids), expected, atol=1e-5)


def test_when_background_preparation_fails_the_images_are_embedded_directly(
    embedded, gallery_name, photos, tiny_clip, monkeypatch
) -> None:
    from cirgraph.tools.hf_embedders import HFImageTextEmbedder

    embedder = HFImageTextEmbedder(tiny_clip)
    gallery = Gallery(embedded, gallery_name, embedder=embedder, text_embedder="hash:16", create=True)

    def broken(images):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(embedder, "prepare_images", broken)
    report = Indexer(gallery, batch_size=4).index(photos)
    assert (report.added, report.failed) == (N_PHOTOS, [])
