"""The engine: services the API surfaces call, the worker, wake-ups, the runtime."""
