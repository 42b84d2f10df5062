"""The per-subscriber fast paths give the very bytes and verdicts of the older, slower code.

Each reference below is the previous implementation, kept here verbatim in spirit:

* slot values were normalised by filling a tiny copy of the rendered digest whose parts
  are only the placeholders (now ``newsletter.render.normalize_slots``, called directly);
* a message was filled by walking every segment (now a precomputed list with holes);
* a token was signed with a fresh ``hmac.new`` and its link built with ``urlencode``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from email.header import Header
from email.utils import formataddr
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter import render as R
from newsletter import tokens
from newsletter.config import DigestSettings, SenderSettings
from newsletter.message import (
    CRLF,
    MAX_NAME_CHARS,
    SLOTS,
    InvalidRecipient,
    MessageTemplate,
    Recipient,
    _qp_printable,
    _qp_slot_value,
    _to_header,
    build_template,
    check_url,
    clean_text,
    format_mailbox,
    qp_encode,
)
from newsletter.models import (
    Digest,
    Paper,
    Profile,
    RankedPaper,
    Subscriber,
    SummaryStyle,
    TopicGroup,
    profile_key,
)
from newsletter.render import RenderedDigest, load_templates, normalize_slots, render
from newsletter.send import subscriber_values, values_maker
from tests.doubles import FakeRendered

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(
    from_="Daily Papers <digest@news.example.org>", list_id="papers.example.org"
)


@pytest.fixture(scope="module")
def rendered() -> RenderedDigest:
    papers = [
        RankedPaper(
            Paper(
                title=f"Naïve diffusion policies, part {i}",
                abstract="We study things. " * 10,
                id=f"2511.{i:05d}",
                url=f"https://huggingface.co/papers/2511.{i:05d}",
                authors=("Zoë Müller", "李雷"),
            ),
            score=10.0 - i,
            topic="Robotics",
        )
        for i in range(6)
    ]
    digest = Digest(date=DATE, topics=(TopicGroup("Robotics", tuple(papers)),), total_papers=6)
    return render(digest, settings=DigestSettings(), templates=load_templates(None))


# --------------------------------------------------------------------------- references


def old_normalize_slots(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The loop RenderedDigest.fill ran before normalize_slots had its ASCII fast path."""
    missing = [s for s in SLOTS if s not in values]
    unknown = [k for k in values if k not in SLOTS]
    if missing or unknown:
        raise ValueError(f"fill: missing slots {missing}, unknown slots {unknown}")
    raw: dict[str, str] = {}
    escaped: dict[str, str] = {}
    for slot in SLOTS:
        value = " ".join(R._CONTROL.sub("", values[slot]).split())
        if slot == "name":
            value = R._close_bidi(R._cut(value, R.MAX_NAME_CHARS)) or R.DEFAULT_NAME
        if slot in R.URL_SLOTS and not (
            R._PLAIN_URL.fullmatch(value) or R._safe_url(value) == value
        ):
            raise ValueError(f"fill: {slot} is not a plain http(s) URL: {value!r}")
        html_value = R._ascii_refs(R.htmlmod.escape(value, quote=True))
        if len(html_value) > R.MAX_SLOT_BYTES:
            raise ValueError(f"fill: {slot} is longer than {R.MAX_SLOT_BYTES} bytes")
        raw[slot] = value
        escaped[slot] = html_value
    return raw, escaped


