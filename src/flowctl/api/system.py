"""Health, readiness and metrics endpoints shared by all surfaces."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response

from flowctl import __version__
from flowctl.api import schemas as doc
from flowctl.api.render import JSONBody, now_iso
from flowctl.engine.errors import Unavailable
from flowctl.engine.service import WorkflowService
from flowctl.events import metrics


def build_router(service: WorkflowService) -> APIRouter:
    router = APIRouter(tags=["System"])

    @router.get(
        "/health",
        summary="Liveness: the process answers",
        responses=doc.responses(
            200,
            doc.Health,
            "The process is up",
            example={
                "status": "healthy",
                "timestamp": doc.T0,
                "version": __version__,
                "uptime_seconds": 3600.5,
                "services": None,
            },
        ),
    )
    async def health():
        return {
            "status": "healthy",
            "timestamp": now_iso(),
            "version": __version__,
            "uptime_seconds": round(time.time() - metrics.STARTED_AT, 3),
            "services": None,
        }

    @router.get(
        "/api/v1/health",
        summary="Health, including the database",
        responses=doc.responses(
            200,
            doc.ApiHealth,
            "The database answers",
            example={"status": "healthy", "timestamp": doc.T0},
            extra={
                503: {
                    "model": doc.ApiHealth,
                    "description": "The database does not answer",
                    "content": {
                        "application/json": {
                            "example": {"status": "unhealthy", "timestamp": doc.T0}
                        }
                    },
                }
            },
        ),
    )
    async def api_health():
        try:
            await service.db.ping()
            status, code = "healthy", 200
        except Exception:
            status, code = "unhealthy", 503
        return JSONBody({"status": status, "timestamp": now_iso()}, status_code=code)

    @router.get(
        "/health/ready",
        summary="Readiness: database and workers",
        responses=doc.responses(
            200,
            doc.Readiness,
            "Every check is healthy",
            example=doc.READY_EXAMPLE,
            extra={
                503: {
                    "model": doc.Readiness,
                    "description": "A check is not healthy (the same body, `ready: false`)",
                    "content": {"application/json": {"example": doc.NOT_READY_EXAMPLE}},
                }
            },
        ),
    )
    async def ready():
        checks = {}
        started = time.perf_counter()
        try:
            await service.db.ping()
            checks["database"] = {
                "status": "healthy",
                "message": "Database connection active",
                "response_time_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        except Exception as exc:
            checks["database"] = {
                "status": "unhealthy",
                "message": f"Database connection failed: {exc}",
                "response_time_ms": None,
            }
        started = time.perf_counter()
        try:
            live = await service.live_workers()
            elapsed = round((time.perf_counter() - started) * 1000, 3)
            if live:
                slots = sum(w["concurrency"] for w in live)
                busy = sum(w["running"] for w in live)
                checks["workers"] = {
                    "status": "healthy",
                    "message": f"{len(live)} worker(s) heartbeating, {busy}/{slots} slots busy",
                    "response_time_ms": elapsed,
                }
            else:
                checks["workers"] = {
                    "status": "unhealthy",
                    "message": "No worker has heartbeated recently: runs will not progress",
                    "response_time_ms": elapsed,
                }
        except Unavailable as exc:
            checks["workers"] = {"status": "unknown", "message": str(exc), "response_time_ms": None}
        ok = all(c["status"] == "healthy" for c in checks.values())
        return JSONBody(
            {"ready": ok, "timestamp": now_iso(), "checks": checks},
            status_code=200 if ok else 503,
        )

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "The Prometheus text exposition format",
                "content": {
                    "text/plain; version=0.0.4; charset=utf-8": {
                        "schema": {"type": "string"},
                        "example": doc.PROMETHEUS_EXAMPLE,
                    }
                },
            },
            "default": {"model": doc.ErrorBody, "description": doc.DEFAULT_ERROR},
        },
    )
    async def prometheus_metrics():
        snapshot = metrics.SNAPSHOT
        try:
            snapshot.counts = await service.status_counts()
            snapshot.queue_depth = await service.queue_depth()
            snapshot.workers = await service.live_workers()
        except Unavailable:
            pass  # serve the last snapshot; process metrics still help
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @router.get(
        "/api/v1/metrics",
        summary="Workflow, task and worker counts (JSON)",
        responses=doc.responses(
            200,
            doc.Metrics,
            "Counts by status, and the live workers",
            example=doc.METRICS_EXAMPLE,
            errors={503: None},
        ),
    )
    async def json_metrics():
        counts = await service.status_counts()
        live = await service.live_workers()
        runs, steps = counts["runs"], counts["steps"]
        return {
            "workflows": {
                "total": sum(runs.values()),
                **{
                    k: runs.get(k, 0)
                    for k in ("pending", "running", "completed", "failed", "cancelled")
                },
            },
            "tasks": {
                "total": sum(steps.values()),
                **{
                    k: steps.get(k, 0)
                    for k in (
                        "pending",
                        "running",
                        "retrying",
                        "completed",
                        "failed",
                        "cancelled",
                        "skipped",
                    )
                },
            },
            "workers": {
                "active": sum(1 for w in live if w["running"] > 0),
                "idle": sum(1 for w in live if w["running"] == 0),
                "slots": sum(w["concurrency"] for w in live),
                "busy_slots": sum(w["running"] for w in live),
            },
        }

    return router
