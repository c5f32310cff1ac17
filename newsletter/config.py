"""Settings: defaults < `[tool.newsletter]` in the project's pyproject.toml < environment variables.

Every setting `name` can be set by the environment variable `NEWSLETTER_<NAME>` (upper case);
the SendGrid key and host also by their conventional names `SENDGRID_API_KEY` / `SENDGRID_HOST`.
Secrets are `SecretStr`, so they never appear in reprs, logs or `settings show`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"
ENV_ALIASES = {
    "sendgrid_api_key": ("SENDGRID_API_KEY",),
    "sendgrid_host": ("SENDGRID_HOST",),
    "outbox_dir": ("NEWSLETTER_OUTBOX",),
}


def _is_project(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    try:
        return pyproject.is_file() and "[tool.newsletter]" in pyproject.read_text("utf-8", "replace")
    except OSError:
        return False


def find_project_dir(start: Path | None = None, *, near: Path | None = None) -> Path:
    """The project directory: $NEWSLETTER_PROJECT_DIR, else the nearest folder at or above the
    working directory (`start`) whose pyproject.toml has a [tool.newsletter] table, else the
    nearest such folder above `near` (a file the command was given, e.g. a manifest). ConfigError
    naming where it looked when there is none."""
    explicit = os.environ.get("NEWSLETTER_PROJECT_DIR")
    if explicit:
        return Path(explicit).resolve()
    here = (start or Path.cwd()).resolve()
    searched = [here]
    if near is not None:
        given = near.resolve()
        searched.append(given if given.is_dir() else given.parent)
    for origin in searched:
        for candidate in (origin, *origin.parents):
            if _is_project(candidate):
                return candidate
    raise ConfigError(
        f"no newsletter project in {here} or any folder above it"
        + (f", nor above {searched[1]}" if len(searched) > 1 else ""),
        hint="run the command inside the project folder (the one whose pyproject.toml has a "
        "[tool.newsletter] table, beside issues/ and templates/), or set NEWSLETTER_PROJECT_DIR",
    )


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project_dir: Path = Field(default_factory=Path.cwd)

    # Storage
    database_url: str | None = None  # default: sqlite file newsletter.db in the project dir

    # Organisation (used by templates and message headers)
    organisation: str = "Newsletter"
    postal_address: str = ""
    website: str = "https://www.example.org"
    from_email: str = "newsletter@example.org"
    from_name: str = "Newsletter"
    reply_to: str | None = None
    public_base_url: str = "https://www.example.org/newsletter"  # unsubscribe / preferences links

    # Delivery
    transport: Literal["auto", "outbox", "sendgrid", "memory"] = "auto"
    outbox_dir: Path = Path("outbox")
    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sandbox_mode: bool = False
    click_tracking: bool = False
    open_tracking: bool = False
    concurrency: int = Field(default=4, ge=1, le=64)
    max_requests_per_second: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=1000, ge=1, le=1000)
    max_retries: int = Field(default=6, ge=0)
    request_timeout: float = Field(default=30.0, gt=0)
    retry_backoff_seconds: float = Field(default=1.0, ge=0)  # first retry delay after 5xx / no connection
    retry_backoff_max_seconds: float = Field(default=60.0, ge=0)  # cap of the exponential backoff
    # Member links (unsubscribe, preferences, confirmations) are signed with this secret: it is
    # NEWSLETTER_SECRET, or the file NEWSLETTER_SECRET_FILE names (mode 0600). Rotation: the old one
    # becomes secret_previous and keeps checking links until secret_previous_until.
    secret: SecretStr | None = None
    secret_file: Path | None = None
    secret_previous: SecretStr | None = None
    secret_previous_file: Path | None = None
    secret_previous_until: datetime | None = None

    # Member web (`newsletter serve`)
    sendgrid_webhook_public_key: str | None = None  # the Event Webhook's verification key (base64 DER)
    consent_version: str = Field(default="web-1", min_length=1, max_length=40)
    consent_text: str = Field(
        default="Yes, send me the digest by email. I can unsubscribe or change my region at any time "
                "with the links in every email.", min_length=1, max_length=1000)

    # The comms team's address: told when the complaint guard pauses an edition
    notify_email: str | None = None

    # Scheduling
    timezone: str = "Europe/London"
    misfire_grace_minutes: int = Field(default=30, ge=0)

    # Notifications to the comms team (at-risk, stale, missed, failed, uncertain, paused and sent
    # sends; digest reviews): an email to notify_email through the configured transport, and
    # optionally a JSON POST to notify_webhook_url.
    notify_email: str | None = None
    notify_webhook_url: str | None = None

    @field_validator("secret_previous_until")
    @classmethod
    def _until_is_utc(cls, value: datetime | None) -> datetime | None:
        """A date or date-time; without a zone it is UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _webhook_key_is_base64(cls, value: str | None) -> str | None:
        """SendGrid shows the key as base64 (DER, no PEM armour); a pasted PEM block is accepted."""
        if value is None:
            return None
        body = "".join(line for line in value.strip().splitlines() if not line.startswith("-----"))
        body = "".join(body.split())
        if not body or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", body):
            raise ValueError("sendgrid_webhook_public_key must be the base64 verification key SendGrid shows")
        return body

    @field_validator("sendgrid_host")
    @classmethod
    def _sendgrid_host_is_https(cls, value: str) -> str:
        """The API key travels in a header: only https://, or http:// to this machine (stubs, the mock)."""
        try:
            parts = urlsplit(value.strip())
            port = parts.port  # urllib raises ValueError for a port that is not 0-65535
        except ValueError:
            port = 0
        if port == 0 or value.strip().partition("//")[2].split("/")[0].endswith(":"):
            raise ValueError(
                f"sendgrid_host (SENDGRID_HOST) has a bad port or address in {value.strip()!r}: a port is a number "
                "from 1 to 65535, e.g. https://api.sendgrid.com or http://127.0.0.1:4010"
            )
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
            return value
        raise ValueError(
            "sendgrid_host (SENDGRID_HOST) must be an https:// URL such as https://api.sendgrid.com; "
            "plain http:// would send the API key unencrypted and is allowed only to 127.0.0.1, ::1 or localhost"
        )

    @field_validator("notify_email")
    @classmethod
    def _notify_email_is_an_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip()
        if not re.fullmatch(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+", text):
            raise ValueError("notify_email must be one email address, e.g. comms@example.org")
        return text

    @field_validator("notify_webhook_url")
    @classmethod
    def _notify_webhook_is_https(cls, value: str | None) -> str | None:
        """Notices may name editions and files: only https://, or http:// to this machine."""
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        try:
            parts.port  # noqa: B018 (a bad port raises here)
        except ValueError:
            raise ValueError("notify_webhook_url has an invalid port") from None
        if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))):
            return value.strip()
        raise ValueError(
            "notify_webhook_url must be an https:// URL; plain http:// is allowed only to 127.0.0.1, ::1 or localhost"
        )

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url_is_plain_https(cls, value: str) -> str:
        """Unsubscribe links are this URL plus a token, put as is into headers and href attributes,
        so it must be an absolute https URL with nothing that would need escaping there."""
        parts = urlsplit(value.strip())
        if parts.scheme == "https" and parts.hostname and not re.search(r"[\s\"'<>&\\]", value):
            return value.strip()
        raise ValueError(
            "public_base_url must be an absolute https:// URL without spaces, quotes, '<', '>' or '&', "
            "e.g. https://www.example.org/newsletter"
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.project_dir / 'newsletter.db').as_posix()}"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir if self.outbox_dir.is_absolute() else self.project_dir / self.outbox_dir

    def path(self, relative: str | Path) -> Path:
        """A project-relative path made absolute (absolute paths pass through)."""
        p = Path(relative)
        return p if p.is_absolute() else self.project_dir / p


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_pyproject(project_dir: Path) -> dict[str, Any]:
    pyproject = project_dir / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: invalid TOML: {exc}") from exc
    section = data.get("tool", {}).get("newsletter", {})
    return {k.replace("-", "_"): v for k, v in section.items()}


def _from_environment() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name == "project_dir":
            continue
        for env_name in (ENV_PREFIX + name.upper(), *ENV_ALIASES.get(name, ())):
            if os.environ.get(env_name):
                values[name] = os.environ[env_name]
                break
    return values


def load_settings(project_dir: Path | None = None, *, near: Path | None = None, **overrides: Any) -> Settings:
    """Settings for a project directory (found from the working directory, or from `near`, a file
    the command was given); keyword overrides (e.g. from CLI options) win over all."""
    root = (project_dir or find_project_dir(near=near)).resolve()
    values: dict[str, Any] = {"project_dir": root}
    values.update(_from_pyproject(root))
    values.update(_from_environment())
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid setting: {problems}",
            hint="check [tool.newsletter] in pyproject.toml and NEWSLETTER_* environment variables",
        ) from None
