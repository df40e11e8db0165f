"""Settings, one pydantic-settings class per concern, all read from ``ISSUEMAP_*`` variables.

Nothing here is read at import time: callers build the settings object they need and pass
it on, so tests and notebooks can point the same code at another database.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def local_data_dir() -> Path:
    """``.data/postgres`` in the current folder, or in the nearest parent folder holding one.

    A working-folder default, like git's: ``make run`` keeps its cluster at the top of the
    checkout, and a notebook (whose kernel runs in ``notebooks/``) finds that same cluster.
    """
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / ".data" / "postgres").is_dir():
            return folder / ".data" / "postgres"
    return here / ".data" / "postgres"


def demo_gazetteer_path() -> Path:
    """The demo city's gazetteer, shipped as package data of ``geo`` (``geo/demo/``)."""
    # A package installed from a wheel or used from a checkout lies on disk as files.
    return Path(str(resources.files("geo") / "demo" / "gazetteer.csv"))


class DatabaseSettings(BaseSettings):
    """Where the PostGIS database is, or where to keep the local one we start ourselves."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of an existing PostGIS database. When unset, issuemap "
        "starts its own PostgreSQL cluster in `data_dir`.",
    )
    data_dir: Path = Field(
        default_factory=local_data_dir,
        description="Folder of the local cluster started when no database URL is given "
        "(default: `.data/postgres` in the current folder or the nearest parent holding one).",
    )
    local_database: str = Field(default="issuemap", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Connections of the shared pool (and as many again in overflow) that "
        "intake, health, pages and the API use. Exports never take one of these.",
    )
    pool_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=300.0,
        description="Longest a request waits for a connection of the shared pool; after "
        "that it is answered 503 with Retry-After.",
    )
    export_max_concurrent: int = Field(
        default=3,
        ge=1,
        le=50,
        description="File exports (CSV, GeoPackage) running at once in one worker. Each "
        "holds one connection of a pool of this size kept apart from the shared pool, so "
        "slow downloads cannot starve intake or health; one more export is answered 503 "
        "with Retry-After.",
    )
    export_max_seconds: float = Field(
        default=900.0,
        ge=1.0,
        le=86_400.0,
        description="Longest one export may take, download included: a client that stops "
        "reading is cut off then, and its connection and place are freed.",
    )

    database_prepared_statements: bool = Field(
        default=True,
        description="Let PostgreSQL prepare the statements run often (intake, the rate "
        "limit, any query run five times on a connection). Turn off behind a pgBouncer "
        "older than 1.21 in transaction mode, which sends a later transaction to another "
        "server connection that does not know them.",
    )

    database_session_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the same database for the connections that keep a "
        "session: the live map's LISTEN, and OGC API Features (tipg keeps functions and "
        "settings per connection). Unset: `database_url`. Behind a pgBouncer in "
        "transaction mode, point it at PostgreSQL itself or at a pgBouncer entry in "
        "session mode; /ogc then reads only there, not the replicas.",
    )

    database_replica_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="SQLAlchemy URLs of PostgreSQL streaming replicas of the database, "
        "comma-separated. Read-only work (map pages, exports, searches, tiles, the ward "
        "dashboard) goes to a healthy one in turn; intake, workflow, sign-in and any read "
        "right after the caller wrote stay on the primary. Empty: everything on the primary.",
    )
    database_replica_max_lag_s: float = Field(
        default=5.0,
        gt=0.0,
        le=3600.0,
        description="A replica whose replay is this many seconds behind the primary, or "
        "that does not answer, is skipped until it catches up; with none left, reads go to "
        "the primary.",
    )
    database_replica_check_s: float = Field(
        default=2.0,
        gt=0.0,
        le=60.0,
        description="How often each worker checks its replicas' health and lag.",
    )
    database_replica_after_write_s: float = Field(
        default=10.0,
        ge=0.0,
        le=3600.0,
        description="For this long after a caller (session, key, or address) writes, its "
        "reads go to the primary, so it sees its own write on a replica that lags.",
    )

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_replicas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _replica_urls(cls, value: list[str]) -> list[str]:
        for item in value:
            cls._postgres_url(item)
        return value

    @field_validator("database_url", "database_session_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        # pydantic's PostgresDsn refuses unix-socket URLs (empty host), which we use.
        if value is None or not value.strip():
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as error:
            raise ValueError(f"not a database URL: {error}") from error
        if not url.drivername.startswith("postgres"):
            raise ValueError("must be a postgresql:// URL")
        return value


class RoutingSettings(BaseSettings):
    """How reports are matched to wards, zones and teams."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    snap_distance_m: float = Field(
        default=100.0,
        ge=0.0,
        le=10_000.0,
        description="A point outside every ward but within this many metres of one is "
        "assigned to the nearest ward and flagged as snapped.",
    )


