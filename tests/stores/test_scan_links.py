"""The folder walk of indexing stays inside the given folder: links out of it are skipped and counted, unless
followed on request (loops are cut either way); links within it still count."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cirgraph.errors import InputError
from cirgraph.stores.scan import scan_path
from tests.in_process import run_cli


@pytest.fixture
def tree(tmp_path: Path, make_photos) -> Path:
    """parent/{astronaut,coffee}.jpg beside parent/photos/{rocket,coins}.jpg, and photos/up -> .. (the parent)."""
    parent = tmp_path / "parent"
    make_photos(parent, ("astronaut", "coffee"))
    photos = parent / "photos"
    make_photos(photos, ("rocket", "coins"))
    (photos / "up").symlink_to("..", target_is_directory=True)
    return photos


def names(scan) -> list[str]:
    return sorted(p.name for p in scan.files)


def test_a_link_to_the_parent_is_skipped_and_counted(tree: Path) -> None:
    scan = scan_path(tree)
    assert names(scan) == ["coins.jpg", "rocket.jpg"]
    assert scan.outside == {str(tree / "up"): str(tree.parent)}


def test_follow_links_walks_out_and_still_cuts_the_loop(tree: Path) -> None:
    scan = scan_path(tree, follow_links=True)
    # the parent's two photos once, and photos/ seen again through up/photos is an alias: cut, not walked twice
    assert names(scan) == ["astronaut.jpg", "coffee.jpg", "coins.jpg", "rocket.jpg"]
    assert scan.outside == {}


def test_links_within_the_folder_still_work(tree: Path, tmp_path: Path, make_photos) -> None:
    (tree / "sub").mkdir()
    (tree / "sub" / "again.jpg").symlink_to(tree / "rocket.jpg")
    (tree / "alias").symlink_to(tree / "sub", target_is_directory=True)
    outside_file = tmp_path / "elsewhere" / "chelsea.jpg"
    make_photos(outside_file.parent, ("chelsea",))
    (tree / "cat.jpg").symlink_to(outside_file)
    scan = scan_path(tree)
    found = sorted(str(p.relative_to(tree)) for p in scan.files)
    # alias -> sub is the same folder: walked once, under the name met first
    assert found == ["alias/again.jpg", "coins.jpg", "rocket.jpg"]
    assert sorted(Path(p).name for p in scan.outside) == ["cat.jpg", "up"]


def test_a_folder_whose_only_images_lie_outside_names_the_skipped_links(tmp_path: Path, tree: Path) -> None:
    only_link = tmp_path / "only-link"
    only_link.mkdir()
    (only_link / "photos").symlink_to(tree, target_is_directory=True)
    with pytest.raises(InputError, match=r"1 links outside it skipped \(follow them with --follow-links\)"):
        scan_path(only_link)


def test_a_root_given_as_a_link_is_walked(tree: Path, tmp_path: Path) -> None:
    link = tmp_path / "via-link"
    link.symlink_to(tree, target_is_directory=True)
    assert names(scan_path(link)) == ["coins.jpg", "rocket.jpg"]


def test_cirgraph_index_does_not_index_the_parent_and_reports_the_link(capsys, monkeypatch, tree: Path) -> None:
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "hash:32")
    code, out, _ = run_cli(capsys, monkeypatch, "index", tree, "--gallery", "inside", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["added"] == 2 and summary["total"] == 2 and summary["links_outside"] == 1
    code, out, _ = run_cli(capsys, monkeypatch, "index", tree, "--gallery", "inside")
    assert code == 0 and "skipped 1 links that lead outside the folder (--follow-links follows them)" in out


def test_cirgraph_index_follow_links_indexes_the_parent(capsys, monkeypatch, tree: Path) -> None:
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "hash:32")
    code, out, _ = run_cli(capsys, monkeypatch, "index", tree, "--gallery", "followed", "--json", "--follow-links")
    summary = json.loads(out)
    assert code == 0 and summary["added"] == 4 and summary["links_outside"] == 0
    assert os.path.islink(tree / "up")
