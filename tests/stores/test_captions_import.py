"""Caption files (JSON, JSONL, CSV) and importing them: caption-only galleries, captions for stored images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cirgraph.errors import InputError
from cirgraph.stores.captions import CaptionFileError, CaptionTable, import_captions, load_captions, match_names
from cirgraph.stores.gallery import Gallery
from cirgraph.stores.indexer import Indexer

# the benchmark annotations beside the project (../shared/data), or CIRGRAPH_SHARED_DATA
SHARED = Path(os.environ.get("CIRGRAPH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
CIRR_CAPTIONS = SHARED / "cirr" / "mllm_captions.json"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_json_list_object_jsonl_csv_and_tsv_layouts(tmp_path) -> None:
    layouts = {
        "a.json": json.dumps([{"candidate": "x", "captions": ["one", "two"]}, {"image": "y.jpg", "caption": "three"}]),
        "b.json": json.dumps({"x": ["one", "two"], "y.jpg": "three"}),
        "c.jsonl": '{"name": "x", "captions": ["one", "two"]}\n\n{"file_name": "y.jpg", "caption": "three"}\n',
        "d.csv": "name,caption\nx,one\nx,two\ny.jpg,three\n",
        "e.tsv": "image\tcaption_1\tcaption_2\nx\tone\ttwo\ny.jpg\tthree\t\n",
    }
    for name, text in layouts.items():
        table = load_captions(_write(tmp_path, name, text))
        assert table.captions == {"x": ["one", "two"], "y.jpg": ["three"]}, name


@pytest.mark.skipif(not CIRR_CAPTIONS.exists(), reason="CIRR captions not available")
def test_cirr_mllm_captions_load() -> None:
    table = load_captions(CIRR_CAPTIONS)
    assert len(table) == 4609 and sum(map(len, table.captions.values())) == 17390
    assert table.captions["dev-1001-1-img1"][0] == "A team of sled dogs runs across a snowy field."


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.json", '[{"candidate": "a", "captions": ["x"]},\n {"candidate": "b" "captions": []}]',
     r"bad.json: line 2 column 20: invalid JSON \(Expecting ',' delimiter\)"),
    ("shape.json", '[{"candidate": "a", "captions": ["x"]}, {"candidate": "b", "captions": [3]}]',
     r"shape.json: entry 1: caption 3 is not a non-empty string"),
    ("keys.json", '[{"file": "a", "text": "x"}]', r"keys.json: entry 0: needs a name key"),
    ("top.json", '"just a string"', r"top.json: top level: expected a list or an object"),
    ("lines.jsonl", '{"name": "a", "caption": "x"}\n{"name": "b", "caption": \n', r"lines.jsonl: line 2 column"),
    ("fields.csv", "name,caption\na,x\nb,y,z\n", r"fields.csv: line 3: 3 fields, the header has 2"),
    ("header.csv", "a,x\nb,y\n", r"header.csv: line 1: the header needs a name column"),
    ("blank.csv", "name,caption\na,\n", r"blank.csv: line 2: captions must be a non-empty string"),
    ("empty.json", "[]", r"empty.json: holds no captions"),
    ("captions.txt", "a: x", r"captions.txt: unknown format '.txt'"),
])
def test_bad_caption_files_are_one_line_errors_naming_file_place_and_reason(tmp_path, name, text, message) -> None:
    with pytest.raises(CaptionFileError, match=message) as info:
        load_captions(_write(tmp_path, name, text))
    assert "\n" not in str(info.value) and isinstance(info.value, InputError)


def test_missing_and_non_utf8_files(tmp_path) -> None:
    with pytest.raises(CaptionFileError, match="no such file"):
        load_captions(tmp_path / "absent.json")
    (tmp_path / "latin.csv").write_bytes("name,caption\na,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CaptionFileError, match="latin.csv: byte 18: not UTF-8"):
        load_captions(tmp_path / "latin.csv")


def test_names_match_with_or_without_extension_and_unknown_ones_are_listed() -> None:
    table = CaptionTable("t", {"a": ["1"], "b.png": ["2"], "c.jpg": ["3"], "zzz": ["4"]})
    keys = {"a": ["/p/a.jpg"], "a.jpg": ["/p/a.jpg"], "b": ["/p/b.webp"], "c.jpg": ["/p/c.jpg", "/q/c.jpg"]}
    matched, unknown = match_names(table, keys)
    assert matched == {"/p/a.jpg": ["1"], "/p/b.webp": ["2"], "/p/c.jpg": ["3"], "/q/c.jpg": ["3"]}
    assert unknown == ["zzz"]


def test_caption_only_gallery_from_a_captions_file(embedded, gallery_name, tmp_path) -> None:
    g = Gallery(embedded, gallery_name, text_embedder="hash:16", create=True)
    path = _write(tmp_path, "c.json", json.dumps([{"candidate": f"dev-{i}-img0", "captions": [f"photo {i}", "x"]}
                                                  for i in range(40)]))
    report = import_captions(g, load_captions(path), batch_size=16)
    assert (report.added, report.captions, report.total, g.count()) == (40, 80, 40, 40)
    hit = g.query_captions(g.text_embedder.embed_texts(["photo 17"])[0], 1)[0]
    assert (hit.id, hit.uri, hit.captions) == ("dev-17-img0", None, ["photo 17", "x"])
    again = import_captions(g, load_captions(path))
    assert (again.added, again.skipped, again.updated) == (0, 40, 0)
    path = _write(tmp_path, "c.json", json.dumps({"dev-3-img0": ["changed"], "dev-4-img0": ["photo 4", "x"]}))
    pruned = import_captions(g, load_captions(path), prune=True)
    assert (pruned.updated, pruned.skipped, pruned.pruned, pruned.total) == (1, 1, 38, 2)
    assert g.get(["dev-3-img0"])["dev-3-img0"].captions == ["changed"]
    assert g.captions_collection.count() == 3


def test_captions_for_the_stored_images_of_an_image_gallery(embedded, gallery_name, photos, tmp_path) -> None:
    g = Gallery(embedded, gallery_name, embedder="hash:32", text_embedder="hash:16", create=True)
    Indexer(g).index(photos)
    path = _write(tmp_path, "c.csv", "image,caption\ncoffee.jpg,a cup of coffee\nrocket,a rocket\nnope,x\n")
    report = import_captions(g, load_captions(path))
    assert (report.added, report.updated, report.unknown_caption_names, report.total) == (0, 2, ["nope"], 8)
    hit = g.query_captions(g.text_embedder.embed_texts(["rocket"])[0], 1)[0]
    assert hit.uri == str(photos / "rocket.jpg") and hit.captions == ["a rocket"]
    with pytest.raises(InputError, match="none of its 1 names matches an item"):
        import_captions(g, load_captions(_write(tmp_path, "n.json", '{"absent": "x"}')))


@pytest.mark.skipif(not CIRR_CAPTIONS.exists(), reason="CIRR captions not available")
def test_cirr_names_become_a_caption_only_gallery(embedded, gallery_name) -> None:
    full = load_captions(CIRR_CAPTIONS)
    table = CaptionTable(full.source, dict(list(full.captions.items())[:300]))
    g = Gallery(embedded, gallery_name, text_embedder="hash:64", create=True)
    report = import_captions(g, table)
    assert report.added == g.count() == 300
    query = g.text_embedder.embed_texts(["sled dogs running in the snow"])[0]
    assert "dog" in g.query_captions(query, 1)[0].metadata["matched_caption"].lower()