class BoundarySettings(BaseSettings):
    """Guards on boundary imports, so no file can take the city offline."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_BOUNDARY_", extra="ignore")

    max_area_loss: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="A replace that leaves more than this share of the area the layer "
        "covers now uncovered is refused unless forced.",
    )
    max_vertices: int = Field(
        default=25_000,
        ge=4,
        le=10_000_000,
        description="Most vertices one ward or zone may have. Every report in a ward reads "
        "its whole outline (bench/boundary_vertices.py); the largest real feature seen has "
        "12,110.",
    )
    upload_max_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        le=2 * 1024 * 1024 * 1024,
        description="Largest boundary file the admin upload accepts, in bytes.",
    )


class ServerSettings(BaseSettings):
    """How the HTTP service runs."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    load_demo: bool = Field(
        default=True,
        description="Load the generated demo city when the database holds no wards.",
    )
    run_as_user: str = Field(
        default="issuemap",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Started as root, the web workers run as this unprivileged user (created "
        "as a system user if missing); root keeps only the process that watches them and "
        "PostgreSQL. Neither root nor postgres is accepted.",
    )


class IntakeSettings(BaseSettings):
    """Limits and rules applied when reports arrive."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    photo_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest photo accepted, in bytes.",
    )
    photos_per_report: int = Field(default=5, ge=0, le=20)
    photo_max_pixels: int = Field(
        default=25_000_000,
        ge=1,
        # Below Pillow's own decompression-bomb warning (89 MP), which would only add noise.
        le=80_000_000,
        description="Largest photo accepted, in pixels (width × height), read from the "
        "file's header before anything is decoded. 25 MP takes a 24 MP phone photo; a "
        "few kilobytes of PNG can claim far more, and each pixel costs up to 4 bytes.",
    )
    photo_public_max_edge: int = Field(
        default=2048,
        ge=256,
        le=16_384,
        description="Longest side of the public copy of a photo, in pixels; larger photos "
        "are scaled down (JPEGs already while decoding). Staff keep the original.",
    )
    photo_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Photos decoded at the same time in one server process; others wait.",
    )
    duplicate_radius_m: float = Field(
        default=50.0,
        gt=0.0,
        le=5_000.0,
        description="Open reports of the same category this close are likely duplicates.",
    )
    duplicate_window_days: int = Field(default=14, ge=1, le=365)
    idempotency_ttl_hours: float = Field(
        default=24.0,
        gt=0.0,
        le=24.0 * 30,
        description="How long an Idempotency-Key replays its first answer; after that the "
        "caller may use it for a new request.",
    )


class GeocoderSettings(BaseSettings):
    """How addresses are turned into points."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    geocoder: str = Field(
        default="gazetteer",
        pattern=r"^(gazetteer|nominatim)$",
        description="'gazetteer' (offline, from gazetteer_path) or 'nominatim' (geopy).",
    )
    gazetteer_path: Path = Field(
        default_factory=demo_gazetteer_path,
        description="CSV of named places (see `geo.city.geocoding.load_gazetteer`); the "
        "default is the demo city's, shipped with issuemap.",
    )
    nominatim_url: str = Field(default="https://nominatim.openstreetmap.org")
    nominatim_user_agent: str = Field(default="issuemap")
    nominatim_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)


