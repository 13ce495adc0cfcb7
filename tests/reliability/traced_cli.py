"""`cirgraph ARGS` that announces its model loads and writes on stderr, so a kill -9 test can land at a chosen one.

Run as `python traced_cli.py ARGS`. Before each model load it prints `[trace] model load`, before each gallery write
(captions, item records, deletes) `[trace] store <operation>`, and before an eval run writes its record
`[trace] record write`. With RELIABILITY_PAUSE_AT="<what>:<n>" it stops for RELIABILITY_PAUSE_S seconds (default
30) after the n-th such line, so a test that kills on that line kills a process that has made every write before
it durable and not begun the one announced (a batch's item records after its captions; the run record after the
last query), however busy the machine. Everything else is the real entry point, unchanged.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

PAUSE_S = float(os.environ.get("RELIABILITY_PAUSE_S", "30"))
PAUSE_AT = os.environ.get("RELIABILITY_PAUSE_AT", "")
_seen: Counter[str] = Counter()


def trace(what: str) -> None:
    print(f"[trace] {what}", file=sys.stderr, flush=True)
    _seen[what] += 1
    if PAUSE_AT == f"{what}:{_seen[what]}":
        time.sleep(PAUSE_S)


def install() -> None:
    from cirgraph.stores import chroma
    from cirgraph.tools import embedders

    for name in ("load_image_text_embedder", "load_text_embedder"):  # looked up in the module at each load
        setattr(embedders, name, _traced("model load", getattr(embedders, name)))

    guarded = chroma.guarded

    def traced(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        operation = what.rsplit(": ", 1)[-1]  # "gallery 'g': write items" -> "write items"
        if operation.startswith(("write", "delete", "update")):
            trace(f"store {operation}")
        return guarded(what, fn, *args, **kwargs)

    chroma.guarded = traced  # the gallery calls it through the module, per write
    if sys.argv[1:2] == ["eval"]:
        from cirgraph.evals import runner

        runner.write_record = _traced("record write", runner.write_record)


def _traced(what: str, fn: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        trace(what)
        return fn(*args, **kwargs)

    return call


if __name__ == "__main__":
    install()
    from cirgraph.cli import main

    sys.argv[0] = "cirgraph"
    main()
