"""Settings: one validated model, one loader.

Lookup order, first found wins:

1. command-line flags (the CLI passes them as ``overrides``),
2. the environment: ``NEWSLETTER_<KEY>`` with ``__`` between levels
   (``NEWSLETTER_DELIVERY__PORT=2525`` sets ``delivery.port``),
3. the YAML config file (``--config``, default ``newsletter.yaml`` in the working
   directory; a missing default file is fine, a missing named file is an error);
   relative paths in it (PATH_KEYS, and a SQLite ``state``) are taken relative to the
   folder of that file, not the working directory,
4. the defaults below: the offline default sends to a local outbox folder and keeps
   its state in a SQLite file.

Secrets (``delivery.password``, ``delivery.api_key``, ``secret_key``, ``secret_key_old``)
are read from the environment only; a config file that sets one is refused, so no secret
lives in a repo.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from newsletter.errors import ConfigError

DEFAULT_CONFIG_FILE = "newsletter.yaml"
"""The config file read when ``--config`` is not given (optional)."""

ENV_PREFIX = "NEWSLETTER_"
"""Environment variables that override settings start with this."""

SECRET_KEYS = frozenset(
    {
        "delivery.password",
        "delivery.api_key",
        "secret_key",
        "secret_key_old",
        "webhooks.sendgrid_key",
        "webhooks.mailgun_key",
        "webhooks.postmark_password",
        "webhooks.resend_secret",
        "bounces.password",
    }
)
"""Dotted keys that may only come from the environment."""

EmptyDayPolicy = Literal["skip", "note"]
Security = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class SenderSettings:
    from_: str = "Daily Papers <digest@localhost>"
    """The From header: ``Name <address>``."""
    reply_to: str | None = None
    list_id: str = "Daily Papers <daily-papers.localhost>"
    """The List-Id header."""
    feedback_id: str | None = None
    """The SenderId of the ``Feedback-ID`` header (Gmail's feedback loop); default: the
    List-Id domain."""


@dataclass(frozen=True)
class DeliverySettings:
    backend: str = "outbox"
    """smtp, sendgrid, mailgun, postmark, resend, ses, outbox or memory."""
    outbox: str = "outbox"
    """Folder of .eml files for the outbox backend."""
    host: str = "localhost"
    port: int = 25
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    domain: str | None = None
    """Mailgun sending domain."""
    region: str | None = None
    """Mailgun (us/eu) or SES (AWS region)."""
    base_url: str | None = None
    """Override a provider's API URL (a local test server)."""
    rate: float = 0.0
    """Messages per second, 0 for no limit."""
    timeout: float = 30.0
    connections: int = 2
    """Parallel SMTP connections."""
    max_attempts: int = 5
    deadline: float = 600.0
    """Seconds after which a run stops retrying."""
    claim_lease: float = 120.0
    """Seconds a sender's claim on a subscriber's row lasts unless renewed (a live sender
    renews it every third of this); a dead sender's rows are taken over after it."""
    dkim_key: str | None = None
    """Path of a PEM private key; signing is on when set (smtp, ses, outbox; the HTTP API
    backends refuse it: the provider signs)."""
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    message_stream: str = "broadcast"
    """Postmark: the id of the message stream to send through (ids are per server)."""
    postmark_unsubscribe: Literal["ours", "postmark"] = "ours"
    """Postmark: ``ours`` (the stream's unsubscribe handling must be Custom, checked at the
    start of a run) or ``postmark`` (Postmark replaces List-Unsubscribe with its own)."""
    return_path: str | None = None
    """VERP envelope sender, ``bounces+{token}@example.org``: bounces name subscriber and day."""
    soft_bounce_limit: int = 3
    """Soft bounces within ``soft_bounce_days`` that suppress an address."""
    soft_bounce_days: int = 14


@dataclass(frozen=True)
class DigestSettings:
    title: str = "Daily Papers"
    tldr_chars: int = 280
    """Longest TL;DR, in characters, before it is trimmed at a sentence or word."""
    abstract_chars: int = 1200
    max_sections: int = 6
    """Most sections in a digest: beyond it, one-paper topics are gathered in "Also today"."""
    max_html_bytes: int = 100_000
    """Budget for the HTML part as encoded (Gmail clips at 102 KB)."""
    empty_day: EmptyDayPolicy = "skip"
    dedupe_days: int = 0
    """Leave out papers already sent in the last N days (0: off)."""
    base_url: str = "http://localhost:8080"
    """Where ``newsletter serve`` is reachable: unsubscribe and preferences links."""
    archive_url: str | None = None
    """Where the static archive is published: the emails link to the web version."""
    templates: str | None = None
    """A folder whose templates replace the shipped ones, file by file."""
    taxonomy: str | None = None
    """A YAML file of topics (name, description, keywords) replacing the default taxonomy."""
    lang: str = "en"


@dataclass(frozen=True)
class SourceSettings:
    default: str = "sample"
    """What ``--source`` means when not given: ``sample`` (bundled), ``hf``, ``arxiv:...``,
    a path or a URL."""
    hf_url: str = "https://huggingface.co/api/daily_papers"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_rss_url: str = "https://rss.arxiv.org/rss"
    timeout: float = 30.0
    retries: int = 4
    max_bytes: int = 32 * 1024 * 1024
    """Largest answer a source may send, counted after decompression (a gzip bomb stops here)."""
    include_cross_lists: bool = False
    include_replacements: bool = False


@dataclass(frozen=True)
class ScheduleSettings:
    time: str = "08:00"
    timezone: str = "UTC"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    paper_day: Literal["today", "previous_weekday"] = "today"
    poll_until: str = "12:00"
    """Local time until which a late source is polled before the empty-day policy applies."""
    misfire_grace_seconds: int = 6 * 3600


@dataclass(frozen=True)
class SignupSettings:
    """Limits of ``newsletter serve --allow-signup`` (double opt-in)."""

    interval_minutes: int = 60
    """At most one confirmation email per address in this many minutes."""
    per_client_hour: int = 10
    """Sign-ups one client address may post per hour."""
    max_pending: int = 1000
    """Unconfirmed sign-ups kept at once; beyond it /subscribe asks to try again later."""
    confirm_days: int = 7
    """How long a confirmation link stays valid."""


@dataclass(frozen=True)
class WebhookSettings:
    """Verification of the provider webhooks under ``/webhooks/`` (keys: environment only)."""

    sendgrid_key: str | None = None
    """SendGrid's event webhook verification key (base64 DER or PEM public key)."""
    mailgun_key: str | None = None
    """Mailgun's HTTP webhook signing key."""
    postmark_username: str | None = None
    postmark_password: str | None = None
    """The basic-auth credentials put in Postmark's webhook URL."""
    resend_secret: str | None = None
    """Resend's webhook signing secret (``whsec_…``)."""
    ses_topics: tuple[str, ...] = ()
    """SNS topic ARNs accepted on /webhooks/ses (empty: any topic with a valid signature)."""
    max_age: int = 300
    """Seconds a signed timestamp stays acceptable (older calls are refused as replays)."""


@dataclass(frozen=True)
class BounceMailboxSettings:
    """The mailbox ``bounces import --imap/--pop3`` reads."""

    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    """Environment only: NEWSLETTER_BOUNCES__PASSWORD."""
    folder: str = "INBOX"
    security: Security = "tls"
    timeout: float = 30.0


@dataclass(frozen=True)
class Settings:
    sender: SenderSettings = field(default_factory=SenderSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    signup: SignupSettings = field(default_factory=SignupSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    bounces: BounceMailboxSettings = field(default_factory=BounceMailboxSettings)
    subscribers: str = "subscribers.yaml"
    state: str = "sqlite:///newsletter.db"
    archive: str = "archive"
    secret_key: str | None = None
    """HMAC key for unsubscribe / preferences tokens (environment only, >= 32 bytes)."""
    secret_key_old: str | None = None
    """Earlier signing keys, comma-separated, that still verify links (key rotation)."""
    config_path: str | None = None
    """The config file that was read, if any (set by the loader)."""


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read settings from the file, the environment and overrides (see the module doc)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    where = "defaults"
    config_file = Path(path) if path is not None else Path(DEFAULT_CONFIG_FILE)
    if config_file.exists():
        where = str(config_file)
        data = _read_yaml(config_file)
        for key in _flatten(data):
            if key in SECRET_KEYS:
                var = env_var(key)
                raise ConfigError(f"{where}: {key}: secrets come from the environment; set {var}")
        _resolve_paths(data, config_file.resolve().parent, where)
    elif path is not None:
        raise ConfigError(f"{config_file}: config file not found")
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            _set_dotted(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    settings: Settings = _build(Settings, data, where, "")
    return dataclasses.replace(settings, config_path=where if where != "defaults" else None)


PATH_KEYS = (
    "subscribers",
    "archive",
    "delivery.outbox",
    "delivery.dkim_key",
    "digest.templates",
    "digest.taxonomy",
)
"""Settings holding a file or folder: relative ones in a config file are taken relative to
that file's folder (``state`` too, when it names a SQLite file)."""


def _resolve_paths(data: dict[str, Any], base: Path, where: str) -> None:
    """Make the relative paths of a config file's ``data`` absolute against ``base``, so
    ``newsletter status -c /etc/newsletter/newsletter.yaml`` works from any folder."""
    from newsletter.errors import LedgerError
    from newsletter.state import resolve_state_url

    for dotted in PATH_KEYS:
        node: Any = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(last)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            node[last] = str(base / value)
    state = data.get("state")
    if isinstance(state, str) and state:
        try:
            data["state"] = resolve_state_url(state, base=base)
        except LedgerError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def require_secret(settings: Settings, key: str) -> str:
    """The secret at dotted ``key``, or a ConfigError naming the variable to set."""
    value = _dotted(settings, key)
    if not value:
        raise ConfigError(f"{key} is not set: set the environment variable {env_var(key)}")
    return str(value)


def secret_values(settings: Settings) -> list[str]:
    """Every secret that is set (each of SECRET_KEYS; each old signing key on its own),
    for the logs to redact."""
    values = [str(value) for key in sorted(SECRET_KEYS) if (value := _dotted(settings, key))]
    old = str(settings.secret_key_old or "")
    return values + [part.strip() for part in old.split(",") if part.strip() and "," in old]


def env_var(key: str) -> str:
    """The environment variable of dotted ``key`` (``delivery.api_key`` ->
    ``NEWSLETTER_DELIVERY__API_KEY``)."""
    return ENV_PREFIX + key.upper().replace(".", "__")


def _dotted(settings: Settings, key: str) -> Any:
    obj: Any = settings
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return loaded


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_flatten(value, dotted + "."))
    return keys


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _build(cls: type[Any], data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'top level'}: expected a mapping")
    hints = get_type_hints(cls)
    fields = {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        dotted = f"{prefix}{name}"
        if name not in fields or name == "config_path":
            known = ", ".join(sorted(k for k in fields if k != "config_path"))
            raise ConfigError(f"{where}: {dotted}: unknown setting (known: {known})")
        f = fields[name]
        kwargs[f.name] = _coerce(hints[f.name], value, where, dotted)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str, dotted: str) -> Any:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, where, dotted + ".")
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        if value not in args:
            choices = " | ".join(str(a) for a in args)
            raise ConfigError(f"{where}: {dotted}: {value!r} is not one of {choices}")
        return value
    if args and type(None) in args:  # Optional[X]
        if value is None or value == "":
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where, dotted)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where}: {dotted}: expected a list")
        return tuple(str(item).strip() for item in items)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if tp is int and not isinstance(value, bool):
            whole = int(value)
            if whole < 0:
                raise ConfigError(
                    f"{where}: {dotted}: {value!r} is not a valid int (a number >= 0)"
                )
            return whole
        if tp is float and not isinstance(value, bool):
            number = float(value)
            positive = dotted.endswith("timeout")
            if not math.isfinite(number) or number < 0 or (positive and number == 0):
                bound = "above 0" if positive else ">= 0"
                raise ConfigError(
                    f"{where}: {dotted}: {value!r} is not a valid float (a finite number {bound})"
                )
            return number
        if tp is str:
            if isinstance(value, dict | list):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {dotted}: {value!r} is not a valid {getattr(tp, '__name__', tp)}"
        ) from None
    raise ConfigError(f"{where}: {dotted}: unsupported value {value!r}")
