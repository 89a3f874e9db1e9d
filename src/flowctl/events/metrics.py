"""Prometheus metrics.

Counts of runs and steps by status, queue depth and live workers are read from
the database at scrape time (so every process reports the same truth); step
durations and HTTP requests are observed where they happen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flowctl import __version__

# `*_created` series double every counter's output and nobody graphs them.
prometheus_client.disable_created_metrics()

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

STARTED_AT = time.time()

API_INFO = Gauge("api_info", "API information", ["version"], registry=REGISTRY)
API_INFO.labels(version=__version__).set(1)
API_UPTIME = Gauge("api_uptime_seconds", "API uptime in seconds", registry=REGISTRY)
API_UPTIME.set_function(lambda: time.time() - STARTED_AT)
API_REQUESTS = Counter(
    "api_requests",
    "Total number of API requests",
    ["method", "route", "status"],
    registry=REGISTRY,
)
API_REQUEST_DURATION = Histogram(
    "api_request_duration_seconds",
    "API request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
STEPS_FINISHED = Counter(
    "flowctl_step_outcomes",
    "Step attempts finished by this process, by outcome",
    ["status"],
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "flowctl_step_duration_seconds",
    "Time a step attempt ran, in this process",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
    registry=REGISTRY,
)


class DatabaseSnapshot(Collector):
    """Gauges read from the database just before each scrape (see `refresh`)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {"runs": {}, "steps": {}}
        self.queue_depth = 0
        self.workers: list[dict[str, Any]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from flowctl.domain.states import RunStatus, StepStatus

        runs = GaugeMetricFamily("flowctl_runs", "Runs by status", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], self.counts["runs"].get(status.value, 0))
        yield runs
        steps = GaugeMetricFamily("flowctl_steps", "Steps by status", labels=["status"])
        for status in StepStatus:
            steps.add_metric([status.value], self.counts["steps"].get(status.value, 0))
        yield steps
        yield GaugeMetricFamily(
            "flowctl_queue_depth",
            "Steps ready to run, waiting for a worker",
            value=self.queue_depth,
        )
        yield GaugeMetricFamily(
            "flowctl_workers", "Worker processes heartbeating", value=len(self.workers)
        )
        yield GaugeMetricFamily(
            "flowctl_worker_slots_busy",
            "Steps running across live workers",
            value=sum(w["running"] for w in self.workers),
        )


SNAPSHOT = DatabaseSnapshot()
REGISTRY.register(SNAPSHOT)


def render() -> bytes:
    return generate_latest(REGISTRY)
