"""The evaluation runner on the CIRR / FashionIQ fixtures with scripted models and hash embedders: caching,
resuming, failure isolation, caption space and image mode, gallery reuse, submission files."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cirgraph.agents.presets import preset
from cirgraph.evals.records import QueryResult, load_record
from cirgraph.evals.runner import EvalSpec, Models, Reporter, evaluate, evaluate_async, ladder
from cirgraph.evals.submission import read_submission
from cirgraph.settings import Settings
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.tools.hash_embedders import HashImageTextEmbedder, HashTextEmbedder

FIXTURES = Path(__file__).parent / "fixtures"
CIRR = FIXTURES / "cirr"


def cirr_queries(split: str = "val") -> list[dict]:
    return json.loads((CIRR / "captions" / f"cap.rc2.{split}.json").read_text())


def write_captions(path: Path, folder: Path, pattern: str, drop: tuple[str, ...] = ()) -> Path:
    """Captions for every image of the split files under `folder`; a query's target is captioned with its
    modification text, so searching with that text finds it."""
    names: list[str] = []
    for split_file in sorted(folder.rglob(pattern)):
        data = json.loads(split_file.read_text())
        names += list(data) if isinstance(data, (dict, list)) else []
    captions = {n: [f"an ordinary picture {i}", f"nothing special {i}"] for i, n in enumerate(names)}
    for query in cirr_queries():
        captions[query["target_hard"]] = [query["caption"].lower()]
    path.write_text(json.dumps([{"candidate": n, "captions": c} for n, c in captions.items() if n not in drop]))
    return path


def modification(messages: Any) -> str:
    text = "\n".join(m.text for m in messages)
    return re.findall(r'^"(.*)"$', text, re.M)[1]  # the templates quote the caption, then the change


def scripted(fail_on: str | None = None, delay_s: float = 0.0) -> ScriptedChatModel:
    def recompose(messages: Any, schema: Any) -> dict:
        text = modification(messages)
        if fail_on is not None and fail_on in text:
            raise RuntimeError(f"model crashed on {text!r}")
        return {"edits": [], "descriptions": [text.lower()]}

    answers = {"answers": [{"index": i, "answer": "yes", "confidence": 0.5} for i in range(1, 7)]}
    return ScriptedChatModel({'{"edits"': recompose, '{"answers"': answers,
                              '{"propositions"': {"propositions": [{"text": "a photo", "polarity": "must_show",
                                                                    "question": "Is it a photo?"}]}},
                             name="scripted-llm", delay_s=delay_s)


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    return write_captions(tmp_path / "captions.json", CIRR, "split.rc2.*.json")


def spec(captions: Path, out: Path | None = None, **kwargs: Any) -> EvalSpec:
    return EvalSpec("cirr", kwargs.pop("split", "val"), CIRR, captions_file=captions,
                    config=kwargs.pop("config", preset("cirevl")), out_dir=out, **kwargs)


def outputs(record: Any) -> list[tuple]:
    return [(q.id, q.status, q.ranking, q.descriptions, q.caption) for q in record.queries]


def test_rerun_makes_no_model_call_and_ranks_identically(tmp_path: Path, captions: Path) -> None:
    llm, text = scripted(), HashTextEmbedder()
    first = evaluate(spec(captions, tmp_path / "a"), Settings(), models=Models(llm=llm, text_embedder=text))
    assert first.counts == {"queries": 5, "ok": 5, "failed": 0, "degraded": 0, "ran": 5, "resumed": 0}
    assert first.metrics["R@1"] == 100.0 and first.usage["calls"] == 5 and llm.calls == 5
    by_name = {e["candidate"]: e["captions"] for e in json.loads(captions.read_text())}
    assert first.queries[0].caption == by_name[cirr_queries()[0]["reference"]][0]  # its first caption
    assert first.queries[0].caption_source == "given" and first.models["vlm"] is None
    assert first.spaces[0]["reused"] is False and first.prompts["recompose"]["template"] == "recompose/plain"
    embedded = text.calls
    second = evaluate(spec(captions, tmp_path / "b"), Settings(), models=Models(llm=llm, text_embedder=text))
    assert llm.calls == 5 and second.usage["calls"] == 0 and second.usage["cached_calls"] == 5
    assert outputs(second) == outputs(first) and second.metrics == first.metrics
    assert second.spaces[0]["reused"] is True
    assert text.calls - embedded == 5  # one query embedding per query; the gallery was not embedded again


class _StopAfter(Reporter):
    def __init__(self, n: int) -> None:
        self.n, self.seen, self.task = n, [], None

    def result(self, result: QueryResult) -> None:
        self.seen.append(result.id)
        if len(self.seen) == self.n and self.task is not None:
            self.task.cancel()


def test_interrupted_run_resumes_without_rerunning_finished_queries(tmp_path: Path, captions: Path) -> None:
    out = tmp_path / "run"

    async def interrupted() -> list[str]:
        reporter = _StopAfter(2)
        models = Models(llm=scripted(delay_s=0.05), text_embedder=HashTextEmbedder())
        reporter.task = asyncio.create_task(evaluate_async(spec(captions, out, concurrency=2), Settings(),
                                                           models=models, reporter=reporter))
        with pytest.raises(asyncio.CancelledError):
            await reporter.task
        return reporter.seen

    reported = asyncio.run(interrupted())
    logged = [json.loads(line)["id"] for line in (out / "queries.jsonl").read_text().splitlines()[1:]]
    # a query whose log write was under way when the run stopped is kept too, only unreported
    assert set(reported) <= set(logged) and 2 <= len(logged) < 5 and not (out / "record.json").exists()
    rest = _StopAfter(0)
    resumed = evaluate(spec(captions, out), Settings(), models=Models(llm=scripted(), text_embedder=HashTextEmbedder()),
                       reporter=rest)
    assert sorted(rest.seen + logged) == sorted(str(q["pairid"]) for q in cirr_queries())  # each ran once
    lines = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()[1:]]
    assert sorted(line["id"] for line in lines) == sorted(str(q["pairid"]) for q in cirr_queries())
    assert resumed.counts["resumed"] == len(logged) and resumed.counts["ran"] == 5 - len(logged)
    clean = evaluate(spec(captions, tmp_path / "clean"), Settings(),
                     models=Models(llm=scripted(), text_embedder=HashTextEmbedder()))
    assert outputs(resumed) == outputs(clean) and resumed.metrics == clean.metrics
    assert load_record(out) == resumed


def test_a_failing_query_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    queries = cirr_queries()
    captions = write_captions(tmp_path / "c.json", CIRR, "split.rc2.val.json", drop=(queries[1]["reference"],))
    crash = queries[2]["caption"]
    record = evaluate(spec(captions, tmp_path / "run"), Settings(),
                      models=Models(llm=scripted(fail_on=crash), text_embedder=HashTextEmbedder()))
    failures = {f["id"]: f for f in record.failures}
    assert set(failures) == {str(queries[1]["pairid"]), str(queries[2]["pairid"])}
    assert failures[str(queries[1]["pairid"])]["type"] == "MissingCaptionError"
    assert failures[str(queries[2]["pairid"])] == {"id": str(queries[2]["pairid"]), "type": "RuntimeError",
                                                   "message": f"model crashed on {crash!r}"}
    assert record.counts["ok"] == 3 and record.metrics["R@50"] == 60.0  # the failures count as misses
    assert record.missing_captions["references"] == [str(queries[1]["pairid"])]
    assert "MissingCaptionError" in (tmp_path / "run" / "summary.md").read_text()
    retried = evaluate(spec(captions, tmp_path / "run"), Settings(),
                       models=Models(llm=scripted(), text_embedder=HashTextEmbedder()))
    assert retried.counts["ran"] == 2 and retried.counts["failed"] == 1 and retried.metrics["R@50"] == 80.0


def test_test_split_writes_valid_submission_files(tmp_path: Path, captions: Path) -> None:
    record = evaluate(spec(captions, tmp_path / "run", split="test1", config=preset("modification-only")),
                      Settings(), models=Models(text_embedder=HashTextEmbedder()))
    assert record.metrics == {} and record.submission_error is None
    assert [Path(p).name for p in record.submissions] == ["cirr_test1_recall.json", "cirr_test1_recall_subset.json"]
    recall = read_submission(record.submissions[0])
    assert recall["version"] == "rc2" and all(len(recall[str(q["pairid"])]) == 50 for q in cirr_queries("test1"))
    partial = evaluate(spec(captions, tmp_path / "part", split="test1", config=preset("modification-only"), limit=1),
                       Settings(), models=Models(text_embedder=HashTextEmbedder()))
    assert partial.submissions == [] and "not written" in partial.submission_error


def test_image_mode_indexes_the_split_gallery_and_maps_hits_to_names(tmp_path: Path) -> None:
    images = tmp_path / "images"
    split = json.loads((CIRR / "image_splits" / "split.rc2.val.json").read_text())
    for n, (_name, rel) in enumerate(split.items()):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (n * 4 % 256, 90, 200 - n * 3)).save(images / rel)
    embedder = HashImageTextEmbedder()
    run = EvalSpec("cirr", "val", CIRR, images_dir=images, config=preset("modification-only"), out_dir=tmp_path / "r")
    record = evaluate(run, Settings(), models=Models(embedder=embedder))
    assert record.mode == "images" and record.counts["ok"] == 5 and record.spaces[0]["count"] == 60
    for query, result in zip(cirr_queries(), record.queries, strict=True):
        assert set(result.ranking) <= set(split) and query["reference"] not in result.ranking
        assert len(result.ranking) == 59  # the whole gallery but the reference
    again = evaluate(run, Settings(), models=Models(embedder=embedder))
    assert again.spaces[0]["reused"] is True and again.counts["resumed"] == 5
    # the image set below a shallow cut is scored through the gallery's ids and recorded by benchmark name
    cut = evaluate(EvalSpec("cirr", "val", CIRR, images_dir=images, config=preset("modification-only"), depth=2,
                            out_dir=tmp_path / "cut"), Settings(), models=Models(embedder=embedder))
    for query, result in zip(cirr_queries(), cut.queries, strict=True):
        members = set(query["img_set"]["members"]) - {query["reference"]}
        assert set(result.subset_tail) == members - set(result.ranking)
    assert {k: v for k, v in cut.metrics.items() if k.startswith("Rs@")} == \
        {k: v for k, v in record.metrics.items() if k.startswith("Rs@")}
    # with a captions file too: the gallery gets the captions, and each reference its caption (no vision call)
    captions = write_captions(tmp_path / "c.json", CIRR, "split.rc2.val.json")
    both = evaluate(EvalSpec("cirr", "val", CIRR, images_dir=images, captions_file=captions, config=preset("cirevl"),
                             out_dir=tmp_path / "both"), Settings(),
                    models=Models(llm=scripted(), embedder=embedder, text_embedder=HashTextEmbedder()))
    assert both.spaces[0]["gallery"] != record.spaces[0]["gallery"] and both.counts["ok"] == 5
    assert {q.caption_source for q in both.queries} == {"given"} and both.spaces[0]["has_captions"] is True


def test_fashioniq_runs_every_category_in_its_own_gallery(tmp_path: Path) -> None:
    folder = FIXTURES / "fashioniq"
    captions = write_captions(tmp_path / "c.json", folder, "split.*.val.json")
    run = EvalSpec("fashioniq", "val", folder, captions_file=captions, config=preset("modification-only"),
                   out_dir=tmp_path / "r")
    record = evaluate(run, Settings(), models=Models(text_embedder=HashTextEmbedder()))
    assert record.categories == ["dress", "shirt", "toptee"] and len(record.spaces) == 3
    assert {"dress/R@10", "avg/R@50", "avg/(R@10+R@50)/2"} <= set(record.metrics)
    assert record.main_value == record.metrics["avg/(R@10+R@50)/2"]


def test_ladder_shares_the_space_and_writes_one_folder_per_preset(tmp_path: Path, captions: Path) -> None:
    llm = scripted()
    records = ladder(spec(captions, tmp_path / "ladder"), [preset("caption-only"), preset("cirevl")], Settings(),
                     models=Models(llm=llm, text_embedder=HashTextEmbedder()))
    assert [r.preset for r in records] == ["caption-only", "cirevl"]
    assert [r.usage.get("calls", 0) for r in records] == [0, 5]
    assert records[0].spaces == records[1].spaces  # one gallery, built once for the whole ladder
    assert sorted(p.name for p in (tmp_path / "ladder").iterdir()) == ["caption-only", "cirevl"]


def test_recall_subset_is_exact_when_the_image_set_falls_below_the_kept_ranking(tmp_path: Path,
                                                                                 captions: Path) -> None:
    # within each image set: one member matches the modification text exactly, the target nearly, the rest less,
    # so the target is mostly second in its set (sets share members, so not always) and below a cut at depth 1
    entries = {e["candidate"]: e["captions"] for e in json.loads(captions.read_text())}
    for query in cirr_queries():
        others = [m for m in query["img_set"]["members"] if m not in (query["reference"], query["target_hard"])]
        text = query["caption"].lower()
        entries[others[0]] = [text]
        entries[query["target_hard"]] = [f"{text} seen here"]
        for member in others[1:]:
            entries[member] = [f"{text} seen from far away at night"]
    captions.write_text(json.dumps([{"candidate": n, "captions": c} for n, c in entries.items()]))
    models = Models(text_embedder=HashTextEmbedder())
    cfg = preset("modification-only")
    full = evaluate(spec(captions, tmp_path / "full", config=cfg), Settings(), models=models)
    cut = evaluate(spec(captions, tmp_path / "cut", config=cfg, depth=1), Settings(), models=models)
    assert full.metrics["Rs@1"] < full.metrics["Rs@2"] == 100.0
    assert all(len(q.ranking) == 1 for q in cut.queries)
    by_id = {q.id: q for q in full.queries}
    for query in cut.queries:
        members = set(next(m for m in cirr_queries() if str(m["pairid"]) == query.id)["img_set"]["members"])
        expect = [n for n in by_id[query.id].ranking if n in members and n not in query.ranking]
        assert query.subset_tail == expect  # every member below the cut, in the order the full ranking has them
    assert {k: v for k, v in cut.metrics.items() if k.startswith("Rs@")} == \
        {k: v for k, v in full.metrics.items() if k.startswith("Rs@")}
    assert cut.metrics["R@5"] == cut.metrics["R@1"] < full.metrics["R@5"]  # R@k counts only what is ranked
    assert not any("Recall_subset" in n for n in cut.notes)


def test_offset_and_limit_pick_a_slice_of_the_queries(tmp_path: Path, captions: Path) -> None:
    from cirgraph.errors import InputError

    models = Models(text_embedder=HashTextEmbedder())
    every = [str(q["pairid"]) for q in cirr_queries()]
    record = evaluate(spec(captions, tmp_path / "slice", config=preset("modification-only"), offset=2, limit=2),
                      Settings(), models=models)
    assert [q.id for q in record.queries] == every[2:4] and record.offset == 2
    assert "queries 3-4 of each part (offset 2)" in record.notes
    rest = evaluate(spec(captions, tmp_path / "rest", config=preset("modification-only"), offset=3),
                    Settings(), models=models)
    assert [q.id for q in rest.queries] == every[3:]
    with pytest.raises(InputError, match="--offset 5"):
        evaluate(spec(captions, tmp_path / "none", config=preset("modification-only"), offset=5), Settings(),
                 models=models)


def test_a_fresh_run_asks_again_what_failed_before(tmp_path: Path, captions: Path) -> None:
    from cirgraph.errors import ModelOutputError

    broken = ScriptedChatModel({'{"edits"': ModelOutputError("scripted-llm", "cut off")}, name="scripted-llm")
    models = Models(llm=broken, text_embedder=HashTextEmbedder())
    first = evaluate(spec(captions, tmp_path / "a"), Settings(), models=models)
    assert first.counts["degraded"] == 5 and broken.calls == 5
    evaluate(spec(captions, tmp_path / "b"), Settings(), models=models)
    assert broken.calls == 5  # remembered: not asked again
    evaluate(spec(captions, tmp_path / "c", fresh=True), Settings(), models=models)
    assert broken.calls == 10  # --fresh forgets the remembered failures