def tiny_copy_normalize(
    rendered: RenderedDigest, values: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The old normaliser of message.py: fill a copy whose parts are just the placeholders
    (with the old fill loop above)."""
    skeleton = "\n".join(rendered.placeholder(slot) for slot in SLOTS)
    try:
        raw, escaped = old_normalize_slots(values)
    except ValueError as exc:
        raise InvalidRecipient(str(exc)) from None
    html = R._join(tuple(R._placeholder_pattern(rendered.nonce).split(skeleton)), escaped)
    text = R._join(tuple(R._placeholder_pattern(rendered.nonce).split(skeleton)), raw)
    return dict(zip(SLOTS, text.split("\n"), strict=True)), dict(
        zip(SLOTS, html.split("\n"), strict=True)
    )


def segment_walk_fill(template: MessageTemplate, recipient: Recipient) -> bytes:
    """The old fill: every segment in turn, headers encoded as they come."""
    out: list[bytes] = []
    for seg in template.segments:
        if isinstance(seg, bytes):
            out.append(seg)
            continue
        kind, name = seg
        if kind == "html":
            out.append(recipient.html_values[name].encode("ascii"))
        elif kind == "text":
            out.append(_qp_slot_value(recipient.values.get(name, "")))
        elif name == "To":
            out.append(b"To: " + format_mailbox(recipient.name, recipient.email).encode() + CRLF)
        elif name == "Message-ID":
            out.append(f"Message-ID: {recipient.message_id}".encode("ascii") + CRLF)
        else:
            url = check_url(recipient.values.get("unsubscribe_url", ""))
            mailto = f"<mailto:{template.mailto}?subject=unsubscribe>"
            out.append(f"List-Unsubscribe: <{url}>,\r\n {mailto}".encode("ascii") + CRLF)
    return b"".join(out)


def old_make_token(secret: bytes, email: str, purpose: str, issued: dt.date | None) -> str:
    payload = "\n".join([purpose, email, issued.isoformat() if issued else ""]).encode()
    signature = hmac.new(secret, tokens.TOKEN_VERSION + b"\0" + payload, hashlib.sha256).digest()
    return f"{old_b64(payload)}.{old_b64(signature)}"


def old_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def old_link(base_url: str, path: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/{path}?{urlencode({'token': token})}"


def normalized_or_refused(normalize: Any, values: Mapping[str, str]) -> Any:
    """What a normaliser gives for ``values``, or ("refused", its message)."""
    try:
        return normalize(values)
    except ValueError as exc:  # InvalidRecipient too
        return ("refused", str(exc))


# --------------------------------------------------------------------------- strategies

any_value = st.text(max_size=60)
printable_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=250)
url_value = st.one_of(
    st.builds(lambda tail: "https://news.example.org/u?token=" + tail, st.text(max_size=30)),
    st.builds(lambda tail: "http://a.example/" + tail, st.text(st.characters(max_codepoint=127))),
    st.sampled_from(["javascript:alert(1)", "", "https://x.example/a b", "ftp://x.example/"]),
    st.builds(lambda tail: "https://x.example/" + tail, printable_ascii),
    any_value,
)
name_value = st.one_of(
    any_value,
    printable_ascii,
    st.text(st.sampled_from("Zoë Å=?utf-8?q?x?= \u202e\u2066\r\n\t\"<>&'"), max_size=300),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=name_value, email=any_value, unsubscribe=url_value, preferences=url_value)
def test_normalize_slots_gives_what_the_tiny_copy_fill_gave(
    rendered: RenderedDigest, name: str, email: str, unsubscribe: str, preferences: str
) -> None:
    values = {
        "name": name,
        "email": email,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
    }
    expected = normalized_or_refused(lambda v: tiny_copy_normalize(rendered, v), values)
    assert normalized_or_refused(normalize_slots, values) == expected


@pytest.mark.parametrize("length", [199, 200, 201, 250, 600])
@pytest.mark.parametrize("unit", ["Name ", "N", "Zoë ", "a\u202e b "])
def test_long_names_are_cut_as_before(length: int, unit: str) -> None:
    url = "https://x.example/u"
    values = {"name": (unit * length)[:length], "email": "a@x.org"}
    values |= {"unsubscribe_url": url, "preferences_url": url}
    assert normalize_slots(values) == old_normalize_slots(values)


quiet_chars = st.sampled_from("aZ09 .-_@:/?=#%!~+'&\"<>\t")
quiet_biased = st.one_of(st.text(quiet_chars, min_size=1, max_size=70), st.text(max_size=5))


@settings(max_examples=500, deadline=None)
@given(
    name=quiet_biased,
    email=quiet_biased,
    unsubscribe=st.builds(lambda tail: "https://x.example/u?token=" + tail, quiet_biased),
    preferences=st.builds(lambda tail: "http://x.example:8080/" + tail, quiet_biased),
)
def test_the_quiet_values_path_gives_what_the_loop_gives(
    name: str, email: str, unsubscribe: str, preferences: str
) -> None:
    """Values near the fast path's edges (quotes, ampersands, doubled or trailing spaces,
    tabs, the 60-character name limit) normalise as the per-slot loop does."""
    values = {
        "name": name,
        "email": email,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
    }
    expected = normalized_or_refused(old_normalize_slots, values)
    assert normalized_or_refused(normalize_slots, values) == expected


@pytest.mark.parametrize(
    ("name", "url_tail"),
    [
        ("Ada Lovelace", "a" * 400),  # the URL at 426 characters, under MAX_SLOT_BYTES
        ("A" * 60, "b"),  # a name of exactly MAX_NAME_CHARS
        ("A" * 61, "b"),  # one over: cut with an ellipsis
        ("Ada", "a" * 486),  # the URL at exactly MAX_SLOT_BYTES
        ("Ada", "a" * 487),  # one over: refused
    ],
)
def test_the_quiet_values_path_at_the_length_limits(name: str, url_tail: str) -> None:
    url = "https://x.example/u?token=" + url_tail
    values = {"name": name, "email": "a@x.org", "unsubscribe_url": url, "preferences_url": url}

    expected = normalized_or_refused(old_normalize_slots, values)
    assert normalized_or_refused(normalize_slots, values) == expected


def test_normalize_slots_refuses_missing_and_unknown_slots() -> None:
    for values in ({"name": "x"}, {**dict.fromkeys(SLOTS, "https://x.example/"), "extra": ""}):
        with pytest.raises(ValueError) as new:
            normalize_slots(values)
        with pytest.raises(ValueError) as old:
            old_normalize_slots(values)
        assert str(new.value) == str(old.value)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    local=st.from_regex(r"[a-z0-9.+_-]{1,20}", fullmatch=True).filter(
        lambda s: ".." not in s and not s.startswith(".") and not s.endswith(".")
    ),
    name=name_value,
    unsubscribe=url_value,
    preferences=url_value,
)
def test_message_bytes_and_verdicts_match_the_old_path(
    rendered: RenderedDigest, local: str, name: str, unsubscribe: str, preferences: str
) -> None:
    address = f"{local}@example.org"
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    old = dataclasses.replace(template, normalize=lambda v: tiny_copy_normalize(rendered, v))
    values = {"name": name, "email": address, "unsubscribe_url": unsubscribe}
    values["preferences_url"] = preferences

    def outcome(t: MessageTemplate, fill: Any) -> Any:
        try:
            return fill(t, t.recipient(address, name, values))
        except InvalidRecipient as exc:
            return ("refused", str(exc))

    assert outcome(template, MessageTemplate.fill) == outcome(old, segment_walk_fill)


def test_overlong_fill_still_falls_back_like_the_old_path(rendered: RenderedDigest) -> None:
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    url = "https://news.example.org/u?token=" + "&" * 90  # 90 x "&amp;": 450 bytes in the html
    values = {"name": "Ada", "email": "a@example.org", "unsubscribe_url": url}
    values["preferences_url"] = url
    recipient = template.recipient("a@example.org", "Ada", values)
    raw = template.fill(recipient)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()


# --------------------------------------------------------------------------- tokens and links


@settings(max_examples=200, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=80),
    email=st.text(max_size=40),
    purpose=st.sampled_from(sorted(tokens.PURPOSES)),
    issued=st.none() | st.dates(),
)
def test_signer_tokens_are_the_old_tokens(
    secret: bytes, email: str, purpose: str, issued: dt.date | None
) -> None:
    if "\n" in email:
        with pytest.raises(ValueError, match="line breaks"):
            tokens.make_token(secret, email, purpose, issued=issued)
        return
    expected = old_make_token(secret, email, purpose, issued)
    assert tokens.make_token(secret, email, purpose, issued=issued) == expected
    assert tokens.Signer(secret).token(email, purpose, issued=issued) == expected
    assert tokens.read_token(secret, expected, purpose) == ((email, issued) if email else None)


def test_make_token_refuses_as_before() -> None:
    with pytest.raises(ValueError, match="unknown token purpose"):
        tokens.make_token(b"", "a@x.org", "nope")
    with pytest.raises(ValueError, match="empty secret"):
        tokens.make_token(b"", "a@x.org", tokens.UNSUBSCRIBE)


@settings(max_examples=200, deadline=None)
@given(
    base=st.sampled_from(["https://news.example.org", "https://news.example.org/list/", "x"]),
    token=st.text(max_size=40),
)
def test_link_is_the_old_link(base: str, token: str) -> None:
    assert tokens.link(base, "unsubscribe", token) == old_link(base, "unsubscribe", token)


@settings(max_examples=100, deadline=None)
@given(
    base=st.sampled_from(["https://news.example.org", "https://news.example.org/list/"]),
    secret=st.binary(min_size=1, max_size=40),
    name=st.text(max_size=20),
    local=st.from_regex(r"[a-z0-9.+_-]{1,20}", fullmatch=True),
)
def test_values_maker_gives_the_old_slot_values(
    base: str, secret: bytes, name: str, local: str
) -> None:
    email = f"{local}@example.org"
    subscriber = Subscriber(email=email, name=name)
    expected = {
        "name": name,
        "email": email,
        "unsubscribe_url": old_link(
            base, "unsubscribe", old_make_token(secret, email, "unsubscribe", None)
        ),
        "preferences_url": old_link(
            base, "preferences", old_make_token(secret, email, "preferences", None)
        ),
    }
    assert values_maker(base_url=base, secret=secret)(subscriber) == expected
    assert subscriber_values(subscriber, base_url=base, secret=secret) == expected


@settings(max_examples=300, deadline=None)
@given(email=st.one_of(st.text(max_size=40), st.sampled_from(["a\nb@x.org", "\ud800@x.org", ""])))
def test_link_signer_links_are_the_old_links_for_any_address(email: str) -> None:
    secret = b"k" * 32

    def outcome(fn: Any) -> Any:
        try:
            return fn()
        except UnicodeEncodeError:  # a lone surrogate (the position named differs)
            return "UnicodeEncodeError"
        except ValueError as exc:
            return ("ValueError", str(exc))

    def old() -> dict[str, str]:
        return {
            slot: old_link(
                "https://x.example", purpose, old_make_token(secret, email, purpose, None)
            )
            for slot, purpose in (
                ("unsubscribe_url", "unsubscribe"),
                ("preferences_url", "preferences"),
            )
        }

    def new() -> dict[str, str]:
        return tokens.LinkSigner("https://x.example/", secret).links(email)

    expected = (
        outcome(old) if "\n" not in email else ("ValueError", "an address has no line breaks")
    )
    assert outcome(new) == expected


# --------------------------------------------------------------------------- display names


def old_format_mailbox(name: str, address: str) -> str:
    name = clean_text(name)[:MAX_NAME_CHARS]
    if not name:
        return address
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    words = Header(name, "utf-8", header_name="To").encode(linesep="\r\n")
    return f"{words} <{address}>"


name_chars = st.one_of(
    st.characters(),
    st.sampled_from('aZ09 -!*+/=?_."()<>@,;:\\[]éÅ李🎉\u202e\u2028\x85\x1c\t\r\n'),
)


@settings(max_examples=500, deadline=None)
@given(name=st.text(name_chars, max_size=MAX_NAME_CHARS + 20))
def test_display_names_encode_as_with_email_header(name: str) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return fn(name, "ada@example.org")
        except UnicodeEncodeError as exc:
            return ("error", str(exc))

    assert outcome(format_mailbox) == outcome(old_format_mailbox)


@pytest.mark.parametrize("length", range(20, 50))
def test_display_names_at_the_one_word_limit(length: int) -> None:
    for unit in ("é", "aé", "ab é", "李", "x=?", "🎉a"):
        name = (unit * length)[:length]
        assert format_mailbox(name, "a@x.org") == old_format_mailbox(name, "a@x.org")


def test_every_ascii_character_in_a_q_encoded_name() -> None:
    for code in range(0x20, 0x7F):
        name = f"Zoë {chr(code)} Abcdefghij Klmnopqrst {chr(code)}x"  # "Q" is the shorter
        expected = old_format_mailbox(name, "a@x.org")
        assert format_mailbox(name, "a@x.org") == expected
        assert "?q?" in expected


# --------------------------------------------------------------------------- fill pieces


def old_clean_text(value: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]", " ", value)).strip()


def old_qp_slot_value(value: str) -> bytes:
    if not value:
        return b""
    if value.isascii() and value.isprintable():
        return _qp_printable(value.replace("=", "=3D")).encode("ascii") + b"=\r\n"
    encoded, _ = qp_encode(value.replace("\r", " ").replace("\n", " "))
    return encoded.encode("ascii") + b"=\r\n"


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.text(name_chars, max_size=120), printable_ascii, st.text(max_size=90)))
def test_clean_text_and_text_slot_values_are_as_before(value: str) -> None:
    assert clean_text(value) == old_clean_text(value)

    def qp(fn: Any) -> Any:
        try:
            return fn(value)
        except UnicodeEncodeError as exc:
            return ("error", str(exc))

    assert qp(_qp_slot_value) == qp(old_qp_slot_value)


def loop_qp_printable(encoded: str) -> str:
    """_qp_printable before its two-line shortcut."""
    limit = 75
    if len(encoded) <= limit:
        return encoded
    lines: list[str] = []
    start = 0
    while len(encoded) - start > limit:
        end = start + limit
        cut = encoded.rfind("=", end - 2, end)
        if cut != -1:
            end = cut
        lines.append(encoded[start:end])
        start = end
    lines.append(encoded[start:])
    return "=\r\n".join(lines)


@settings(max_examples=500, deadline=None)
@given(value=st.text(st.sampled_from("a=b.?/"), min_size=70, max_size=240))
def test_qp_printable_wraps_as_the_loop_did(value: str) -> None:
    encoded = value.replace("=", "=3D")
    assert _qp_printable(encoded) == loop_qp_printable(encoded)
    if not value.endswith((" ", "\t")):
        assert _qp_printable(encoded) == qp_encode(value)[0]


@settings(max_examples=300, deadline=None)
@given(value=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1))
def test_quiet_text_slot_values_are_the_slot_value_encoding(value: str) -> None:
    from newsletter.message import _qp_quiet

    assert _qp_quiet(value) == _qp_slot_value(value)


@pytest.mark.parametrize("length", range(60, 80))
def test_text_slot_values_at_the_one_line_limit(length: int) -> None:
    for unit in ("é", "aé", "a=é", "x\té", "ab ", "é\t"):
        value = (unit * length)[:length]
        for candidate in (value, value + " ", value + "\t", "=" + value):
            assert _qp_slot_value(candidate) == old_qp_slot_value(candidate)


@settings(max_examples=60, deadline=None)
@given(
    filler=st.integers(0, 980),
    lengths=st.lists(st.integers(0, 200), min_size=2, max_size=2),
    two_on_a_line=st.booleans(),
)
def test_the_long_line_fallback_is_taken_exactly_when_a_line_would_be_too_long(
    filler: int, lengths: list[int], two_on_a_line: bool
) -> None:
    sep = "" if two_on_a_line else "\n"
    html = (
        f'<p>{"x" * filler}<a href="{{{{unsubscribe_url}}}}">u</a>{sep}'
        '<a href="{{preferences_url}}">p</a></p>\n<p>{{name}}</p>\n'
    )
    rendered = FakeRendered(subject="s", html=html, text="{{name}}\n")
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    urls = [f"https://p.example/{'t' * n}" for n in lengths]
    slot_values = {"name": "Ada", "email": "a@x.org"}
    slot_values |= {"unsubscribe_url": urls[0], "preferences_url": urls[1]}
    recipient = template.recipient("a@x.org", "Ada", slot_values)
    encoded = {slot: len(recipient.html_values[slot]) for slot in SLOTS}
    too_long = any(
        fixed + sum(encoded[slot] for slot in slots) > 998
        for fixed, slots in template.html_line_checks
    )
    raw = template.fill(recipient)
    assert (raw.count(b"Content-Transfer-Encoding: 7bit") == 0) == too_long
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(url_value, st.text(st.characters(max_codepoint=0x80), max_size=40)))
def test_check_url_verdicts_are_as_before(url: str) -> None:
    old_ok = url.isascii() and not re.search(r"[\s<>\x00-\x1f\x7f]", url)
    try:
        assert check_url(url) == url
        new_ok = True
    except InvalidRecipient:
        new_ok = False
    assert new_ok == old_ok


# --------------------------------------------------------------------------- CSS inlining


def old_inline_css(html: str) -> str:
    """The inlining before the parsed rules were kept across renders: a plain Premailer."""
    from premailer import Premailer

    html = R._MJML_RESET_STYLE.sub('<style type="text/css" data-premailer="ignore">', html, 1)
    out: str = Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=True,
        strip_important=False,
        disable_validation=True,
        disable_link_rewrites=True,
        cssutils_logging_level=R.logging.CRITICAL,
    ).transform(pretty_print=False)
    return out


_SHEETS = (
    "p { color: red } .a { font-size: 12px !important; color: blue }",
    "p { color: green } @media (max-width: 480px) { .a { width: 100% !important } }",
    "td.x, #y p { padding: 0; margin: 1px } a:hover { color: red } * { border: 0 }",
    "",
)


@settings(max_examples=40, deadline=None)
@given(
    pages=st.lists(
        st.tuples(
            st.lists(st.sampled_from(_SHEETS), min_size=0, max_size=3),
            st.lists(st.sampled_from(["p", "td"]), min_size=1, max_size=4),
            st.lists(st.sampled_from(["a", "x", "b"]), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_inlining_with_kept_rules_gives_the_old_html(
    pages: list[tuple[list[str], list[str], list[str]]],
) -> None:
    cache: dict[tuple[str | None, int], Any] = {}  # shared across the pages, as across variants
    for sheets, tags, classes in pages:
        styles = "".join(f"<style>{sheet}</style>" for sheet in sheets)
        body = "".join(
            f'<{tag} class="{cls}" id="y">text <a href="https://e.org/">{cls}</a></{tag}>'
            for tag, cls in zip(tags, classes, strict=False)
        )
        html = (
            f"<!doctype html><html><head>{styles}</head><body>"
            f"<table><tr><td class='x'>{body}</td></tr></table></body></html>"
        )
        assert R._inline_css(html, rules=cache) == old_inline_css(html)
        assert R._inline_css(html) == old_inline_css(html)


def test_rendering_many_digests_with_one_templates_gives_the_fresh_template_html() -> None:
    shared = load_templates(None)
    for count in (1, 3, 6):
        papers = [
            RankedPaper(
                Paper(
                    title=f"Paper {i} of {count}",
                    abstract="Words. " * (5 + i),
                    id=f"2511.{i:05d}",
                    url=f"https://huggingface.co/papers/2511.{i:05d}",
                    authors=("A. Author",),
                ),
                score=10.0 - i,
                topic="Robotics",
            )
            for i in range(count)
        ]
        digest = Digest(
            date=DATE, topics=(TopicGroup("Robotics", tuple(papers)),), total_papers=count
        )
        kept = render(digest, settings=DigestSettings(), templates=shared, nonce="n" * 16)
        fresh = render(
            digest, settings=DigestSettings(), templates=load_templates(None), nonce="n" * 16
        )
        assert (kept.subject, kept.html, kept.text) == (fresh.subject, fresh.html, fresh.text)
    assert shared.css_rules  # the stylesheet was parsed once and kept


def test_paper_views_kept_across_variants_give_each_variant_its_own_reasons() -> None:
    """The variants of a day share papers: the kept views must not carry one variant's
    reasons, topic or score into another's digest."""
    shared = load_templates(None)
    papers = [
        Paper(
            title=f"Diffusion policy {i}",
            abstract="We study robots. " * (4 + i),
            ai_summary="A short summary." if i % 2 else None,
            id=f"2511.{i:05d}",
            url=f"https://huggingface.co/papers/2511.{i:05d}",
            authors=("A. Author", "B. Author"),
        )
        for i in range(4)
    ]
    variants: list[tuple[str, tuple[str, ...], SummaryStyle, float]] = [
        ("Robotics", ("matches: diffusion",), "tldr", 1.0),
        ("Agents", ("author: A. Author",), "tldr", 2.0),
        ("Robotics", (), "abstract", 3.0),
        ("Robotics", ("matches: robots",), "titles", 4.0),
    ]
    for topic, reasons, style, bump in variants:
        ranked = tuple(
            RankedPaper(paper, score=bump + i, topic=topic, reasons=reasons)
            for i, paper in enumerate(papers)
        )
        digest = Digest(
            date=DATE,
            topics=(TopicGroup(topic, ranked),),
            profile=Profile(summary=style),
            total_papers=len(papers),
        )
        kept = render(digest, settings=DigestSettings(), templates=shared, nonce="n" * 16)
        fresh = render(
            digest, settings=DigestSettings(), templates=load_templates(None), nonce="n" * 16
        )
        assert (kept.subject, kept.html, kept.text) == (fresh.subject, fresh.html, fresh.text)
    assert len(shared.paper_views) == 3 * len(papers)  # the two "tldr" variants shared views


