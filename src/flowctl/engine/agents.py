"""Agents: registration, updates, soft delete, health checks, and resolving
agents (credentials decrypted) for the `agent` step type.

The API never sees a credential again once it is written: `auth_config` is
encrypted with the server's key (security/secrets.py) before it reaches the
store, and responses show only its key names. Decryption happens in `resolve`,
which the worker calls when it runs an `agent` step.

Resolved agents are cached in the process (see `AgentCache`): an `agent` step
would otherwise pay a database read and a Fernet decrypt every time. Every
create, update and delete through this service empties the cache once its
transaction is over, so a change made through this process's API applies to
every step that starts after the request returned. Changes made by another
process (PostgreSQL, several servers) apply within `AgentCache.ttl` seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from flowctl.config import Settings
from flowctl.domain.backoff import RetryPolicy
from flowctl.domain.graph import FieldError
from flowctl.engine.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ServiceError,
    call_store,
)
from flowctl.engine.service import new_id
from flowctl.security.egress import EgressDenied, EgressPolicy, guarded_client
from flowctl.security.secrets import SecretBox
from flowctl.store import agents as store
from flowctl.store.database import Database

# How long a resolved agent is reused without reading it again. One process owns
# a SQLite data dir (the data-dir lock), and every change there goes through its
# AgentService, which empties the cache: the TTL is only a safety net. With
# PostgreSQL, other servers may change an agent: they are seen within 1 s.
CACHE_TTL_SQLITE_S = 30.0
CACHE_TTL_POSTGRES_S = 1.0
AUTH_TYPES = ("none", "bearer", "apikey")
AGENT_STATUSES = ("active", "inactive", "deleted")
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_RETRY_CONFIG: dict[str, Any] = {
    "max_retries": 3,
    "initial_delay_ms": 1000,
    "max_delay_ms": 30_000,
    "backoff_multiplier": 2.0,
}
DEFAULT_APIKEY_HEADER = "X-API-Key"
# What auth_config holds for each auth_type: (required keys, optional keys).
AUTH_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "none": (frozenset(), frozenset()),
    "bearer": (frozenset({"token"}), frozenset()),
    "apikey": (frozenset({"key"}), frozenset({"header"})),
}
MASK = "****"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class AgentNotFound(NotFound):
    def __init__(self, agent_id: str):
        super().__init__("Agent", agent_id)
        self.message = f"Agent with id '{agent_id}' not found"
        self.args = (self.message,)


class DuplicateName(ServiceError):
    status_code = 400


@dataclass(frozen=True, slots=True)
class ResolvedAgent:
    """An agent as an `agent` step needs it: where, how to authenticate (in
    clear), how long to wait and how to retry."""

    id: str
    name: str
    url: str
    auth_type: str  # none | bearer | apikey
    auth_config: dict[str, str] | None  # decrypted
    timeout_ms: int
    retry_config: dict[str, Any]  # max_retries, initial_delay_ms, max_delay_ms, backoff_multiplier
    status: str  # active | inactive

    def auth_headers(self) -> dict[str, str]:
        """The HTTP headers that carry this agent's credentials."""
        config = self.auth_config or {}
        if self.auth_type == "bearer":
            return {"Authorization": f"Bearer {config['token']}"}
        if self.auth_type == "apikey":
            return {config.get("header") or DEFAULT_APIKEY_HEADER: config["key"]}
        return {}

    def retry_policy(self) -> RetryPolicy:
        rc = self.retry_config
        return RetryPolicy(
            max_retries=rc["max_retries"],
            initial_delay=rc["initial_delay_ms"] / 1000,
            max_delay=rc["max_delay_ms"] / 1000,
            backoff_factor=rc["backoff_multiplier"],
        )

    def __repr__(self) -> str:  # never print the credentials
        return f"ResolvedAgent(name={self.name!r}, url={self.url!r}, auth_type={self.auth_type!r})"


def resolve_row(row: Mapping[str, Any], box: SecretBox) -> ResolvedAgent:
    """A stored agent row with its credentials decrypted (DecryptionFailed if
    `box` holds another key than the one that encrypted them)."""
    encrypted = row["auth_config_encrypted"]
    return ResolvedAgent(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        auth_type=row["auth_type"],
        auth_config=box.decrypt_json(encrypted) if encrypted else None,
        timeout_ms=row["timeout_ms"],
        retry_config={**DEFAULT_RETRY_CONFIG, **(row["retry_config"] or {})},
        status=row["status"],
    )


def masked_auth_config(row: Mapping[str, Any]) -> dict[str, str] | None:
    """`auth_config` as responses show it: its keys, every value masked."""
    keys = row.get("auth_config_keys")
    return dict.fromkeys(keys, MASK) if keys else None