class Open311Settings(BaseSettings):
    """Open311 GeoReport v2 endpoint settings."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_OPEN311_", extra="ignore")

    jurisdiction_id: str = Field(default="issuemap.demo", min_length=1, max_length=100)
    contact: str = Field(default="City service desk")
    max_requests: int = Field(default=1000, ge=1, le=10_000)


class PrivacySettings(BaseSettings):
    """What the public may learn about where a report is (the rule is ``geo.access.policy``)."""

    # The variable keeps the name it had when only the public map rounded locations:
    # ISSUEMAP_MAP_PUBLIC_ROUNDING_M.
    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_MAP_", extra="ignore")

    public_rounding_m: float = Field(
        default=100.0,
        ge=0.0,
        le=5_000.0,
        description="Everyone without a staff key sees report locations snapped to a grid "
        "this many metres wide, everywhere (lists, exports, Open311, live events, maps); "
        "heat-map cells are never finer. 0 publishes exact locations.",
    )


class MapSettings(BaseSettings):
    """How the map pages look and what they reveal."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_MAP_", extra="ignore")

    tiles_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="XYZ tile URL template of the base map, or 'none' for no base map "
        "(the only third-party URL a map page refers to).",
    )
    tiles_attribution: str = Field(
        default='&copy; <a href="https://www.openstreetmap.org/copyright">'
        "OpenStreetMap</a> contributors"
    )
    frame_ancestors: list[str] = Field(
        default_factory=lambda: ["'self'"],
        description="Sites allowed to embed the public map in an iframe (CSP "
        'frame-ancestors sources), e.g. ["\'self\'", "https://city.example"].',
    )
    marker_cap: int = Field(
        default=500,
        ge=1,
        le=5_000,
        description="Most report markers one page carries; the rest are reached by zooming "
        "or paging.",
    )
    heat_cells: int = Field(
        default=2_500,
        ge=100,
        le=20_000,
        description="Most heat-map grid cells one page carries; the grid coarsens to fit.",
    )
    inline_features_max: int = Field(
        default=300,
        ge=0,
        le=100_000,
        description="Most wards or zones a map page carries inline as GeoJSON; a larger "
        "layer is drawn from vector tiles (/tiles), so a page stays small at any scale.",
    )

    @field_validator("frame_ancestors")
    @classmethod
    def _one_source_each(cls, value: list[str]) -> list[str]:
        # Each item becomes part of a header: refuse anything that could end the directive.
        for source in value:
            if not source or any(c in source for c in " ;,\r\n\t"):
                raise ValueError(f"{source!r} is not one CSP source")
        return value

    @property
    def tiles(self) -> str | None:
        """The tile URL template, or ``None`` when the base map is switched off."""
        value = self.tiles_url.strip()
        return None if value.lower() in {"", "none"} else value


DEFAULT_CITY_TIMEZONE = "Asia/Bangkok"
"""``ISSUEMAP_CITY_TIMEZONE`` when it is not set."""


class CitySettings(BaseSettings):
    """Facts about the city the service runs for."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    city_timezone: str = Field(
        default=DEFAULT_CITY_TIMEZONE,
        max_length=100,
        description="IANA time zone the resident pages and the public list view tell times "
        "in (the city's, whatever the server's clock says), e.g. Asia/Bangkok.",
    )

    @field_validator("city_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as error:
            raise ValueError("is not an IANA time zone, such as Asia/Bangkok") from error
        return name

    @property
    def zone(self) -> ZoneInfo:
        """The city's time zone."""
        return ZoneInfo(self.city_timezone)


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to hand mail over, as ``ISSUEMAP_SMTP_URL`` says."""

    host: str
    port: int
    tls: bool
    """``smtps://``: TLS from the first byte (port 465 by default)."""
    starttls: bool
    """``smtp://...?starttls=true``: upgrade the plain connection before logging in."""
    username: str | None
    password: str | None


