"""flowctl: a durable workflow orchestration server."""

__version__ = "0.1.0"