def health_url(url: str) -> str:
    """`<agent url>/health`, whatever path the agent URL has."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(path=parsed.path.rstrip("/") + "/health", query=None))


def _check_auth(
    auth_type: str, keys: Iterable[str], given: dict[str, Any] | None, *, loc: str
) -> list[FieldError]:
    """The keys auth_config must have for auth_type; the values when given."""
    required, optional = AUTH_KEYS[auth_type]
    keys = set(keys)
    errors: list[FieldError] = []
    if auth_type == "none":
        if keys:
            errors.append(
                FieldError(loc, "auth_config is only used with auth_type bearer or apikey")
            )
        return errors
    for key in sorted(required - keys):
        errors.append(
            FieldError(
                f"{loc}.{key}", f"auth_type '{auth_type}' needs auth_config.{key}", "missing"
            )
        )
    for key in sorted(keys - required - optional):
        allowed = ", ".join(sorted(required | optional))
        errors.append(
            FieldError(
                f"{loc}.{key}",
                f"unknown key for auth_type '{auth_type}' (allowed: {allowed})",
                "extra_forbidden",
            )
        )
    header = (given or {}).get("header")
    if header is not None and not _HEADER_NAME.match(header):
        errors.append(FieldError(f"{loc}.header", "not a valid HTTP header name"))
    return errors


def _check_retry(config: Mapping[str, Any]) -> list[FieldError]:
    if config["initial_delay_ms"] > config["max_delay_ms"]:
        return [
            FieldError(
                "retry_config.initial_delay_ms",
                f"must not exceed max_delay_ms ({config['max_delay_ms']})",
            )
        ]
    return []


class AgentCache:
    """Resolved agents by name, each kept `ttl` seconds.

    `invalidate()` empties it and bumps a generation: a lookup that read the
    database before an invalidation does not store what it read (it may be
    older than the change), so a stale row never outlives the change that
    invalidated it. Names that resolve to nothing are not cached (their steps
    fail anyway, and a later create must be seen at once).
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self.generation = 0
        self._entries: dict[str, tuple[float, ResolvedAgent]] = {}

    def get(self, name: str) -> ResolvedAgent | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[name]
            return None
        return entry[1]

    def put(self, agents: Mapping[str, ResolvedAgent], generation: int) -> None:
        """Stores what a lookup that started at `generation` read, unless
        the cache was invalidated meanwhile."""
        if generation != self.generation or self.ttl <= 0:
            return
        expires = time.monotonic() + self.ttl
        for name, agent in agents.items():
            self._entries[name] = (expires, agent)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()


