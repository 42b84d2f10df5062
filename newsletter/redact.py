"""Secrets never leave the process: one redaction function for every way out.

:class:`Redactor` is made from the secret values (SMTP password, API key, signing keys;
see :func:`newsletter.config.secret_values`) and replaces each of them with
``[redacted]`` in any text, in every spelling a secret takes on its way out:

- as is, and escaped as JSON or ``repr`` would escape it;
- URL-encoded (``quote`` / ``quote_plus``, upper- or lower-case hex);
- base64, standard and url-safe: the run of base64 characters that encodes the secret
  at each of the three byte offsets it can have inside a longer encoded text, so the
  secret is found alone and inside SMTP ``AUTH PLAIN`` (``\\0user\\0password``), ``AUTH
  LOGIN`` and HTTP Basic (``user:password``); the whole base64 text around a match is
  replaced (it is the credential).

It is applied at the boundaries, so nothing upstream has to be careful:

- the delivery backends (:mod:`newsletter.delivery.base`): every result's error text,
  which the ``send`` summary prints and the ledger stores, and every error they raise;
- the log handler (:mod:`newsletter.logs`), text and JSON, tracebacks included;
- the CLI's ``error:`` line (:mod:`newsletter.cli`), from the environment's secrets.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

from newsletter.config import SECRET_KEYS, env_var

REDACTED = "[redacted]"
"""What a secret is replaced with."""

MIN_SECRET_CHARS = 6
"""Shorter values are not searched for: they would blot out ordinary words."""

MIN_ENCODED_CHARS = 8
"""Shortest base64 run (of a secret inside a longer encoded text) that is searched for:
every secret of 8 bytes or more is found at each offset."""


_ENCODED_CHARS = frozenset(string.ascii_letters + string.digits + "+/=_-%")
"""Characters of a base64 text (either alphabet, padding, or URL-encoded): a match of an
encoded secret is widened over them, so the whole encoded credential goes."""


class Redactor:
    """Replaces every known spelling of the given secrets with ``[redacted]``."""

    __slots__ = ("_encoded", "_plain", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}))
        plain: set[str] = set()
        encoded: set[str] = set()
        for secret in self._secrets:
            plain.update(text_spellings(secret))
            encoded.update(encoded_spellings(secret))
        self._plain = tuple(sorted(plain, key=len, reverse=True))
        self._encoded = (
            re.compile("|".join(re.escape(e) for e in sorted(encoded, key=len, reverse=True)))
            if encoded
            else None
        )

    def __bool__(self) -> bool:
        return bool(self._plain)

    def __call__(self, text: str) -> str:
        """``text`` with every spelling of every secret replaced."""
        for form in self._plain:
            if form in text:
                text = text.replace(form, REDACTED)
        if self._encoded is not None:
            text = self._widened(self._encoded, text)
        return text

    @staticmethod
    def _widened(pattern: re.Pattern[str], text: str) -> str:
        """Each match of ``pattern`` and the base64 characters around it, replaced."""
        out: list[str] = []
        done = 0
        for match in pattern.finditer(text):
            start, end = match.span()
            if start < done:
                continue
            while start > done and text[start - 1] in _ENCODED_CHARS:
                start -= 1
            while end < len(text) and text[end] in _ENCODED_CHARS:
                end += 1
            out += [text[done:start], REDACTED]
            done = end
        return "".join([*out, text[done:]]) if out else text

    def adding(self, *secrets: str | None) -> Redactor:
        """A redactor for these secrets as well."""
        return Redactor([*self._secrets, *(s for s in secrets if s)])

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Redactor:
        """A redactor for the secrets set in ``env`` (every ``SECRET_KEYS`` variable;
        the old signing keys one by one)."""
        values: list[str] = []
        for key in SECRET_KEYS:
            value = env.get(env_var(key), "")
            values.append(value)
            values.extend(part.strip() for part in value.split(",") if key == "secret_key_old")
        return cls(v for v in values if v)


def text_spellings(secret: str) -> set[str]:
    """The secret as text: plain, JSON- and repr-escaped, URL-encoded."""
    forms = {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret, safe="").lower(),
        quote(secret),
    }
    return {form for form in forms if form}


def encoded_spellings(secret: str) -> set[str]:
    """The runs of base64 characters that encode ``secret`` at each byte offset, in
    both alphabets (and URL-encoded): found anywhere, they are widened to the whole
    base64 text around them (:meth:`Redactor._widened`)."""
    raw = secret.encode("utf-8")
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in (0, 1, 2):  # after 0, 1 or 2 other bytes: skip the mixed group
            shifted = encode(bytes(offset) + raw).decode("ascii")
            core = shifted[4 if offset else 0 : 4 * ((offset + len(raw)) // 3)]
            if len(core) >= MIN_ENCODED_CHARS:
                forms.add(core)
    forms.update({quote(form, safe="") for form in forms})
    return forms
