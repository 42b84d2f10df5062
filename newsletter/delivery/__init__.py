"""Mail delivery backends: one small module each over :class:`~newsletter.delivery.base.Backend`.

``delivery.backend`` names one by alias (the table below) or by a dotted path
``package.module:Class`` for a backend of your own. Each backend class has a
``from_settings(settings, **deps)`` constructor; dependencies (an ``httpx.Client``, a
boto3 client, options with an injected clock) are passed in, never made global.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions, RetryPolicy
from newsletter.errors import ConfigError

BACKENDS: Mapping[str, str] = {
    "smtp": "newsletter.delivery.smtp:SmtpBackend",
    "sendgrid": "newsletter.delivery.sendgrid:SendGridBackend",
    "mailgun": "newsletter.delivery.mailgun:MailgunBackend",
    "postmark": "newsletter.delivery.postmark:PostmarkBackend",
    "resend": "newsletter.delivery.resend:ResendBackend",
    "ses": "newsletter.delivery.ses:SesBackend",
    "outbox": "newsletter.delivery.outbox:OutboxBackend",
    "memory": "newsletter.delivery.memory:MemoryBackend",
}
"""Backend aliases accepted by ``delivery.backend``."""


def backend_class(name: str) -> type[Backend]:
    """The class an alias or ``module:Class`` path names; ConfigError if none."""
    target = BACKENDS.get(name.lower(), name)
    module_name, _, attr = target.partition(":")
    if not attr:
        known = ", ".join(BACKENDS)
        raise ConfigError(
            f"delivery.backend: unknown backend {name!r} (known: {known}, or module:Class)"
        )
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"delivery.backend: cannot load {target!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"delivery.backend: {target!r} is not a Backend")
    return cls


def make_backend(settings: Settings, **deps: Any) -> Backend:
    """The backend ``settings.delivery.backend`` names, built from the settings."""
    cls = backend_class(settings.delivery.backend)
    factory = getattr(cls, "from_settings", None)
    if factory is None:
        raise ConfigError(f"delivery.backend: {cls.__name__} has no from_settings()")
    backend: Backend = factory(settings, **deps)
    return backend


__all__ = ["BACKENDS", "Backend", "BackendOptions", "RetryPolicy", "backend_class", "make_backend"]
