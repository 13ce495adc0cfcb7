"""Kill -9 at chosen moments: a `cirgraph` subprocess (through traced_cli.py) whose stderr lines are kept with their
times, and the moments at which a test kills it: after a delay, on a line, or when a file holds enough lines.
Moments tied to events of the run itself land at the same point of the work however busy the machine is."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TRACED_CLI = Path(__file__).with_name("traced_cli.py")


@dataclass
class Traced:
    """A running `cirgraph ARGS`; `lines` are its stderr lines as (seconds since start, text)."""

    proc: subprocess.Popen
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    changed: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, env: dict[str, str], *args: str) -> Traced:
        proc = subprocess.Popen([sys.executable, str(TRACED_CLI), *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        traced = cls(proc, time.perf_counter())
        traced.reader = threading.Thread(target=traced._read, daemon=True)
        traced.reader.start()
        return traced

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((self.elapsed(), line.rstrip("\n")))
            self.changed.set()
        self.changed.set()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def seen(self, prefix: str) -> list[float]:
        """When each stderr line starting with `prefix` came."""
        return [t for t, line in list(self.lines) if line.startswith(prefix)]

    def stderr(self) -> str:
        return "\n".join(line for _, line in list(self.lines))


@dataclass(frozen=True)
class Moment:
    """A named point of a run; `ready(run)` turns true when the run has reached it. With `pause_at` ("<trace>:<n>",
    see traced_cli.py) the run stops at its n-th such trace line until it is killed there."""

    name: str
    ready: Callable[[Traced], bool]
    pause_at: str = ""


def after(seconds: float) -> Callable[[Traced], bool]:
    return lambda run: run.elapsed() >= seconds


def on_line(prefix: str, nth: int = 1) -> Callable[[Traced], bool]:
    """At the `nth` stderr line that starts with `prefix`."""
    return lambda run: len(run.seen(prefix)) >= nth


def exists(path: Path) -> Callable[[Traced], bool]:
    return lambda run: path.exists()


def on_lines_in(path: Path, n: int) -> Callable[[Traced], bool]:
    """When the file `path` holds at least `n` complete lines."""
    def ready(run: Traced) -> bool:
        try:
            return path.read_bytes().count(b"\n") >= n
        except OSError:
            return False

    return ready


@dataclass(frozen=True)
class Kill:
    moment: str
    at_s: float  # seconds after the start
    killed: bool  # False when the run had finished before the moment came
    stderr: str


def kill_at(moment: Moment, env: dict[str, str], *args: str, timeout: float = 90) -> Kill:
    """Start `cirgraph ARGS`, SIGKILL it once `moment` is reached, and say whether the signal is what ended it."""
    run = Traced.start({**env, "RELIABILITY_PAUSE_AT": moment.pause_at}, *args)
    deadline = time.monotonic() + timeout
    try:
        while not moment.ready(run) and run.proc.poll() is None:
            assert time.monotonic() < deadline, f"{moment.name}: not reached in {timeout} s\n{run.stderr()}"
            run.changed.wait(0.005)
            run.changed.clear()
        at = run.elapsed()
    finally:
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=30)
        run.proc.stdout.close()
        run.reader.join(timeout=10)
    return Kill(moment.name, at, run.proc.returncode == -signal.SIGKILL, run.stderr())


def kill_each(runs: Sequence[tuple[Moment, dict[str, str]]], *args: str, at_once: int = 4) -> list[Kill]:
    """`kill_at` for each (moment, environment), `at_once` runs at a time (each with its own CIRGRAPH_HOME)."""
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        return list(pool.map(lambda run: kill_at(run[0], run[1], *args), runs))


def run_to_end(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: Sequence[str]) -> tuple[dict, float]:
    """`cirgraph ARGS --json` to the end (uninterrupted, or resuming a killed run), through the real entry point in
    this process with the CIRGRAPH_* settings of `env`; (its JSON summary, seconds)."""
    from typer.testing import CliRunner

    from cirgraph.cli import app
    from cirgraph.stores.chroma import clear_client_cache

    for key, value in env.items():
        if key.startswith("CIRGRAPH_"):
            monkeypatch.setenv(key, value)
    started = time.perf_counter()
    try:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        clear_client_cache()
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), time.perf_counter() - started