@settings(max_examples=300, deadline=None)
@given(name=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_plain_ascii_names_format_as_with_formataddr(name: str) -> None:
    from newsletter.message import format_mailbox

    assert format_mailbox(name, "ada@example.org") == old_format_mailbox(name, "ada@example.org")


@settings(max_examples=500, deadline=None)
@given(name=st.one_of(st.text(name_chars, max_size=210), printable_ascii))
def test_the_to_header_is_the_format_mailbox_line(name: str) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return fn()
        except (InvalidRecipient, UnicodeEncodeError) as exc:
            return ("error", str(exc))

    for address in ("ada@example.org", "not an address"):
        expected = outcome(
            lambda: b"To: " + format_mailbox(name, address).encode("ascii") + CRLF  # noqa: B023
        )
        assert outcome(lambda: _to_header(name, address)) == expected  # noqa: B023


def test_each_ascii_character_in_a_to_header() -> None:
    for code in range(32, 127):
        for name in (chr(code), f"Ada {chr(code)} Lovelace", "x" * 199 + chr(code) + "yz"):
            expected = b"To: " + format_mailbox(name, "a@x.org").encode("ascii") + CRLF
            assert _to_header(name, "a@x.org") == expected, name


def test_each_ascii_character_in_a_name_formats_as_with_formataddr() -> None:
    from newsletter.message import format_mailbox

    for code in range(32, 127):
        for name in (chr(code), f"Ada {chr(code)} Lovelace", f"{chr(code)}x{chr(code)}"):
            got = format_mailbox(name, "ada@example.org")
            assert got == old_format_mailbox(name, "ada@example.org"), name


@pytest.mark.parametrize("length", [1, 31, 32, 63, 64, 65, 100, 128, 200])
def test_signer_tokens_are_the_old_tokens_for_every_key_length(length: int) -> None:
    secret = bytes((i * 37 + 11) % 256 for i in range(length))
    for email in ("ada@example.org", "", "zoë@例え.jp", "x" * 300):
        for purpose in sorted(tokens.PURPOSES):
            expected = old_make_token(secret, email, purpose, None)
            assert tokens.Signer(secret).token(email, purpose) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_b64_is_the_old_b64(data: bytes) -> None:
    assert tokens._b64(data) == old_b64(data)


def test_a_surrogate_address_fails_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        old_make_token(b"k", "a\ud800@x.org", tokens.UNSUBSCRIBE, None)
    with pytest.raises(UnicodeEncodeError):
        tokens.Signer(b"k").token("a\ud800@x.org", tokens.UNSUBSCRIBE)


def old_reflow(text: str, width: int = R.TEXT_WIDTH) -> str:
    """The text part's wrapping before wrapped lines were kept across renders."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        bullet = R._BULLET.match(line)
        out.extend(
            R.textwrap.wrap(
                line.strip(),
                width=width,
                initial_indent=indent,
                subsequent_indent=" " * bullet.end() if bullet else indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


reflow_text = st.lists(
    st.text(st.sampled_from("ab -*\t\n  https://x.org/aaaaaaaaaaaaaaaaaaaaaa é"), max_size=200),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(texts=reflow_text, width=st.sampled_from([10, 30, R.TEXT_WIDTH]))
def test_reflow_with_kept_lines_is_the_old_reflow(texts: list[str], width: int) -> None:
    kept: dict[tuple[str, int], list[str]] = {}  # shared across texts, as across variants
    for text in texts * 2:
        assert R._reflow(text, width, wrapped=kept) == old_reflow(text, width)
        assert R._reflow(text, width) == old_reflow(text, width)


# --------------------------------------------------------------------------- grouping

subscriber_fields = st.fixed_dictionaries(
    {
        "topics": st.lists(st.sampled_from(["RL", "Agents"]), max_size=2).map(tuple),
        "keywords": st.lists(st.sampled_from(["diffusion", "robot"]), max_size=1).map(tuple),
        "authors": st.lists(st.sampled_from(["Ada"]), max_size=1).map(tuple),
        "max_papers": st.sampled_from([None, 5, 10]),
        "summary": st.sampled_from(["tldr", "full", "none"]),
        "name": st.sampled_from(["", "Ada"]),
        "timezone": st.sampled_from([None, "Europe/Paris"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(a=subscriber_fields, b=subscriber_fields)
def test_profile_keys_are_equal_exactly_when_profiles_are(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    """plan_day groups subscribers on profile_key instead of the Profile itself."""
    one, two = Subscriber(email="a@x.org", **a), Subscriber(email="b@x.org", **b)
    assert (profile_key(one) == profile_key(two)) == (one.profile == two.profile)
    assert (hash(profile_key(one)) == hash(profile_key(two))) or one.profile != two.profile


# --------------------------------------------------------------------------- quiet recipients


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(quiet_biased, name_value),
    local=st.from_regex(r"[a-z0-9=+_'&-]{1,80}", fullmatch=True),
    unsubscribe=st.builds(lambda tail: "https://x.example/u?token=" + tail, quiet_biased),
    preferences=st.builds(lambda tail: "http://x.example:8080/p?token=" + tail, quiet_biased),
    slot_name=st.one_of(st.none(), quiet_biased),
)
def test_a_quiet_recipient_gives_the_general_paths_message(
    rendered: RenderedDigest,
    name: str,
    local: str,
    unsubscribe: str,
    preferences: str,
    slot_name: str | None,
) -> None:
    """recipient() makes the holes' bytes at once when the renderer takes the values as
    they are: the message, the recipient and every verdict are the general path's."""
    address = f"{local}@example.org"
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    general = dataclasses.replace(template, quiet=None)
    values = {
        "name": name if slot_name is None else slot_name,
        "email": address,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
    }

    def outcome(t: MessageTemplate) -> Any:
        try:
            recipient = t.recipient(address, name, values)
            raw = t.fill(recipient)
        except InvalidRecipient as exc:
            return ("refused", str(exc))
        fields = (recipient.email, recipient.name, recipient.message_id)
        return fields, dict(recipient.values), dict(recipient.html_values), raw

    expected = outcome(general)
    assert outcome(template) == expected
    quiet = R.quiet_slots(values["name"], address, unsubscribe, preferences)
    if quiet and not isinstance(expected[0], str):
        assert template.recipient(address, name, values).prefilled is not None


def test_a_prefilled_recipient_is_filled_only_by_its_own_template(
    rendered: RenderedDigest,
) -> None:
    one = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    other = build_template(
        rendered, sender=SenderSettings(from_="Other <x@other.example>"), date=DATE, now=NOW
    )
    url = "https://x.example/u?token=abc"
    values = {"name": "Ada", "email": "ada@x.org", "unsubscribe_url": url, "preferences_url": url}
    recipient = one.recipient("ada@x.org", "Ada", values)
    assert recipient.prefilled is not None
    assert other.fill(recipient) == other.fill(dataclasses.replace(recipient, prefilled=None))
    assert b"x@other.example" in other.fill(recipient)


def test_a_dkim_signed_quiet_message_verifies(rendered: RenderedDigest) -> None:
    import base64 as b64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from newsletter.message import DkimSigner

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = b64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signer = DkimSigner(private_key=private, selector="s1", domain="news.example.org")
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW, dkim=signer)
    url = "https://x.example/u?token=abc"
    values = {"name": "Ada", "email": "ada@x.org", "unsubscribe_url": url, "preferences_url": url}
    recipient = template.recipient("ada@x.org", "Ada", values)
    assert recipient.prefilled is not None
    raw = template.fill(recipient)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return b"v=DKIM1; k=rsa; p=" + public

    assert dkim.verify(raw, dnsfunc=dnsfunc)


