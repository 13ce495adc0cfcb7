"""Loaders on the real annotation files (counts as published) and on small fixtures in the shipped layouts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cirgraph.errors import InputError
from cirgraph.evals.benchmarks import get_benchmark
from cirgraph.evals.loaders import image_path, load_split, load_splits
from cirgraph.evals.metrics import CIRCO_SEMANTIC_ASPECTS
from cirgraph.stores.captions import load_captions

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("CIRGRAPH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
real_data = pytest.mark.skipif(
    not (SHARED / "cirr").is_dir(),
    reason=f"real annotations not found at {SHARED} (set CIRGRAPH_SHARED_DATA to the folder holding cirr/, circo/, "
    "fashioniq/)",
)


@real_data
def test_cirr_val_dev_subset_counts_and_hashes() -> None:
    data = load_split("cirr", "val", SHARED)
    assert len(data.queries) == 2107 and len(data.gallery or ()) == 2297
    assert all(file.matches_known for file in data.files)
    assert any("cap.rc2.val.dev.json in place of cap.rc2.val.json" in note for note in data.notes)
    first = data.queries[0]
    assert first.id == "12062" and first.reference == "dev-63-0-img1" and first.target == "dev-430-3-img0"
    assert first.modification == "Fewer paper towels per pack" and len(first.image_set) == 6
    assert len(first.subset_candidates) == 5 and first.soft_targets["dev-1028-1-img1"] == -1.0
    assert data.image_files["dev-244-0-img0"] == "./dev/dev-244-0-img0.png"


@real_data
def test_cirr_val_full_file_count() -> None:
    full = [p for p in (SHARED / "cirr" / "cap.rc2.val.json", SHARED / "cirr" / "captions" / "cap.rc2.val.json")]
    if not any(p.is_file() for p in full):
        pytest.skip("the full CIRR val file cap.rc2.val.json is not in the shared data (only the dev subset is)")
    data = load_split("cirr", "val", SHARED)
    assert len(data.queries) == 4181 and len(data.gallery or ()) == 2297


@real_data
def test_cirr_test1_counts_and_no_ground_truth() -> None:
    data = load_split("cirr", "test1", SHARED)
    assert len(data.queries) == 4148 and len(data.gallery or ()) == 2315
    assert not any(q.has_ground_truth for q in data.queries)
    # one test1 caption is a single space; the query is kept (the server wants a ranking for it) and noted
    assert any("empty modification text in queries 27098" in note for note in data.notes)


@real_data
def test_circo_counts_and_ground_truths() -> None:
    val, test = load_split("circo", "val", SHARED), load_split("circo", "test", SHARED)
    assert len(val.queries) == 220 and len(test.queries) == 800
    assert all(q.ground_truths[0] == q.target and q.reference not in q.ground_truths for q in val.queries)
    assert {a for q in val.queries for a in q.semantic_aspects} == set(CIRCO_SEMANTIC_ASPECTS)
    assert not any(q.has_ground_truth for q in test.queries) and test.queries[0].shared_concept
    assert val.gallery is None and any("gallery unknown" in note for note in val.notes)


@real_data
def test_fashioniq_counts_per_category() -> None:
    counts = {d.category: (len(d.queries), len(d.gallery or ())) for d in load_splits("fashioniq", "val", SHARED)}
    assert counts == {"dress": (2017, 3817), "shirt": (2038, 6346), "toptee": (1961, 5373)}


@real_data
def test_real_files_match_every_published_count() -> None:
    for bench in ("cirr", "circo", "fashioniq"):
        for split in get_benchmark(bench).splits:
            for data in load_splits(bench, split, SHARED):
                assert all(f.matches_known for f in data.files), data.files
                count_notes = [n for n in data.notes if "published" in n]
                # the only count that differs from the publication is the CIRR val dev subset
                assert count_notes == (
                    ["cirr val: 2107 queries; 4181 published"] if (bench, split) == ("cirr", "val") else []
                )


@real_data
def test_real_caption_file_leaves_some_images_uncaptioned() -> None:
    val = load_split("cirr", "val", SHARED)
    test = load_split("cirr", "test1", SHARED)
    captions = load_captions(SHARED / "cirr" / "mllm_captions.json").captions
    assert len(captions) == 4609
    assert tuple(sorted(set(val.gallery) - captions.keys())) == ("dev-220-2-img1", "dev-725-0-img0")
    assert tuple(sorted(set(test.gallery) - captions.keys())) == ("test1-360-1-img0",)


def test_cirr_fixture_in_the_shipped_layout() -> None:
    data = load_split("cirr", "val", FIXTURES)  # found under cirr/captions and cirr/image_splits
    assert [q.id for q in data.queries] == ["12062", "12082", "12275", "14051", "28742"]
    assert len(data.gallery or ()) == 60
    assert data.files[0].known_sha256 is None and data.files[0].matches_known is None
    assert "cirr val: 5 queries; 4181 published" in data.notes
    # the benchmark's own folder works as well as its parent
    assert load_split("cirr", "val", FIXTURES / "cirr").queries == data.queries


def test_flat_layout_and_the_dev_subset_file(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "cirr/captions/cap.rc2.val.json", tmp_path / "cap.rc2.val.dev.json")
    shutil.copy(FIXTURES / "cirr/image_splits/split.rc2.val.json", tmp_path / "split.rc2.val.json")
    data = load_split("cirr", "val", tmp_path)  # only the dev subset file is present: it is used
    assert data.files[0].path.name == "cap.rc2.val.dev.json" and len(data.queries) == 5
    assert any("in place of cap.rc2.val.json" in note for note in data.notes)
    # the known hash of that name differs from this 5-entry copy: noted, not refused
    assert data.files[0].matches_known is False and any("differs from the known" in note for note in data.notes)
    (tmp_path / "cap.rc2.val.json").write_text(json.dumps(json.loads(data.files[0].path.read_text())[:2]))
    assert len(load_split("cirr", "val", tmp_path).queries) == 2  # the full-val name wins when both exist
    explicit = load_split("cirr", "val", tmp_path, query_file=tmp_path / "cap.rc2.val.dev.json")
    assert len(explicit.queries) == 5


def test_circo_fixture_queries_and_gallery() -> None:
    data = load_split("circo", "val", FIXTURES)
    first = data.queries[0]
    assert first.reference == "900001" and first.target == "900002"
    assert first.ground_truths == ("900002", "900003", "900004")
    assert first.semantic_aspects == ("cardinality", "addition")
    assert first.shared_concept == "a dog on a beach" and first.modification == "has two dogs instead of one"
    assert data.gallery is not None and len(data.gallery) == 60 and data.gallery[0] == "900001"
    assert "circo val: 60 gallery images; 123403 published" in data.notes


def test_circo_gallery_from_the_images_folder(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "circo" / "annotations", tmp_path / "data" / "annotations")
    images = tmp_path / "unlabeled2017"
    images.mkdir()
    for image_id in (900001, 42):
        (images / f"{image_id:012d}.jpg").write_bytes(b"")
    (images / "notes.txt").write_text("not an image")
    data = load_split("circo", "val", tmp_path / "data", images_dir=tmp_path)
    assert data.gallery == ("42", "900001")
    assert image_path(data, "42", tmp_path) == images / "000000000042.jpg"


def test_fashioniq_fixture_joins_captions_by_convention() -> None:
    with pytest.raises(InputError, match="give a category: dress, shirt, toptee"):
        load_split("fashioniq", "val", FIXTURES)
    dress = load_split("fashioniq", "val", FIXTURES, category="dress")
    assert [q.id for q in dress.queries] == ["dress-0", "dress-1", "dress-2"]
    assert [q.modification for q in dress.queries] == [
        "is red and has no sleeves",
        "is longer and is darker",
        "has a floral print",
    ]
    assert dress.queries[0].captions == ("is red.", "has no sleeves") and dress.queries[0].reference == "SYNDRESS01"
    assert [d.category for d in load_splits("fashioniq", "val", FIXTURES)] == ["dress", "shirt", "toptee"]
    shirt = load_split("fashioniq", "val", FIXTURES, category="shirt")
    assert shirt.queries[1].modification == "has a logo and is blue"


def test_image_paths_per_layout(tmp_path: Path) -> None:
    cirr = load_split("cirr", "val", FIXTURES)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "dev-63-0-img1.png").write_bytes(b"")
    assert image_path(cirr, "dev-63-0-img1", tmp_path) == tmp_path / "dev" / "dev-63-0-img1.png"
    assert image_path(cirr, "dev-63-0-img1", tmp_path / "dev") == tmp_path / "dev" / "dev-63-0-img1.png"
    fiq = load_split("fashioniq", "val", FIXTURES, category="dress")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "SYNDRESS01.jpg").write_bytes(b"")
    assert image_path(fiq, "SYNDRESS01", tmp_path) == tmp_path / "images" / "SYNDRESS01.jpg"
    with pytest.raises(InputError, match=r"image 'SYNDRESS02': not found; tried .*SYNDRESS02\.png"):
        image_path(fiq, "SYNDRESS02", tmp_path)


def test_errors_name_the_file_and_the_entry(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no cap\.rc2\.val\.json or cap\.rc2\.val\.dev\.json for cirr val"):
        load_split("cirr", "val", tmp_path)
    (tmp_path / "cap.rc2.val.json").write_text('[{"pairid": 1,\n "reference": }]')
    with pytest.raises(InputError, match=r"cap\.rc2\.val\.json, line 2: not valid JSON"):
        load_split("cirr", "val", tmp_path)
    entries = json.loads((FIXTURES / "cirr/captions/cap.rc2.val.json").read_text())
    del entries[1]["caption"]
    (tmp_path / "cap.rc2.val.json").write_text(json.dumps(entries))
    with pytest.raises(InputError, match=r"entry 1 \(pairid 12082\): field 'caption': Field required"):
        load_split("cirr", "val", tmp_path)
    entries = json.loads((FIXTURES / "cirr/captions/cap.rc2.val.json").read_text())
    (tmp_path / "cap.rc2.val.json").write_text(json.dumps(entries + entries[:1]))
    with pytest.raises(InputError, match="query id 12062 appears twice"):
        load_split("cirr", "val", tmp_path)
    with pytest.raises(InputError, match="unknown; choose one of: val, test1"):
        load_split("cirr", "test", tmp_path)
    with pytest.raises(InputError, match="benchmark 'cirrus'"):
        load_split("cirrus", "val", tmp_path)


def test_benchmark_caption_files_are_read_by_the_caption_reader(tmp_path: Path) -> None:
    fixture = load_captions(FIXTURES / "cirr" / "mllm_captions.json").captions
    assert len(fixture) == 6 and "dev-63-0-img1" in fixture and "nope" not in fixture
    assert all(len(texts) >= 3 for texts in fixture.values())
    mapping = tmp_path / "captions.json"
    mapping.write_text(json.dumps({"a": "a cat", "b": ["a dog", "a puppy"]}))
    assert load_captions(mapping).captions == {"a": ["a cat"], "b": ["a dog", "a puppy"]}
    mapping.write_text(json.dumps([{"candidate": "a", "captions": [1]}]))
    with pytest.raises(InputError, match="caption 1 is not a non-empty string"):
        load_captions(mapping)
    mapping.write_text(json.dumps([{"captions": ["x"]}]))
    with pytest.raises(InputError, match="needs a name key"):
        load_captions(mapping)
