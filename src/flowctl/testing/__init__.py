"""Helpers to run real flowctl processes from tests and benchmarks."""
