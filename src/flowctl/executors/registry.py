"""The built-in executors, plus any registered through the `flowctl.executors`
entry point group (a plugin package exposes an Executor subclass there)."""

from __future__ import annotations

from importlib.metadata import entry_points

from flowctl.executors.agent import AgentExecutor
from flowctl.executors.base import Executor, ExecutorRegistry
from flowctl.executors.generic import GenericExecutor
from flowctl.executors.http_request import HttpRequestExecutor
from flowctl.executors.noop import NoopExecutor
from flowctl.executors.sleep import SleepExecutor
from flowctl.executors.webhook import WebhookExecutor

BUILTIN: tuple[type[Executor], ...] = (
    AgentExecutor,
    NoopExecutor,
    SleepExecutor,
    GenericExecutor,
    HttpRequestExecutor,
    WebhookExecutor,
)


def default_registry(*, load_plugins: bool = True) -> ExecutorRegistry:
    registry = ExecutorRegistry()
    for cls in BUILTIN:
        registry.register(cls())
    if load_plugins:
        for ep in entry_points(group="flowctl.executors"):
            cls = ep.load()
            registry.register(cls())
    return registry
