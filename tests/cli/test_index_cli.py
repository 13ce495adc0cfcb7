"""`cirgraph index`: summaries, JSON output, fatal errors as one line, caption-only galleries. kill -9 and resume:
tests/reliability/test_kill_index.py."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from PIL import Image

from cirgraph.stores.chroma import clear_client_cache, embedded_client, gallery_names
from cirgraph.stores.gallery import Gallery
from tests.in_process import run_cli

PHOTOS = ("astronaut", "coffee", "rocket", "coins")


@pytest.fixture(autouse=True)
def _hash_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "hash:32")
    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:16")
    yield
    clear_client_cache()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    import skimage.data

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg")
    return folder


def open_store(home: Path, name: str) -> Gallery:
    return Gallery(embedded_client(home / "galleries" / "chroma"), name)


def test_json_summary_is_exactly_one_object_on_stdout(capsys, monkeypatch, photos, _isolated_settings) -> None:
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (photos / "readme.txt").write_text("not an image")
    code, out, err = run_cli(capsys, monkeypatch, "index", photos, "--gallery", "p", "--json")
    assert code == 3  # some inputs failed (the others were indexed): a script can tell
    summary = json.loads(out)
    assert (summary["added"], summary["skipped"], summary["total"], summary["ignored"]) == (4, 0, 4, 1)
    assert summary["failed"] == [{"path": str(photos / "broken.png"), "reason": summary["failed"][0]["reason"]}]
    assert "corrupt" in summary["failed"][0]["reason"] or "not an image" in summary["failed"][0]["reason"]
    assert "indexed 5/5" in err
    assert open_store(_isolated_settings, "p").count() == 4


def test_text_summary_and_a_second_run_that_adds_nothing(capsys, monkeypatch, photos) -> None:
    run_cli(capsys, monkeypatch, "index", photos, "-g", "p")
    code, out, _ = run_cli(capsys, monkeypatch, "index", photos, "-g", "p")
    assert code == 0
    assert out.splitlines()[0].startswith("gallery 'p': 0 added, 4 skipped, 0 moved, 0 pruned")
    assert out.splitlines()[0].endswith("4 items in total")


def test_prune_and_moves_through_the_cli(capsys, monkeypatch, photos) -> None:
    run_cli(capsys, monkeypatch, "index", photos, "-g", "p")
    (photos / "coins.jpg").unlink()
    os.rename(photos / "rocket.jpg", photos / "rocket-2.jpg")
    code, out, _ = run_cli(capsys, monkeypatch, "index", photos, "-g", "p", "--prune", "--json")
    summary = json.loads(out)
    assert (code, summary["moved"], summary["pruned"], summary["total"]) == (0, 1, 1, 3)


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "absent", "no such file or directory"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "folder holds no image files (0 other files ignored)"),
])
def test_missing_or_empty_path_is_a_one_line_error(capsys, monkeypatch, tmp_path, _isolated_settings, make,
                                                   message) -> None:
    path = make(tmp_path)
    code, out, err = run_cli(capsys, monkeypatch, "index", path, "-g", "p")
    assert (code, out, err) == (1, "", f"error: {path}: {message}\n")
    assert not (_isolated_settings / "galleries").exists() or \
        gallery_names(embedded_client(_isolated_settings / "galleries" / "chroma")) == []


def test_bad_captions_file_fails_before_anything_is_written(capsys, monkeypatch, photos, tmp_path,
                                                            _isolated_settings) -> None:
    bad = tmp_path / "caps.json"
    bad.write_text('[{"candidate": "coffee", "captions": ["a cup"]}\n{"candidate": "x"}]')
    code, out, err = run_cli(capsys, monkeypatch, "index", photos, "-g", "p", "--captions", bad)
    assert code == 1 and out == ""
    assert err == f"error: captions file {bad}: line 2 column 1: invalid JSON (Expecting ',' delimiter)\n"
    assert not (_isolated_settings / "galleries").exists()


def test_unknown_caption_names_are_a_warning_not_an_error(capsys, monkeypatch, photos, tmp_path) -> None:
    caps = tmp_path / "caps.csv"
    caps.write_text("name,caption\ncoffee,a cup of coffee\n" + "".join(f"ghost{i},x\n" for i in range(7)))
    code, out, err = run_cli(capsys, monkeypatch, "index", photos, "-g", "p", "--captions", caps, "--json")
    assert code == 0 and json.loads(out)["captions"] == 1 and json.loads(out)["unknown_caption_names"] == 7
    assert f"warning: 7 names in {caps} match nothing and were left out (first: ghost0, ghost1, ghost2, ghost3, " \
           "ghost4, ...)" in err


def test_caption_only_gallery_from_a_captions_file(capsys, monkeypatch, tmp_path, _isolated_settings) -> None:
    caps = tmp_path / "cirr.json"
    caps.write_text(json.dumps([{"candidate": f"dev-{i}-0-img0", "captions": ["a dog", f"dog {i}"]}
                                for i in range(12)]))
    code, out, _ = run_cli(capsys, monkeypatch, "index", "--captions", caps, "--gallery", "cirr", "--json")
    summary = json.loads(out)
    assert (code, summary["added"], summary["captions"], summary["total"]) == (0, 12, 24, 12)
    g = open_store(_isolated_settings, "cirr")
    assert g.kind == "captions" and g.get(["dev-3-0-img0"])["dev-3-0-img0"].captions == ["a dog", "dog 3"]


def test_usage_errors(capsys, monkeypatch, tmp_path) -> None:
    code, _, err = run_cli(capsys, monkeypatch, "index")
    assert code == 2 and "give PATH" in err
    code, _, err = run_cli(capsys, monkeypatch, "index", tmp_path, "-g", "no spaces please")
    assert code == 1 and err.startswith("error: gallery name 'no spaces please': ")


def test_unreachable_chroma_server_and_missing_model_are_fatal(capsys, monkeypatch, photos,
                                                               _isolated_settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CIRGRAPH_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("CIRGRAPH_CHROMA_PORT", str(port))
    code, _, err = run_cli(capsys, monkeypatch, "index", photos)
    assert code == 1 and err.startswith(f"error: Chroma server at http://127.0.0.1:{port} is unreachable")
    assert err.count("\n") == 1
    monkeypatch.delenv("CIRGRAPH_CHROMA_HOST")
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", str(photos / "no-such-model"))
    code, _, err = run_cli(capsys, monkeypatch, "index", photos, "-g", "p")
    assert code == 1 and err.startswith(f"error: model '{photos / 'no-such-model'}' could not be loaded")
    assert gallery_names(embedded_client(_isolated_settings / "galleries" / "chroma")) == []  # nothing created


def test_caption_with_model_uses_the_configured_vision_endpoint(capsys, monkeypatch, photos,
                                                                _isolated_settings) -> None:
    from cirgraph.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(default="a photo of something") as server:
        monkeypatch.setenv("CIRGRAPH_VLM_BASE_URL", server.base_url)
        monkeypatch.setenv("CIRGRAPH_VLM_MODEL", "fake-vlm")
        monkeypatch.setenv("CIRGRAPH_VLM_API_KEY", "k")
        code, out, _ = run_cli(capsys, monkeypatch, "index", photos, "-g", "p", "--caption-with-model", "--json")
        assert len(server.chat_requests) == 4 and all(len(r.images()) == 1 for r in server.chat_requests)
    assert code == 0 and json.loads(out)["captions"] == 4
    g = open_store(_isolated_settings, "p")
    assert {tuple(c) for c in g.captions_of([i for i, _, _ in g.iter_items()]).values()} == {("a photo of something",)}


def test_a_run_in_which_every_input_fails_exits_non_zero_and_leaves_no_gallery(capsys, monkeypatch, tmp_path,
                                                                              _isolated_settings) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, _ = run_cli(capsys, monkeypatch, "index", bad, "--gallery", "g")
    assert code == 3 and "0 added" in out and "failed: " in out
    assert "g" not in gallery_names(embedded_client(_isolated_settings / "galleries" / "chroma"))
