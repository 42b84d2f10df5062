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

import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BeforeValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode

from newsletter import yamlfile
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


def _split_commas(value: Any) -> Any:
    return tuple(p.strip() for p in value.split(",")) if isinstance(value, str) else value


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A duration in seconds, above 0."""
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite number >= 0."""
Count = Annotated[int, Field(ge=0)]
"""A whole number >= 0."""
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]
"""A list of names; from the environment, comma-separated."""
Text = Annotated[str | None, BeforeValidator(_empty_is_none)]
"""Optional text; empty means not set."""

_SECTION = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


@dataclass(frozen=True, config=_SECTION)
class SenderSettings:
    from_: str = "Daily Papers <digest@localhost>"
    """The From header: ``Name <address>``."""
    reply_to: Text = None
    list_id: str = "Daily Papers <daily-papers.localhost>"
    """The List-Id header."""
    feedback_id: str | None = None
    """The SenderId of the ``Feedback-ID`` header (Gmail's feedback loop); default: the
    List-Id domain."""


@dataclass(frozen=True, config=_SECTION)
class DeliverySettings:
    backend: str = "outbox"
    """smtp, sendgrid, mailgun, postmark, resend, ses, outbox or memory."""
    outbox: str = "outbox"
    """Folder of .eml files for the outbox backend."""
    host: str = "localhost"
    port: Count = 25
    security: Security = "starttls"
    username: Text = None
    password: Text = None
    api_key: Text = None
    domain: Text = None
    """Mailgun sending domain."""
    region: Text = None
    """Mailgun (us/eu) or SES (AWS region)."""
    base_url: Text = None
    """Override a provider's API URL (a local test server)."""
    rate: Amount = 0.0
    """Messages per second, 0 for no limit."""
    timeout: Seconds = 30.0
    connections: Count = 2
    """Parallel SMTP connections."""
    max_attempts: Count = 5
    deadline: Amount = 600.0
    """Seconds after which a run stops retrying."""
    claim_lease: Seconds = 120.0
    """Seconds a sender's claim on a subscriber's row lasts unless renewed (a live sender
    renews it every third of this); a dead sender's rows are taken over after it."""
    dkim_key: Text = None
    """Path of a PEM private key; signing is on when set (smtp, ses, outbox; the HTTP API
    backends refuse it: the provider signs)."""
    dkim_selector: Text = None
    dkim_domain: Text = None
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


@dataclass(frozen=True, config=_SECTION)
class DigestSettings:
    title: str = "Daily Papers"
    tldr_chars: Count = 280
    """Longest TL;DR, in characters, before it is trimmed at a sentence or word."""
    abstract_chars: Count = 1200
    max_sections: Count = 6
    """Most sections in a digest: beyond it, one-paper topics are gathered in "Also today"."""
    max_html_bytes: Count = 100_000
    """Budget for the HTML part as encoded (Gmail clips at 102 KB)."""
    empty_day: EmptyDayPolicy = "skip"
    dedupe_days: Count = 0
    """Leave out papers already sent in the last N days (0: off)."""
    base_url: str = "http://localhost:8080"
    """Where ``newsletter serve`` is reachable: unsubscribe and preferences links."""
    archive_url: Text = None
    """Where the static archive is published: the emails link to the web version."""
    templates: Text = None
    """A folder whose templates replace the shipped ones, file by file."""
    taxonomy: Text = None
    """A YAML file of topics (name, description, keywords) replacing the default taxonomy."""
    lang: str = "en"
    feedback_links: bool = True
    """Each paper carries "more like this" / "less like this" links, each section "fewer of
    this topic" (see newsletter.feedback)."""
    feedback_buckets: int = 1
    """The most re-ranked digests per variant for readers with feedback: readers of alike
    tastes share one (each is one render; see newsletter.feedback.buckets). 1 keeps a
    100k-reader day with 10 % feedback within 1.5x the render + MIME cost of one without
    (a reader alone in their variant still gets exactly their own ranking); each step up
    follows readers more closely for about 15 % more (benchmarks.bench_scale)."""


@dataclass(frozen=True, config=_SECTION)
class SourceSettings:
    default: str = "sample"
    """What ``--source`` means when not given: ``sample`` (bundled), ``hf``, ``arxiv:...``,
    a path or a URL."""
    hf_url: str = "https://huggingface.co/api/daily_papers"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_rss_url: str = "https://rss.arxiv.org/rss"
    timeout: Seconds = 30.0
    retries: Count = 4
    max_bytes: Count = 32 * 1024 * 1024
    """Largest answer a source may send, counted after decompression (a gzip bomb stops here)."""
    include_cross_lists: bool = False
    include_replacements: bool = False


@dataclass(frozen=True, config=_SECTION)
class ScheduleSettings:
    time: str = "08:00"
    timezone: str = "UTC"
    days: Names = ("mon", "tue", "wed", "thu", "fri")
    weekly_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None
    """The day weekly readers get their edition unless they chose another ``weekday``;
    None: the last of ``days`` (``fri`` for mon-fri)."""
    paper_day: Literal["today", "previous_weekday"] = "today"
    poll_until: str = "12:00"
    """Local time until which a late source is polled before the empty-day policy applies."""
    misfire_grace_seconds: Count = 6 * 3600


