"""A real A2A echo agent for the benchmark, in its own process.

    .venv/bin/python bench/agents.py [--port P] [--name echo]

Serves `flowctl.testing.a2a_agents`' echo agent (a2a-sdk, uvicorn) until
killed, and prints one line, `listening http://127.0.0.1:PORT`, once it
accepts connections (`--port 0`, the default, picks a free port).

Its own process, so the benchmark client's GIL does not show up as agent time.
Every JSON-RPC POST is timed by a tiny ASGI wrapper, from the request reaching
the app (headers parsed) to the last byte of the answer handed to uvicorn;
`GET /stats` returns one record per call:

    {"context_id": "flowctl-<run_id>-<step_id>", "method": "SendMessage",
     "received": <epoch s>, "sent": <epoch s>, "ms": <duration>}

`received` and `sent` are `time.time()` (same clock as the server's
timestamps on this machine); `ms` is from `time.perf_counter()`.
`POST /stats/reset` empties the list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

if __package__ in (None, ""):  # run as a script: make `flowctl` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowctl.testing.a2a_agents import AgentCalls, EchoExecutor, build_agent_app, replaying


def _context_id(body: bytes) -> tuple[str, str | None]:
    """The JSON-RPC method and the message's context id (A2A 1.0 or 0.3 spelling)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        request = json.loads(body)
        message = (request.get("params") or {}).get("message") or {}
        context = message.get("contextId") or message.get("context_id")
        return str(request.get("method")), context
    return "?", None


class Timed:
    """ASGI wrapper: times each JSON-RPC POST; serves GET /stats and POST /stats/reset."""

    def __init__(self, app: Any):
        self.app = app
        self.records: list[dict[str, Any]] = []

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/stats":
            await _send_json(send, self.records)
            return
        if path == "/stats/reset" and method == "POST":
            self.records = []
            await _send_json(send, {"reset": True})
            return
        if method != "POST" or path != "/":
            await self.app(scope, receive, send)
            return

        received, start = time.time(), time.perf_counter()
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        body = b"".join(chunks)
        replay = replaying(body, receive)

        done: dict[str, float] = {}

        async def timed_send(event: dict) -> None:
            await send(event)
            if event["type"] == "http.response.body" and not event.get("more_body"):
                done["sent"], done["end"] = time.time(), time.perf_counter()

        await self.app(scope, replay, timed_send)
        rpc_method, context_id = _context_id(body)
        self.records.append(
            {
                "context_id": context_id,
                "method": rpc_method,
                "received": received,
                "sent": done.get("sent", time.time()),
                "ms": (done.get("end", time.perf_counter()) - start) * 1000,
            }
        )


async def _send_json(send: Callable, data: Any) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(name: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    calls = AgentCalls()
    app = Timed(build_agent_app(name, EchoExecutor(name, calls), calls, url + "/"))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task  # raises why it did not start
                return
            await asyncio.sleep(0.01)
        print(f"listening {url}", flush=True)
        # AgentCalls keeps every input and header: drop them, only /stats is needed.
        while not task.done():
            for seen in (calls.methods, calls.inputs, calls.context_ids, calls.message_ids):
                seen.clear()
            calls.headers.clear()
            await asyncio.sleep(5)
        await task

    # uvloop when installed, as `uvicorn.run` would (the server under test uses it too).
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port [0]")
    parser.add_argument("--name", default="echo", help="the agent's name in its card [echo]")
    args = parser.parse_args(argv)
    serve(args.name, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
