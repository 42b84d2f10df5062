"""The VERP return path: the envelope sender names the subscriber and the day, signed.

With ``delivery.return_path: bounces+{token}@example.org`` each message goes out with
``MAIL FROM:<bounces+20261205-k3v9…@example.org>``; a bounce comes back to that
address, so it maps to the subscriber and the day even when the report leaves out or
rewrites the recipient (forwarding, aliases, a report that quotes nothing).

The token is ``YYYYMMDD-`` and 16 base32 characters (80 bits) of HMAC-SHA256 over the
day and the casefolded address, with the link secret; lower case only, since some
systems fold the local part. It carries no address (a local part holds 64 characters),
so :func:`match` checks it against the addresses sent to that day: a forged or altered
token matches nobody.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable

from newsletter.errors import ConfigError
from newsletter.models import email_key

TOKEN_VERSION = b"newsletter-verp-v1"
"""Mixed into every token's HMAC."""

TOKEN_PLACEHOLDER = "{token}"
"""Where the token goes in ``delivery.return_path``."""

_TOKEN = re.compile(r"(\d{8})-([a-z2-7]{16})")


def token(secret: bytes, email: str, day: dt.date) -> str:
    """The token of ``email``'s message of ``day``."""
    return f"{day:%Y%m%d}-{_mac(secret, email, day)}"


def return_path(template: str, secret: bytes, email: str, day: dt.date) -> str:
    """The envelope sender for ``email`` on ``day`` from ``delivery.return_path``."""
    return template.replace(TOKEN_PLACEHOLDER, token(secret, email, day))


def check_template(template: str) -> None:
    """ConfigError unless ``template`` is ``local+{token}@domain``."""
    local, _, domain = template.rpartition("@")
    if TOKEN_PLACEHOLDER not in local or not domain or "." not in domain:
        raise ConfigError(
            f"delivery.return_path: {template!r} must look like bounces+{{token}}@example.org"
        )


def read(address: str) -> tuple[dt.date, str] | None:
    """(day, mac) of a VERP address or bare token, None when it carries none."""
    found = _TOKEN.search(address.lower())
    if not found:
        return None
    try:
        day = dt.datetime.strptime(found.group(1), "%Y%m%d").date()
    except ValueError:
        return None
    return day, found.group(2)


def match(secret: bytes, address: str, candidates: Iterable[str]) -> tuple[str, dt.date] | None:
    """(subscriber address, day) whose token ``address`` carries, among ``candidates``."""
    found = read(address)
    if found is None:
        return None
    day, mac = found
    for email in candidates:
        if hmac.compare_digest(_mac(secret, email, day), mac):
            return email, day
    return None


def _mac(secret: bytes, email: str, day: dt.date) -> str:
    data = TOKEN_VERSION + b"\0" + f"{day.isoformat()}\n{email_key(email)}".encode()
    digest = hmac.new(secret, data, hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()
