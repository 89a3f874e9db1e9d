"""All settings in one place: `FLOWCTL_*` environment variables, an optional YAML
file (`FLOWCTL_CONFIG=path.yaml`, keys without the prefix), then defaults that
work on a laptop. Command-line flags override all of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from flowctl.security.egress import parse_networks


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWCTL_", extra="ignore")

    # --- where things live
    data_dir: Path = Field(Path(".flowctl"), description="SQLite file and lock live here")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; postgresql://... for scale-out. Default: SQLite in data_dir",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="NORMAL survives any process crash; FULL also survives power loss (slower)",
    )

    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s), comma-separated, encrypting agent credentials at rest; "
        "default: generated into data_dir/secret.key. Set it on every process on PostgreSQL",
    )

    # --- HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    insecure_no_auth: bool = Field(False, description="allow a non-loopback bind without auth")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger request bodies get 413")
    max_json_depth: int = Field(32, ge=4, le=512, description="deeper JSON bodies get 400")
    max_steps_per_workflow: int = Field(10_000, ge=1)

    # --- engine
    run_worker: bool = Field(True, description="run the engine and a worker pool in this process")
    worker_concurrency: int = Field(100, ge=1, le=10_000, description="steps run at once here")
    lease_ttl: float = Field(
        30.0, gt=0.2, description="seconds a claimed step stays ours unrenewed"
    )
    maintenance_interval: float = Field(
        5.0, gt=0, description="at most this long between lease-expiry and timeout sweeps"
    )
    shutdown_grace: float = Field(10.0, ge=0, description="seconds running steps get to finish")
    max_output_bytes: int = Field(1 << 20, ge=1024, description="a step output larger fails it")
    db_pool_size: int = Field(10, ge=1)

    # --- outbound calls (security/egress.py)
    egress_allow: str = Field(
        "",
        description="networks outbound calls may reach although not public, e.g. "
        "'10.0.0.0/8,192.168.1.5' (comma-separated addresses or CIDRs)",
    )
    egress_loopback: bool = Field(
        True, description="outbound calls may reach loopback (local mode: the API has no auth)"
    )

    @field_validator("egress_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a bad entry stops the start, naming it
        return value

    # --- logging
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("FLOWCTL_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def db_url(self) -> str:
        """The database to use: FLOWCTL_DATABASE_URL, or SQLite inside data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(self.data_dir) / 'flowctl.db').resolve()}"

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_ttl / 3

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with command-line flags applied (None means the flag was not given)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return Settings.model_validate({**self.model_dump(), **given})