@dataclass(frozen=True, config=_SECTION)
class SignupSettings:
    """Limits of ``newsletter serve --allow-signup`` (double opt-in)."""

    interval_minutes: Count = 60
    """At most one confirmation email per address in this many minutes."""
    per_client_hour: Count = 10
    """Sign-ups one client address may post per hour."""
    max_pending: Count = 1000
    """Unconfirmed sign-ups kept at once; beyond it /subscribe asks to try again later."""
    confirm_days: Count = 7
    """How long a confirmation link stays valid."""


@dataclass(frozen=True, config=_SECTION)
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


@dataclass(frozen=True, config=_SECTION)
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


@dataclass(frozen=True, config=_SECTION)
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
    file_group: Text = None
    """A group that may read the files holding addresses the CLI writes (they are created
    0640 and given to it, instead of 0600): the web service's group in a deploy."""
    secret_key: Text = None
    """HMAC key for unsubscribe / preferences tokens (environment only, >= 32 bytes)."""
    secret_key_old: Text = None
    """Earlier signing keys, comma-separated, that still verify links (key rotation)."""
    config_path: Text = None
    """The config file that was read, if any (set by the loader)."""


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read settings from the file, the environment and overrides (see the module doc)."""
    config_file = Path(path) if path is not None else Path(DEFAULT_CONFIG_FILE)
    layers = _Layers()
    if config_file.exists():
        layers.read_file(config_file)
    elif path is not None:
        raise ConfigError(f"{config_file}: config file not found")
    layers.env = _renamed(_EnvSource(os.environ if env is None else env)())
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(layers.flags, dotted, value)
    merged = _merge(_merge(layers.file, layers.env), layers.flags)
    merged["config_path"] = layers.where
    try:
        return pydantic.TypeAdapter(Settings).validate_python(merged)
    except pydantic.ValidationError as exc:
        raise ConfigError(layers.explain(exc.errors()[0])) from None


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
        if value == "state" or (isinstance(value, str) and "://" in value):
            continue  # ``subscribers: state`` or a database URL: not a file
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


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment reader over a given mapping (tests pass their own)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._given = {k.lower(): v for k, v in env.items()}
        super().__init__(
            _env_model(),
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given


def _env_model() -> type[BaseSettings]:
    """A BaseSettings with the fields of :class:`Settings`, for the environment reader."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in _fields_of(Settings).items()
        if name != "config_path"
    }
    model: type[BaseSettings] = pydantic.create_model(
        "_EnvSettings", __base__=BaseSettings, **fields
    )
    return model


class _Layers:
    """The values of each source, kept apart to say where a bad one came from."""

    def __init__(self) -> None:
        self.file: dict[str, Any] = {}
        self.env: dict[str, Any] = {}
        self.flags: dict[str, Any] = {}
        self.where: str | None = None
        self.lines: dict[str, int] = {}

    def read_file(self, path: Path) -> None:
        where = str(path)
        try:
            data, node = yamlfile.load(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: not UTF-8 text ({exc.reason})") from None
        except yamlfile.YamlProblem as problem:
            raise ConfigError(f"{problem.where(where)}: {problem.reason}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping of settings")
        self.where, self.lines = where, yamlfile.key_lines(node)
        for key in self.lines:
            if key in SECRET_KEYS:
                raise ConfigError(
                    f"{self._at(key)}: {key}: secrets come from the environment; set {env_var(key)}"
                )
            if key == "config_path":
                raise ConfigError(f"{self._at(key)}: {key}: unknown setting (set by the loader)")
        self.file = _renamed(data or {})
        _resolve_paths(self.file, path.resolve().parent, where)

    def explain(self, error: Mapping[str, Any]) -> str:
        """``where: key: reason`` for one pydantic error."""
        loc = [str(part) for part in error["loc"]]
        dotted = ".".join(part.removesuffix("_") for part in loc)
        if _has(self.flags, loc):
            where = "command line"
        elif _has(self.env, loc):
            where = env_var(dotted)
        else:
            where = self._at(dotted)
        return f"{where}: {dotted}: {_reason(error, loc)}"

    def _at(self, dotted: str) -> str:
        line = self.lines.get(dotted)
        return f"{self.where}:{line}" if line else str(self.where or "defaults")


def _reason(error: Mapping[str, Any], loc: list[str]) -> str:
    kind = str(error["type"])
    value = yamlfile.shown(error.get("input"))
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        section: Any = Settings
        for part in loc[:-1]:
            section = _fields_of(section)[part].annotation
        known = sorted(name.removesuffix("_") for name in _fields_of(section))
        return f"unknown setting (known: {', '.join(k for k in known if k != 'config_path')})"
    if kind == "literal_error":
        return f"{value} is not one of {error.get('ctx', {}).get('expected', '')}"
    expected = kind.split("_")[0].replace("string", "str").replace("finite", "float")
    detail = str(error["msg"])
    detail = detail[:1].lower() + detail[1:]
    if kind.endswith(("_parsing", "_type")):
        return f"{value} is not a valid {expected}"
    return f"{value} is not valid ({detail})"


def _fields_of(section: Any) -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = section.__pydantic_fields__
    return fields


def _renamed(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keys as field names: ``dkim-key`` -> ``dkim_key``, ``from`` -> ``from_``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = "from_" if name == "from" else name
        out[name] = _renamed(value) if isinstance(value, Mapping) else value
    return out


def _has(data: Mapping[str, Any], loc: list[str]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def config_folder(settings: Settings) -> Path | None:
    """The folder of the config file that was read (None without one): where relative
    paths of that file, and run-time files such as the daemon's lock, belong."""
    return Path(settings.config_path).parent if settings.config_path else None
