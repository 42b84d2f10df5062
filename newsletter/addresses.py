"""Email addresses: syntax check and normal form, fast for the plain ones.

A strict pattern of plain ASCII addresses answers first; everything else goes to
email-validator (syntax only, no DNS). The pattern only accepts what email-validator
accepts, with the same normalised form (property-tested against it).
"""

from __future__ import annotations

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES as _SPECIAL_USE_DOMAINS
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

_ROLE_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
"""Local parts email-validator lowercases (RFC 2142 role names: postmaster, info, ...)."""

_FAST_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_MAX_LOCAL = 64
# Special-use names email-validator refuses (localhost, test, ...): one-label names are
# checked against the last label of the domain, any dotted ones by suffix.
_SPECIAL_LABELS = frozenset(d for d in _SPECIAL_USE_DOMAINS if "." not in d)
_SPECIAL_DOTTED = tuple(d for d in _SPECIAL_USE_DOMAINS if "." in d)
_MAX_ADDRESS = 254


def _fast_email(address: str) -> str | None:
    """The normalised address when it is a plain ASCII address email-validator accepts."""
    if len(address) > _MAX_ADDRESS or not _FAST_EMAIL.fullmatch(address):
        return None
    local, _, domain = address.partition("@")
    domain = domain.lower()
    if len(local) > _MAX_LOCAL or "--" in domain:
        return None
    if domain[domain.rfind(".") + 1 :] in _SPECIAL_LABELS:
        return None
    for special in _SPECIAL_DOTTED:
        if domain == special or domain.endswith("." + special):
            return None
    if local.lower() in _ROLE_NAMES:
        local = local.lower()
    return f"{local}@{domain}"


def normalize_email(address: str) -> str:
    """The normalised form of ``address`` (domain lowercased, an internationalised
    domain in punycode), or ValueError with the reason.

    Syntax only, no DNS: email-validator with ``check_deliverability=False``.
    """
    fast = _fast_email(address)
    if fast is not None:
        return fast
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if result.ascii_email is None:
        raise ValueError(
            "the part before the @ has non-ASCII characters, which needs SMTPUTF8; "
            "this mailer sends ASCII addresses only"
        )
    # An internationalised domain is kept in its ASCII (punycode) form, which every
    # mail server and provider accepts.
    return result.ascii_email
