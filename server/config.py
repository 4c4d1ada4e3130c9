"""One typed settings object: defaults, then a TOML file, then `IIOT_*` environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "IIOT_CONFIG"
OPCUA_POLICIES = ("none", "basic256sha256")


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the key and the file."""


def default_data_dir() -> Path:
    if os.name == "nt":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "iiot"
    return Path.home() / ".local" / "share" / "iiot"


class Settings(BaseSettings):
    """Every key may come from the TOML file (same name) or from `IIOT_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="IIOT_", extra="forbid", validate_default=True)

    data_dir: Path = Field(default_factory=default_data_dir, description="database, secrets and logs live here")
    database_url: str = Field("", description="default: sqlite:///<data_dir>/iiot.db")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    log_level: str = "info"
    event_loop: str = Field(
        "asyncio", description="uvloop: ~20% less CPU per MQTT message; needs coap_port = 0 (see docs/ingest.md)"
    )
    redis_url: str = Field("", description="empty: in-process bus and cache")
    mqtt_url: str = Field("", description="empty: MQTT ingestion off; e.g. mqtt://127.0.0.1:1883 or mqtts://host:8883")
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_ca_file: str = Field("", description="CA bundle for mqtts:// (empty: the system's)")
    mqtt_client_id: str = Field("iiot-server", description="also names the persistent session")
    mqtt_shared_group: str = Field("", description="non-empty: subscribe as $share/<group>/... to split load")
    mqtt_sparkplug: bool = Field(True, description="also ingest Sparkplug B (spBv1.0/<tenant>/...)")
    amqp_url: str = Field("", description="empty: AMQP ingestion off; e.g. amqp://guest:guest@127.0.0.1/")
    amqp_exchange: str = "iiot"
    amqp_queue: str = "iiot.telemetry"
    amqp_prefetch: int = Field(
        3000, ge=1, le=65535, description="unacknowledged messages in flight; the rate is about prefetch / commit cycle"
    )
    coap_host: str = "127.0.0.1"
    coap_port: int = Field(5683, ge=0, le=65535, description="0: CoAP off")
    opcua_host: str = "127.0.0.1"
    opcua_port: int = Field(4840, ge=0, le=65535, description="0: northbound OPC UA server off")
    opcua_security: str = Field("None,Basic256Sha256", description="policies offered by the OPC UA server")
    opcua_condition_nodes: bool = Field(
        False,
        description="also expose each alarm condition as browsable nodes: about 400 KB and 50 nodes each in asyncua"
        " (off: ~4 KB, no nodes), for small systems",
    )
    max_payload_bytes: int = Field(262_144, ge=1024, description="largest message an adapter accepts")

    jwt_secret: str = Field("", description="empty: generated once into <data_dir>/jwt_secret (0600)")
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(7 * 86_400, ge=300)
    login_max_failures: int = Field(5, ge=1, description="per tenant+user and per address, per window")
    login_failure_window_s: int = Field(60, ge=1)

    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_telemetry_items: int = Field(10_000, ge=1, description="values per telemetry request")
    max_future_skew_s: float = Field(300.0, ge=0, description="timestamps further ahead are refused")
    max_history_points: int = Field(10_000, ge=10)

    historian_batch_size: int = Field(10_000, ge=1)
    historian_flush_interval_s: float = Field(0.2, gt=0)
    historian_rollup_interval_s: float = Field(5.0, gt=0)
    historian_commit_spacing_s: float = Field(
        0.002, ge=0, le=0.1, description="under load, the least time from one commit's end to the next's start"
    )

    stream_heartbeat_s: float = Field(15.0, gt=0)
    stream_flush_interval_s: float = Field(0.05, gt=0, description="value frames coalesce this long")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @field_validator("event_loop")
    @classmethod
    def _loop(cls, value: str) -> str:
        if value not in ("asyncio", "uvloop"):
            raise ValueError("must be asyncio or uvloop")
        return value

    @field_validator("opcua_security")
    @classmethod
    def _security(cls, value: str) -> str:
        names = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [n for n in names if n.lower() not in OPCUA_POLICIES]
        if unknown or not names:
            raise ValueError(
                f"{', '.join(unknown) or 'nothing'}: expected a comma-separated list of None, Basic256Sha256"
            )
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if self.event_loop == "uvloop" and self.coap_port:
            # aiocoap's udp6 transport on uvloop stops answering after an observer goes away
            # (tests/server/test_ingest_coap.py fails on it): not a state to find in a plant.
            raise ValueError("event_loop = 'uvloop' needs coap_port = 0: CoAP is not reliable on uvloop")
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'iiot.db').as_posix()}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file: a service manager can override one key without editing it.
        return env_settings, init_settings


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (explicit path, else `IIOT_CONFIG`) and the environment."""
    raw_path = path or os.environ.get(CONFIG_ENV)
    values: dict[str, Any] = {}
    where = "environment"
    if raw_path:
        file = Path(raw_path).expanduser()
        where = str(file)
        try:
            values = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {file} is not valid TOML: {exc}") from None
        values = values.get("server", values)
    values |= overrides
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if not key:  # a rule across keys
            raise ConfigError(f"configuration ({where}): {msg.removeprefix('Value error, ')}") from None
        raise ConfigError(f"configuration key {key!r} ({where} or IIOT_{key.upper()}): {msg}") from None


def example_toml() -> str:
    """Every key with its default, generated from the model so the example can't drift."""
    lines = ["# iiot-server configuration. Every key may also be set as IIOT_<KEY> in the environment.", "[server]"]
    for name, info in Settings.model_fields.items():
        if info.description:
            lines.append(f"# {info.description}")
        if name == "data_dir":
            lines.append(
                '# data_dir = "~/.local/share/iiot"  (Windows: %PROGRAMDATA%\\iiot; the packages set /var/lib/iiot)'
            )
            continue
        default = info.get_default(call_default_factory=True)
        lines.append(f"{name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
