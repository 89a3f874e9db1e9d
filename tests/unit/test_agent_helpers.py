"""The pure parts of engine/agents.py: health URLs, masking, resolved agents."""

from __future__ import annotations

import pytest

from flowctl.engine.agents import (
    DEFAULT_RETRY_CONFIG,
    ResolvedAgent,
    _check_auth,
    health_url,
    masked_auth_config,
    resolve_row,
)
from flowctl.security.secrets import SecretBox


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://agent:8080", "http://agent:8080/health"),
        ("http://agent:8080/", "http://agent:8080/health"),
        ("https://agent/a2a/v1", "https://agent/a2a/v1/health"),
        ("https://agent/a2a/?x=1", "https://agent/a2a/health"),
    ],
)
def test_health_url(url: str, want: str) -> None:
    assert health_url(url) == want


def test_masked_auth_config() -> None:
    assert masked_auth_config({"auth_config_keys": ["header", "key"]}) == {
        "header": "****",
        "key": "****",
    }
    assert masked_auth_config({"auth_config_keys": None}) is None


def _row(box: SecretBox, auth_type: str, config: dict | None) -> dict:
    return {
        "id": "a1",
        "name": "agent",
        "url": "http://agent:8080",
        "auth_type": auth_type,
        "auth_config_encrypted": box.encrypt_json(config) if config else None,
        "timeout_ms": 5000,
        "retry_config": {"max_retries": 5, "initial_delay_ms": 200},
        "status": "active",
    }


def test_resolve_row_decrypts_and_builds_headers() -> None:
    box = SecretBox.generate()
    bearer = resolve_row(_row(box, "bearer", {"token": "t0k"}), box)
    assert bearer.auth_config == {"token": "t0k"}
    assert bearer.auth_headers() == {"Authorization": "Bearer t0k"}
    assert "t0k" not in repr(bearer)
    assert bearer.retry_config == {
        **DEFAULT_RETRY_CONFIG,
        "max_retries": 5,
        "initial_delay_ms": 200,
    }
    policy = bearer.retry_policy()
    assert (policy.max_retries, policy.initial_delay, policy.max_delay) == (5, 0.2, 30.0)

    apikey = resolve_row(_row(box, "apikey", {"key": "k"}), box)
    assert apikey.auth_headers() == {"X-API-Key": "k"}
    custom = resolve_row(_row(box, "apikey", {"key": "k", "header": "X-Agent"}), box)
    assert custom.auth_headers() == {"X-Agent": "k"}
    none = resolve_row(_row(box, "none", None), box)
    assert none.auth_config is None and none.auth_headers() == {}
    assert isinstance(none, ResolvedAgent)


@pytest.mark.parametrize(
    ("auth_type", "config", "fields"),
    [
        ("none", {}, []),
        ("none", {"token": "t"}, ["auth_config"]),
        ("bearer", {"token": "t"}, []),
        ("bearer", {}, ["auth_config.token"]),
        ("bearer", {"token": "t", "key": "k"}, ["auth_config.key"]),
        ("apikey", {"key": "k", "header": "X-Key"}, []),
        ("apikey", {"key": "k", "header": "Bad: header"}, ["auth_config.header"]),
        ("apikey", {"header": "X-Key"}, ["auth_config.key"]),
    ],
)
def test_check_auth(auth_type: str, config: dict, fields: list[str]) -> None:
    assert [e.loc for e in _check_auth(auth_type, config, config, loc="auth_config")] == fields
