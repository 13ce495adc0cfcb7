"""The benchmarks cirgraph evaluates on, by name. Each is one module (its declaration and its behaviour behind
cirgraph.evals.task.BenchmarkTask); adding one is a new module and a line in `TASKS`."""

from __future__ import annotations

from cirgraph.errors import InputError
from cirgraph.evals import circo, cirr, fashioniq
from cirgraph.evals.task import Benchmark, BenchmarkTask

TASKS: dict[str, BenchmarkTask] = {task.declaration.name: task for task in (
    cirr.TASK,
    circo.TASK,
    fashioniq.TASK,
)}  # fmt: skip


def get_task(name: str) -> BenchmarkTask:
    """The benchmark `name` (case-insensitive), or an error naming the ones there are."""
    key = name.strip().lower()
    if key not in TASKS:
        raise InputError(f"benchmark {name!r}", f"unknown; choose one of: {', '.join(TASKS)}")
    return TASKS[key]


def get_benchmark(name: str) -> Benchmark:
    """The declaration of benchmark `name` (case-insensitive)."""
    return get_task(name).declaration