class AgentService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        box: SecretBox | None = None,
        *,
        cache_ttl: float | None = None,
    ):
        self.db = db
        self.settings = settings
        self._box = box
        if cache_ttl is None:
            cache_ttl = CACHE_TTL_POSTGRES_S if db.is_postgres else CACHE_TTL_SQLITE_S
        self.cache = AgentCache(cache_ttl)

    @property
    def box(self) -> SecretBox:
        """The key, loaded (or generated into the data dir) on first use."""
        if self._box is None:
            self._box = SecretBox.from_settings(self.settings)
        return self._box

    async def _call(self, fn, *args, write: bool = False, **kwargs):
        try:
            if not write:
                return await call_store(self.db, fn, *args, **kwargs)
            try:
                return await call_store(self.db, fn, *args, write=True, **kwargs)
            finally:
                # Whatever happened (an error may come after the commit), the
                # next step reads the agent again.
                self.cache.invalidate()
        except store.DuplicateAgentName as exc:
            raise DuplicateName(str(exc)) from None
        except store.AgentDeleted as exc:
            raise Conflict(
                f"Agent '{exc.agent_id}' is deleted; a deleted agent cannot be changed"
            ) from None

    def _auth_columns(self, auth_config: dict[str, str] | None) -> dict[str, Any]:
        if not auth_config:
            return {"auth_config_encrypted": None, "auth_config_keys": None}
        return {
            "auth_config_encrypted": self.box.encrypt_json(auth_config),
            "auth_config_keys": sorted(auth_config),
        }

    # --- the API -------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        url: str,
        description: str | None = None,
        auth_type: str = "none",
        auth_config: dict[str, str] | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        retry_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        retry = {**DEFAULT_RETRY_CONFIG, **(retry_config or {})}
        errors = _check_auth(auth_type, auth_config or {}, auth_config, loc="auth_config")
        errors += _check_retry(retry)
        if errors:
            raise InvalidInput(errors)
        row = {
            "id": new_id(),
            "name": name,
            "url": url,
            "description": description,
            "auth_type": auth_type,
            **self._auth_columns(auth_config),
            "timeout_ms": timeout_ms,
            "retry_config": retry,
            "status": "active",
        }
        return await self._call(store.create_agent, row, write=True)

    async def get(self, agent_id: str) -> dict[str, Any]:
        row = await self._call(store.get_agent, agent_id)
        if row is None:
            raise AgentNotFound(agent_id)
        return row

    async def list_agents(
        self, *, status: str | None, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Agents of one status, or by default every one that is not deleted."""
        statuses = (status,) if status else store.LIVE_STATUSES
        return await self._call(
            store.list_agents,
            statuses=statuses,
            offset=(page - 1) * page_size,
            limit=page_size,
        )

    async def update(self, agent_id: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Change only the fields in `patch`; `retry_config` merges key by key.

        `auth_config`, when given, replaces the stored one whole; setting
        `auth_type` to `none` drops it. The result must be consistent (an
        `apikey` agent has a `key`), checked against the stored row in the same
        transaction as the write.
        """
        # Encrypt outside the transaction (the key may be loaded from disk once).
        new_auth = patch.get("auth_config")
        auth_columns = self._auth_columns(new_auth) if "auth_config" in patch else None

        def changes_for(row: dict[str, Any]) -> dict[str, Any]:
            changes: dict[str, Any] = {}
            for key in ("name", "url", "description", "timeout_ms", "status"):
                if key in patch:
                    changes[key] = patch[key]
            errors: list[FieldError] = []
            if "retry_config" in patch:
                merged = {
                    **DEFAULT_RETRY_CONFIG,
                    **(row["retry_config"] or {}),
                    **(patch["retry_config"] or {}),
                }
                errors += _check_retry(merged)
                changes["retry_config"] = merged
            auth_type = patch.get("auth_type", row["auth_type"])
            if "auth_type" in patch:
                changes["auth_type"] = auth_type
            if auth_columns is not None:
                errors += _check_auth(auth_type, new_auth or {}, new_auth, loc="auth_config")
                changes.update(auth_columns)
            elif auth_type == "none":
                changes.update(self._auth_columns(None))  # no longer used: forget it
            else:
                keys = row["auth_config_keys"] or []
                errors += [
                    FieldError(
                        e.loc,
                        f"{e.message}: send auth_config with the new auth_type",
                        e.type,
                    )
                    for e in _check_auth(auth_type, keys, None, loc="auth_config")
                ]
            if errors:
                raise InvalidInput(errors)
            return changes

        row = await self._call(store.update_agent, agent_id, changes_for, write=True)
        if row is None:
            raise AgentNotFound(agent_id)
        return row

    async def delete(self, agent_id: str) -> None:
        if not await self._call(store.delete_agent, agent_id, write=True):
            raise AgentNotFound(agent_id)

    async def check_health(self, agent_id: str) -> dict[str, Any]:
        """GET `<url>/health` within the agent's timeout. Answers, never raises
        for the agent's sake: a 2xx is healthy, anything else says why not.
        No credentials are sent (they are only decrypted to run steps)."""
        agent = await self.get(agent_id)
        policy = EgressPolicy.from_settings(self.settings)
        return await probe_health(agent["url"], agent["timeout_ms"], policy)

    # --- for the `agent` step type -------------------------------------------

    async def resolve(self, names: Iterable[str]) -> dict[str, ResolvedAgent]:
        """The agents (active or inactive; deleted ones are absent) with these
        names, credentials decrypted. The caller decides what inactive means.

        Served from the cache when it can (see the module doc)."""
        found: dict[str, ResolvedAgent] = {}
        missing: list[str] = []
        for name in names:
            agent = self.cache.get(name)
            if agent is None:
                missing.append(name)
            else:
                found[name] = agent
        if missing:
            generation = self.cache.generation
            rows = await self._call(store.get_agents_by_names, missing)
            box = self.box
            read = {name: resolve_row(row, box) for name, row in rows.items()}
            self.cache.put(read, generation)
            found.update(read)
        return found

    async def active_names(self, names: Iterable[str]) -> set[str]:
        return await self._call(store.active_agent_names, list(names))


async def probe_health(url: str, timeout_ms: int, policy: EgressPolicy) -> dict[str, Any]:
    target = health_url(url)
    timeout_s = timeout_ms / 1000
    started = time.perf_counter()

    def unhealthy(error: str, status_code: int | None = None, elapsed: float | None = None):
        return {
            "healthy": False,
            "status_code": status_code,
            "response_time_ms": elapsed,
            "error": error,
        }

    try:
        async with (
            asyncio.timeout(timeout_s),
            guarded_client(policy, timeout=timeout_s, follow_redirects=False) as client,
            client.stream("GET", target, headers={"Accept": "application/json"}) as response,
        ):
            # The status line and headers are the answer; the body is not read.
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            status = response.status_code
    except EgressDenied as exc:
        return unhealthy(str(exc))
    except (TimeoutError, httpx.TimeoutException):
        return unhealthy(f"Connection timeout after {timeout_ms}ms")
    except httpx.ConnectError as exc:
        if _refused(exc):
            return unhealthy(f"Connection refused: nothing accepts connections at {target}")
        return unhealthy(f"Connection failed to {target}: {exc or type(exc).__name__}")
    except httpx.HTTPError as exc:
        return unhealthy(f"{type(exc).__name__} calling {target}: {exc}")
    if 200 <= status < 300:
        return {"healthy": True, "status_code": status, "response_time_ms": elapsed, "error": None}
    return unhealthy(f"HTTP {status}", status, elapsed)


def _refused(exc: BaseException) -> bool:
    """True if a connection error comes down to ECONNREFUSED."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or "refused" in str(current).lower():
            return True
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(getattr(current, "exceptions", ()))
    return False
