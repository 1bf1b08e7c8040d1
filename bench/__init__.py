"""Benchmarks for hamsearch against its peers (pytest-benchmark; see README.md).

A package so that ``python -m bench.ratios`` works and pytest imports the
suite as ``bench.*`` rather than as top-level modules.
"""
