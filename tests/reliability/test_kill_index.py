"""kill -9 of `cirgraph index` at eight moments of one run, from its first instant to after its last batch: each
killed gallery, resumed by the next run, holds exactly what an uninterrupted run writes (same ids, uris and
captions; no duplicate, no orphan caption). The moments follow the run's own events (its trace and progress lines;
see traced_cli.py), so they land at the same point of the work on a busy machine; the figures are printed (-s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.conftest import cirgraph_env
from tests.reliability.killing import Kill, Moment, after, kill_each, on_line, run_to_end
from tests.reliability.stores_at_rest import StoreState, read_store

N, BATCH = 24, 4  # six batches
MODELS = {"embedder": "hash:32?delay=0.05", "text_embedder": "hash:16"}  # the test embedder, 50 ms a batch


def _photos(root: Path) -> tuple[Path, Path]:
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    captions = root / "captions.json"
    captions.write_text(json.dumps({f"img{i:03d}": [f"noise picture {i}", "random pixels"] for i in range(N)}))
    return folder, captions


def _moments() -> list[Moment]:
    def paused(what: str, n: int) -> dict:  # the run stops at the n-th such write until it is killed there
        return {"ready": on_line(f"[trace] {what}", n), "pause_at": f"{what}:{n}"}

    return [
        Moment("at start", after(0.0)),
        Moment("loading the model", **paused("model load", 1)),
        Moment("batch 1 embedded, nothing written", **paused("store write captions", 1)),
        Moment("batch 1: captions written, item records not", **paused("store write items", 1)),
        Moment("batch 2 embedding", on_line("indexed ")),
        Moment("batch 4: replacing captions", on_line("[trace] store delete captions", 3)),
        Moment("batch 5: captions written, item records not", **paused("store write items", 5)),
        Moment("after the last batch, before the summary", on_line(f"indexed {N}/{N}")),
    ]


def _check_whole(state: StoreState, clean: StoreState) -> None:
    assert state.items == clean.items and len(state.items) == N  # same ids, each at the same uri
    assert state.captions == clean.captions and state.orphans == 0
    assert not state.duplicate_uris() and set(state.captions_per_item().values()) == {2}


@pytest.mark.slow
def test_index_killed_at_eight_moments_resumes_to_the_uninterrupted_gallery(tmp_path: Path, monkeypatch) -> None:
    folder, captions = _photos(tmp_path)
    args = ["index", str(folder), "--gallery", "g", "--captions", str(captions), "--batch-size", str(BATCH), "--json"]
    clean_summary, clean_s = run_to_end(monkeypatch, cirgraph_env(tmp_path / "clean", **MODELS), args)
    clean = read_store(tmp_path / "clean", "g")
    _check_whole(clean, clean)
    assert clean_summary["added"] == N
    print(f"\n[reliability] index, uninterrupted: {N} items, {len(clean.captions)} captions in {clean_s:.2f} s")

    homes = [tmp_path / f"killed{i}" for i in range(8)]
    started = time.perf_counter()
    killed = kill_each([(m, cirgraph_env(home, **MODELS)) for m, home in zip(_moments(), homes)], *args)
    print(f"[reliability] index: {len(killed)} runs killed, 4 at a time, in {time.perf_counter() - started:.2f} s")
    rows: list[tuple[Kill, StoreState, dict, float]] = []
    for home, kill in zip(homes, killed):
        at_kill = read_store(home, "g")
        summary, resume_s = run_to_end(monkeypatch, cirgraph_env(home, **MODELS), args)
        rows.append((kill, at_kill, summary, resume_s))
        print(f"[reliability] index killed {'' if kill.killed else '(had finished) '}at {kill.at_s:.2f} s, "
              f"{kill.moment}: {len(at_kill.items)} items, {len(at_kill.captions)} captions "
              f"({at_kill.orphans} orphans) on disk; resumed in {resume_s:.2f} s: {summary['added']} added, "
              f"{summary['skipped']} skipped, {summary['orphans_removed']} orphans removed")
        last = kill is killed[-1]  # the last moment may come too late: the run may finish before the signal lands
        assert kill.killed or last, f"{kill.moment}: the run ended before this moment came\n{kill.stderr[-2000:]}"
        _check_whole(read_store(home, "g"), clean)
        assert summary["total"] == N and summary["added"] + summary["skipped"] == N
        assert summary["skipped"] == len(at_kill.items) and summary["orphans_removed"] == at_kill.orphans
        assert not at_kill.duplicate_uris()

    kills = {kill.moment: (kill, at_kill) for kill, at_kill, _, _ in rows}
    assert len(kills["at start"][1].items) == 0 and len(kills["batch 2 embedding"][1].items) >= BATCH
    for moment in ("loading the model", "batch 1 embedded, nothing written"):
        assert kills[moment][1] == StoreState({}, {})
    for batch in (1, 5):  # killed between the two writes of a batch: its captions are there, its items are not
        _, at_kill = kills[f"batch {batch}: captions written, item records not"]
        assert len(at_kill.items) == (batch - 1) * BATCH and at_kill.orphans == 2 * BATCH
    print(f"[reliability] index: {len(rows)} kill moments from {rows[0][0].at_s:.2f} s to {rows[-1][0].at_s:.2f} s, "
          f"{sum(k.killed for k, *_ in rows)} killed mid-run; every resume {N} items, 0 duplicates, 0 orphans; "
          f"slowest resume {max(r[3] for r in rows):.2f} s")