def parse_smtp_url(value: str) -> SmtpServer:
    """Read ``smtp://user:pass@host:port`` or ``smtps://...``; ``?starttls=true`` upgrades.

    User and password may be percent-encoded (``%40`` for ``@``).
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError("must be an smtp:// or smtps:// URL")
    if not parts.hostname:
        raise ValueError("names no mail server (smtp://host:port)")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"bad port: {error}") from error
    options = {k.lower(): v.lower() for k, v in parse_qsl(parts.query)}
    unknown = set(options) - {"starttls"}
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}; only starttls")
    starttls = options.get("starttls", "false") in {"1", "true", "yes", "on"}
    tls = parts.scheme == "smtps"
    if tls and starttls:
        raise ValueError("smtps:// is TLS already; starttls is for smtp://")
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if tls else 25),
        tls=tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class NotificationSettings(BaseSettings):
    """How residents and other systems hear back: e-mail over SMTP, webhooks, the outbox."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    smtp_url: str | None = Field(
        default=None,
        description="Mail server, e.g. smtp://user:pass@host:587?starttls=true or "
        "smtps://user:pass@host:465. Unset: no e-mail is sent, and none is queued.",
    )
    mail_from: str = Field(
        default="issuemap <noreply@localhost>",
        min_length=3,
        max_length=200,
        description="The From address of every e-mail.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        max_length=500,
        description="The service's public address, for links in e-mails and webhook calls "
        "(a report's status page is {public_url}/r/{token}).",
    )
    smtp_timeout_s: float = Field(default=30.0, gt=0.0, le=300.0)
    webhook_timeout_s: float = Field(
        default=10.0, gt=0.0, le=120.0, description="Longest wait for a webhook's answer."
    )
    outbox_max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description="Tries of one e-mail or webhook call before it is given up on.",
    )
    outbox_retry_s: float = Field(
        default=30.0,
        ge=0.0,
        le=86_400.0,
        description="Wait before the first retry; each later wait doubles.",
    )
    outbox_retry_max_s: float = Field(
        default=3_600.0,
        ge=0.0,
        le=7 * 86_400.0,
        description="Longest wait between two tries.",
    )
    outbox_poll_s: float = Field(
        default=5.0,
        gt=0.0,
        le=3_600.0,
        description="How often the delivery worker looks for messages that are due.",
    )
    outbox_keep_days: float = Field(
        default=30.0,
        gt=0.0,
        le=3_650.0,
        description="Delivered messages are deleted after this many days; messages given "
        "up on are kept for staff to see why.",
    )

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_smtp_url(value)
        return value.strip()

    @field_validator("mail_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        # The value becomes a header: refuse anything that could start another one.
        if any(c in value for c in "\r\n\x00") or "@" not in value:
            raise ValueError("must be one e-mail address, e.g. City <noreply@city.example>")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s):// address, e.g. https://city.example")
        if parts.query or parts.fragment or any(c.isspace() for c in value.strip()):
            raise ValueError("must be a plain address without query, fragment or spaces")
        return value.strip().rstrip("/")

    @property
    def smtp(self) -> SmtpServer | None:
        """The mail server, or ``None`` when e-mail is switched off."""
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None

    @property
    def email_enabled(self) -> bool:
        """Whether e-mails are sent (and so queued) at all."""
        return self.smtp_url is not None


def _rate_limit(value: str) -> str:
    """``value`` if the ``limits`` library reads it as one limit ("10/minute"), or "none"."""
    from limits import parse_many

    cleaned = value.strip()
    if cleaned.lower() in {"", "none"}:
        return "none"
    try:
        items = parse_many(cleaned)
    except ValueError as error:
        raise ValueError(
            f'{value!r} is not a rate limit: write it like "10/minute" or "none"'
        ) from error
    if len(items) != 1:
        raise ValueError(f"{value!r} is more than one limit: give one, like 10/minute")
    if items[0].amount < 1:
        raise ValueError(f"{value!r} allows nothing: write none to switch the limit off")
    return cleaned


class RateLimitSettings(BaseSettings):
    """How many reports one caller may file (``geo.access.ratelimit``).

    Each limit is read by the ``limits`` library: an amount per period, e.g. "10/minute",
    "100/hour", "5 per 10 seconds"; "none" switches that one off.
    """

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_RATE_LIMIT_", extra="ignore")

    anonymous: str = Field(
        default="10/minute",
        description="Reports one client address may file without an API key.",
    )
    app: str = Field(
        default="120/minute",
        description="Reports one app key (role 'public') may file, from any address.",
    )
    staff: str = Field(
        default="600/minute",
        description="Reports one field-team, planner or admin key may file.",
    )

    @field_validator("anonymous", "app", "staff")
    @classmethod
    def _one_limit(cls, value: str) -> str:
        return _rate_limit(value)


class AccountSettings(BaseSettings):
    """Staff sign-in: how long a session lasts and when wrong passwords lock an account."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    session_idle_minutes: int = Field(
        default=60,
        ge=1,
        le=24 * 60,
        description="A staff session ends after this many minutes without a request.",
    )
    session_max_hours: int = Field(
        default=12,
        ge=1,
        le=24 * 30,
        description="A staff session ends this many hours after sign-in, however busy.",
    )
    login_lock_after: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Wrong passwords in a row that lock an account.",
    )
    login_lock_minutes: int = Field(
        default=15,
        ge=1,
        le=7 * 24 * 60,
        description="How long a locked account refuses every sign-in.",
    )
    session_cookie_secure: str = Field(
        default="auto",
        pattern="^(auto|always|never)$",
        description="The session cookie's Secure flag: auto sets it when the request came "
        "over HTTPS (directly, or from a proxy in ISSUEMAP_TRUSTED_PROXIES that says so in "
        "X-Forwarded-Proto); always; never.",
    )
    csrf_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the CSRF tokens of staff forms. Set the same value on "
        "every worker and host; unset, each process draws its own, which only suits one "
        "worker.",
    )

    @property
    def lock_after(self) -> int:
        """Wrong passwords in a row that lock an account."""
        return self.login_lock_after

    @property
    def lock_minutes(self) -> int:
        """Minutes a locked account stays locked."""
        return self.login_lock_minutes


class ProxySettings(BaseSettings):
    """Which reverse proxies may tell us the client's address (``X-Forwarded-For``)."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies in front of the "
        "service, comma-separated or a JSON list. Only a request from one of them has its "
        "client address taken from X-Forwarded-For; by default none is trusted.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _networks(value)


