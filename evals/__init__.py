"""Benchmarks, metrics, the evaluation runner, result records and reports."""
