"""Settings: read from the environment (``MLPLANE_*``) and ``mlplane.toml`` in one place.

Precedence, highest first: keyword overrides passed to :func:`load_settings`,
environment variables, ``mlplane.toml`` (``$MLPLANE_CONFIG``, else
``./mlplane.toml``, else ``$MLPLANE_HOME/mlplane.toml``), defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mlplane.errors import InvalidInput


def _default_home() -> Path:
    return Path(os.environ.get("MLPLANE_HOME") or Path.home() / ".mlplane")


def _toml_path() -> Path | None:
    explicit = os.environ.get("MLPLANE_CONFIG")
    if explicit:
        return Path(explicit)
    for candidate in (Path.cwd() / "mlplane.toml", _default_home() / "mlplane.toml"):
        if candidate.is_file():
            return candidate
    return None


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


class Settings(BaseSettings):
    """Every knob of mlplane, typed. Build one with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix="MLPLANE_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=_default_home)
    uri: str | None = None
    """Where the SDK sends calls: a path, ``sqlite:///…`` or ``postgresql://…``
    (embedded), or ``http(s)://…`` (remote server). Default: embedded on ``home``."""
    db_url: str | None = None
    artifacts_url: str | None = None
    token: SecretStr | None = None
    master_key: SecretStr | None = None
    """Base64 of 32 bytes (or ``vN:BASE64`` after a rotation); else a key file is created
    under ``home`` (mode 0600)."""
    master_key_previous: SecretStr | None = None
    """Older master key versions (``v1:BASE64,…``) kept while data is still wrapped under
    them; only with ``master_key``."""
    ca_bundle: Path | None = None
    """PEM file of the CA(s) the SDK trusts for an ``https://`` server (a private CA);
    default: the public CAs. Certificates are always verified."""

    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    heartbeat_timeout_s: float = Field(default=180.0, gt=0)
    flush_interval_s: float = Field(default=1.0, gt=0)
    flush_max_points: int = Field(default=20_000, gt=0)
    buffer_max_points: int = Field(default=2_000_000, gt=0)
    retry_max_s: float = Field(default=60.0, ge=0)
    http_timeout_s: float = Field(default=60.0, gt=0)

    auth: Literal["token", "none"] = "token"
    """How the server authenticates callers: ``token`` (API tokens, as Bearer or as the
    Basic password), or ``none`` (every caller acts as admin; loopback binds only)."""

    tls_cert: Path | None = None
    """PEM certificate (chain) ``mlplane server`` serves HTTPS with; needs ``tls_key``."""
    tls_key: Path | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Browser origins (``https://host[:port]``) allowed to call the API cross-origin;
    empty: none. In the environment: comma-separated."""
    rate_limit_per_s: float = Field(default=200.0, ge=0)
    """Requests per second each token (each address with ``auth = none``) may sustain,
    per server worker; 0 turns the limit off."""
    rate_limit_burst: int = Field(default=400, ge=1)

    max_request_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_batch_points: int = Field(default=200_000, gt=0)
    auto_upgrade: bool = False

    cache_max_bytes: int = Field(default=10 * 1024**3, ge=0)
    """Bound of the local cache of decrypted dataset versions (SQL, ``Dataset.path()``)."""
    gc_grace_s: float = Field(default=24 * 3600.0, ge=0)
    """``mlplane gc`` keeps unreferenced chunks younger than this (a writer may be using them)."""
    upload_expiry_s: float = Field(default=24 * 3600.0, gt=0)
    """``mlplane gc`` drops multipart artifact uploads started longer ago than this and never
    completed or aborted, so their parts become garbage (kept by the grace period first)."""

    secrets_policy: Literal["refuse", "mask"] = "refuse"
    """What a param or tag value that looks like a credential (an API token, a key, a
    URL's password) gets: ``refuse`` (an error naming the key and the kind of secret) or
    ``mask`` (stored with the secret replaced by ``[redacted:<kind>]``)."""

    log_system_metrics: bool = False
    system_metrics_interval_s: float = Field(default=10.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        return [o.strip() for o in v.split(",") if o.strip()] if isinstance(v, str) else v

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _check_origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            # An origin is exactly what a browser sends in ``Origin``; anything else
            # (a path, a trailing slash, "*") would never match or would open it to all.
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return v

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

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
        toml = _toml_path()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @property
    def resolved_db_url(self) -> str:
        """The metadata database URL, defaulting to SQLite under ``home``."""
        if self.db_url:
            return self.db_url
        if self.uri and self.uri.startswith(("sqlite:", "postgresql:", "postgresql+")):
            return self.uri
        return f"sqlite:///{self.home / 'mlplane.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        """The blob store URL, defaulting to a folder under ``home``."""
        return self.artifacts_url or (self.home / "blobs").as_uri()

    @property
    def is_remote(self) -> bool:
        """True when the SDK talks to a server over HTTP."""
        return bool(self.uri and self.uri.startswith(("http://", "https://")))


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and ``mlplane.toml``; keywords win."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"MLPLANE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise InvalidInput(f"invalid mlplane settings: {problems}") from None
    if settings.uri and not settings.is_remote and "://" not in settings.uri:
        # A bare path as MLPLANE_URI means "embedded, home here".
        settings = settings.model_copy(
            update={"home": Path(settings.uri).expanduser(), "uri": None}
        )
    return settings