# --------------------------------------------------------------------------- html line wrapping


def old_window(line: str, pattern: re.Pattern[str], extra: int, limit: int) -> int:
    count, low, best = 0, 0, 0
    for match in pattern.finditer(line):
        cap = limit - extra * count
        if cap < low:
            return best
        if cap < match.end():
            return cap
        best, count, low = match.end() - 1, count + 1, match.end()
    cap = limit - extra * count
    return best if cap < low else cap


def old_wrap_lines(html: str, nonce: str, limit: int = R.MAX_LINE_BYTES) -> str:
    """_wrap_lines when it counted the placeholders of the rest of a line after each break."""
    pattern = R._placeholder_pattern(nonce)
    extra = R.MAX_SLOT_BYTES - len(R._placeholder(nonce, "name"))
    out: list[str] = []
    for line in html.split("\n"):
        while len(line) + len(pattern.findall(line)) * extra > limit:
            window = old_window(line, pattern, extra, limit)
            cut = line.rfind(" ", 1, window + 1)
            if cut > 0:
                out.append(line[:cut])
                line = line[cut + 1 :]
                continue
            cut = R._hard_break(line, window)
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return "\n".join(out)


html_piece = st.one_of(
    st.sampled_from(["<td>", "</a>", " ", "  ", "word", "&amp;", "&#160;", "\n", "x" * 300]),
    st.sampled_from([R._placeholder("n" * 16, slot) for slot in SLOTS]),
    st.text(st.sampled_from("ab <>&;"), max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(html_piece, max_size=400), limit=st.sampled_from([120, 600, 900]))
def test_wrap_lines_breaks_where_it_did(pieces: list[str], limit: int) -> None:
    html = "".join(pieces)
    assert R._wrap_lines(html, "n" * 16, limit) == old_wrap_lines(html, "n" * 16, limit)


def test_wrap_lines_broken_inside_a_placeholder_count_the_rest_as_before() -> None:
    placeholder = R._placeholder("n" * 16, "name")
    for head in range(80, 125):
        line = "x" * head + placeholder + "y" * 50 + placeholder + "z" * 30
        for limit in (120, 130, 150):
            assert R._wrap_lines(line, "n" * 16, limit) == old_wrap_lines(line, "n" * 16, limit)


def test_wrap_lines_of_a_rendered_digest_are_as_before() -> None:
    papers = [
        RankedPaper(
            Paper(
                title=f"A study of long titles {i} " * 3,
                abstract="Words and more words. " * 40,
                id=f"2511.{i:05d}",
                url=f"https://huggingface.co/papers/2511.{i:05d}",
                authors=tuple(f"Author {j}" for j in range(12)),
            ),
            score=30.0 - i,
            topic="Robotics",
        )
        for i in range(25)
    ]
    digest = Digest(date=DATE, topics=(TopicGroup("Robotics", tuple(papers)),), total_papers=25)
    captured: list[str] = []
    original = R._wrap_lines

    def spy(html: str, nonce: str, limit: int = R.MAX_LINE_BYTES) -> str:
        captured.append(html)
        return original(html, nonce, limit)

    R._wrap_lines = spy
    try:
        rendered = render(digest, settings=DigestSettings(), templates=load_templates(None))
    finally:
        R._wrap_lines = original
    assert captured and max(len(line) for html in captured for line in html.split("\n")) > 900
    for html in captured:
        assert R._wrap_lines(html, rendered.nonce) == old_wrap_lines(html, rendered.nonce)