def _split_list(value: object) -> object:
    """A comma-separated or JSON-list variable as a list (other values as given)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in (p.strip() for p in text.split(",")) if part]
    return value


def _networks(value: list[str]) -> list[str]:
    """Each address or CIDR network in ``value``, written the one way ``ipaddress`` does."""
    # Anything that is not an address or a network would be compared as text, and "*"
    # would match every client: both are refused rather than half-understood.
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as error:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from error
    return networks


class MetricsSettings(BaseSettings):
    """Who may read the service's Prometheus metrics (``/metrics``)."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_", extra="ignore")

    metrics_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Addresses or networks (CIDR) that may read /metrics, comma-separated or "
        "a JSON list; every other client is answered 404. A request that came through a "
        "proxy is let in only when its client and every address in its X-Forwarded-For "
        "are listed. Default: this machine only (loopback).",
    )

    @field_validator("metrics_allow", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("metrics_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _networks(value)


class LineSettings(BaseSettings):
    """The city's LINE Official Account: residents report and hear back in LINE chats.

    The channel is off (``/line/webhook`` answers 404) while the secret is unset.
    """

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_LINE_", extra="ignore")

    channel_secret: SecretStr | None = Field(
        default=None,
        description="The channel secret (LINE Developers console, Basic settings): the key "
        "of each webhook call's X-Line-Signature. Unset: the LINE channel is off.",
    )
    channel_access_token: SecretStr | None = Field(
        default=None,
        description="A long-lived channel access token (Messaging API tab), for replies, "
        "pushes, profiles and downloading the photos residents send.",
    )
    api_url: str = Field(
        default="https://api.line.me",
        max_length=500,
        description="LINE's Messaging API host (replies, pushes, profiles).",
    )
    data_api_url: str = Field(
        default="https://api-data.line.me",
        max_length=500,
        description="LINE's data API host (the content of images residents send).",
    )
    timeout_s: float = Field(
        default=10.0, gt=0.0, le=120.0, description="Longest wait for one LINE API call."
    )

    @field_validator("api_url", "data_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://api.line.me")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _token_with_secret(self) -> LineSettings:
        if self.channel_secret is not None and self.channel_access_token is None:
            raise ValueError(
                "ISSUEMAP_LINE_CHANNEL_ACCESS_TOKEN is required when "
                "ISSUEMAP_LINE_CHANNEL_SECRET is set"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether the LINE channel is on (its secret is set)."""
        return self.channel_secret is not None and bool(self.channel_secret.get_secret_value())


class ChatSettings(BaseSettings):
    """Conversations on chat channels (``geo.chat``), whatever the platform."""

    model_config = SettingsConfigDict(env_prefix="ISSUEMAP_CHAT_", extra="ignore")

    idle_minutes: float = Field(
        default=60.0,
        gt=0.0,
        le=7 * 24 * 60.0,
        description="A conversation nobody wrote in for this long is forgotten, with the "
        "parts of a report it held; the resident starts again.",
    )


def settings_problems(error: ValidationError) -> str:
    """What is wrong with settings, naming each ``ISSUEMAP_*`` variable, never its value.

    The values stay out because some hold a password (``ISSUEMAP_SMTP_URL``,
    ``ISSUEMAP_DATABASE_URL``) and the sentence goes to logs and terminals.
    """
    prefix = next(
        (
            str(cls.model_config.get("env_prefix", ""))
            for cls in BaseSettings.__subclasses__()
            if cls.__module__ == __name__ and cls.__name__ == error.title
        ),
        "ISSUEMAP_",
    )
    return "; ".join(
        f"{prefix}{'.'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False)
    )
