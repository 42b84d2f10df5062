"""Each speed trick the package keeps gives what the plain way gives, by the stdlib's or
the library's own word (never an old copy of our code):

* the message: every filled message is what the stdlib parser reads back as the same
  headers and parts, its To header is ``formataddr`` / ``Header``'s, its text slots are
  quoted-printable that ``quopri`` decodes, and a DKIM-signed one verifies (dkimpy);
* the slot values: the common-case shortcut of ``slots.normalize`` agrees with its
  per-slot rule, and the html values unescape (``html.unescape``) to the text values;
* the renderer's caches (premailer's kept rules, kept text wrapping, kept paper views)
  give the HTML and text of a fresh ``Premailer`` / reflow / ``Templates``;
* the link tokens read back with ``tokens.read_token`` from links ``urllib`` parses.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email
import email.policy
import html as html_lib
import quopri
from email.header import Header, decode_header, make_header
from email.utils import formataddr, parseaddr
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dkim
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from premailer import Premailer

from newsletter import htmlpart, slots, tokens
from newsletter import render as R
from newsletter.config import DigestSettings, SenderSettings
from newsletter.headers import (
    InvalidRecipient,
    clean_text,
    format_mailbox,
    qp_encoded,
    qp_link,
    qp_value,
)
from newsletter.message import DkimSigner, build_template
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
from newsletter.render import RenderedDigest, render
from newsletter.send import values_maker
from newsletter.slots import MAX_NAME_CHARS, MAX_SLOT_BYTES, SLOTS
from newsletter.templating import load_templates
from tests.doubles import dkim_key

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


def stdlib_mailbox(name: str, address: str) -> str:
    """The To value by the stdlib alone: ``formataddr`` for plain ASCII, else ``Header``."""
    name = clean_text(name)[:MAX_NAME_CHARS]
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    return (
        f"{Header(name, 'utf-8', header_name='To').encode(linesep=chr(13) + chr(10))} <{address}>"
    )


def read_to(raw: bytes) -> tuple[str, str]:
    """(name, address) of the To header, RFC 2047 words decoded as RFC 2047 says."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32)["To"]
    phrase, _, address = value.replace("\r\n ", " ").rpartition(" <")
    if phrase.startswith("=?"):  # encoded words: RFC 2047 decoding (no quoting inside)
        return str(make_header(decode_header(phrase))), address.rstrip(">")
    return parseaddr(value)


# --------------------------------------------------------------------------- strategies

any_value = st.text(max_size=60)
printable_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=250)
quiet_chars = st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="\"&'<>")
quiet_biased = st.one_of(st.text(quiet_chars, min_size=1, max_size=70), st.text(max_size=5))
url_value = st.one_of(
    st.builds(lambda tail: "https://news.example.org/u?token=" + tail, st.text(max_size=30)),
    st.builds(lambda tail: "http://a.example/" + tail, st.text(st.characters(max_codepoint=127))),
    st.sampled_from(["javascript:alert(1)", "", "https://x.example/a b", "ftp://x.example/"]),
    st.builds(lambda tail: "https://x.example/" + tail, printable_ascii),
    st.builds(lambda tail: "https://x.example/u?token=" + tail, quiet_biased),
    any_value,
)
name_chars = st.one_of(
    st.characters(),
    st.sampled_from('aZ09 -!*+/=?_."()<>@,;:\\[]éÅ李🎉\u202e\u2028\x85\x1c\t\r\n'),
)
name_value = st.one_of(
    any_value,
    printable_ascii,
    quiet_biased,
    st.text(name_chars, max_size=MAX_NAME_CHARS + 20),
    st.text(st.sampled_from("Zoë Å=?utf-8?q?x?= \u202e\u2066\r\n\t\"<>&'"), max_size=300),
)


# --------------------------------------------------------------------------- whole messages


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=name_value,
    local=st.from_regex(r"[a-z0-9=+_'&-]{1,60}", fullmatch=True),
    unsubscribe=url_value,
    preferences=url_value,
)
def test_every_message_is_what_the_stdlib_reads_back(
    rendered: RenderedDigest, name: str, local: str, unsubscribe: str, preferences: str
) -> None:
    address = f"{local}@example.org"
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    values = {
        "name": name,
        "email": address,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
        "feedback_url": "https://papers.example/f/" + "F" * 36,
    }
    try:
        recipient = template.recipient(address, name, values)
    except InvalidRecipient:
        with pytest.raises(ValueError):
            rendered.fill(values)  # the renderer refuses them too
        return
    raw = template.fill(recipient)
    assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    assert read_to(raw) == (clean_text(name)[:MAX_NAME_CHARS], address)
    to_line = raw.split(b"\r\nTo: ", 1)[1].split(b"\r\nSubject: ", 1)[0].decode("ascii")
    assert to_line == stdlib_mailbox(name, address)
    assert msg["Message-ID"] == recipient.message_id
    assert str(msg["List-Unsubscribe"]).startswith(f"<{recipient.values['unsubscribe_url']}>")
    html, text = rendered.fill(values)
    text_part, html_part = msg.iter_parts()
    assert text_part.get_content().replace("\r\n", "\n") == text
    assert html_part.get_content().replace("\r\n", "\n") == html + "\n"
    body = raw.split(b"\r\n\r\n", 2)[2].split(b"\r\n--", 1)[0]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # RFC 2045


def test_a_dkim_signed_message_verifies(rendered: RenderedDigest) -> None:
    private, public = dkim_key()
    signer = DkimSigner(private_key=private, selector="s1", domain="news.example.org")
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW, dkim=signer)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return b"v=DKIM1; k=rsa; p=" + public

    for name in ("Ada", "Zoë Ångström", "x" * 200):
        url = "https://x.example/u?token=abc=="
        values = {
            "name": name,
            "email": "ada@x.org",
            "unsubscribe_url": url,
            "preferences_url": url,
            "feedback_url": "https://papers.example/f/" + "F" * 36,
        }
        raw = template.fill(template.recipient("ada@x.org", name, values))
        assert dkim.verify(raw, dnsfunc=dnsfunc)


# --------------------------------------------------------------------------- headers


@settings(max_examples=500, deadline=None)
@given(name=st.text(name_chars, max_size=MAX_NAME_CHARS + 20))
def test_display_names_encode_as_formataddr_or_header(name: str) -> None:
    assert format_mailbox(name, "ada@example.org") == stdlib_mailbox(name, "ada@example.org")


@pytest.mark.parametrize("length", range(20, 61))
def test_display_names_at_the_one_word_limit(length: int) -> None:
    for unit in ("é", "aé", "ab é", "李", "x=?", "🎉a"):
        name = (unit * length)[:length]
        assert format_mailbox(name, "a@x.org") == stdlib_mailbox(name, "a@x.org")


def test_each_ascii_character_in_a_name() -> None:
    for code in range(0x20, 0x7F):
        for name in (f"Ada {chr(code)} Lovelace", f"Zoë {chr(code)} Abcdefghij {chr(code)}x"):
            assert format_mailbox(name, "a@x.org") == stdlib_mailbox(name, "a@x.org")


# --------------------------------------------------------------------------- text slots


@settings(max_examples=500, deadline=None)
@given(
    value=st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
        st.text(st.sampled_from("a=b. \té"), max_size=240),
        st.sampled_from([".", " ", "a ", "=", "From me", "x" * 75, "x" * 76]),
        printable_ascii,
    )
)
def test_a_text_slot_value_is_quoted_printable_that_quopri_decodes(value: str) -> None:
    value = " ".join(value.split())  # slot values are one line (slots.normalize)
    encoded = qp_value(value)
    assert encoded.endswith(b"=\r\n") and encoded.isascii()
    lines = encoded.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines)
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")) == value.encode("utf-8")
    reference = binascii.b2a_qp(value.encode("utf-8"), istext=True)
    if b"\n" not in reference and len(reference) < 76:  # one line: binascii's, then "="
        assert encoded == reference + b"=\r\n"


@settings(max_examples=1000, deadline=None)
@given(
    value=st.one_of(
        st.text(st.sampled_from("a=. 3D"), max_size=400),
        st.builds(
            "https://papers.example/{}?token={}".format,
            st.sampled_from(["unsubscribe", "preferences", "f", "x" * 40]),
            st.text(st.sampled_from("aZ09-_.="), max_size=200),
        ),
        printable_ascii,
    )
)
@example(value="a" * 73 + "=")  # a last line of 76 that ends in =3D
@example(value="a" * 151)  # b2a_qp's last line of 76, cut once more
def test_a_plain_ascii_text_slot_value_is_what_binascii_makes_of_it(value: str) -> None:
    """qp_value's shortcut for printable ASCII (links, addresses, names) gives what
    binascii.b2a_qp and the cut of the last line give."""
    assert qp_value(value) == qp_encoded(value)


@settings(max_examples=1000, deadline=None)
@given(link=url_value)
@example(link="https://x.example/" + "a" * 57 + "=")  # a last line of 76 that ends in =3D
@example(link="https://x.example/?a=1&b=%2F")  # plain but not quiet (its & is escaped in html)
def test_a_link_is_what_binascii_makes_of_it(link: str) -> None:
    """qp_link (no checks) gives what binascii.b2a_qp and the cut of the last line give,
    for every link slots.normalize lets into the text part."""
    values = {
        "name": "a",
        "email": "a@x.org",
        "unsubscribe_url": "https://x.org/u",
        "preferences_url": "https://x.org/p",
        "feedback_url": "https://x.org/f",
    }
    try:
        text, _ = slots.normalize({**values, "unsubscribe_url": link})
    except ValueError:
        return  # refused: it never reaches the part
    assert qp_link(text["unsubscribe_url"]) == qp_encoded(text["unsubscribe_url"])


@settings(max_examples=500, deadline=None)
@given(name=name_value, email=any_value, unsubscribe=url_value, preferences=url_value)
@example(  # a noncharacter: HTML parsers drop its reference, so it is cleaned out
    name="a", email="\ufdd0", unsubscribe="https://x.org/u", preferences="https://x.org/p"
)
def test_normalize_shortcut_agrees_with_its_rule_per_slot(
    name: str, email: str, unsubscribe: str, preferences: str
) -> None:
    values = {
        "name": name,
        "email": email,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
        "feedback_url": "https://papers.example/f/" + "F" * 36,
    }

    def per_slot() -> Any:
        pairs = [slots._normalize_one(slot, values[slot]) for slot in SLOTS]
        return {s: p[0] for s, p in zip(SLOTS, pairs, strict=True)}, {
            s: p[1] for s, p in zip(SLOTS, pairs, strict=True)
        }

    try:
        expected = per_slot()
    except ValueError as exc:
        with pytest.raises(ValueError, match=str(exc).split(":")[0]):
            slots.normalize(values)
        return
    text, escaped = slots.normalize(values)
    assert (text, escaped) == expected
    for slot in SLOTS:
        assert escaped[slot].isascii() and len(escaped[slot]) <= MAX_SLOT_BYTES
        assert html_lib.unescape(escaped[slot]) == text[slot]
        assert text[slot] == " ".join(text[slot].split())


# --------------------------------------------------------------------------- renderer caches


_SHEETS = (
    "p { color: red } .a { font-size: 12px !important; color: blue }",
    "p { color: green } @media (max-width: 480px) { .a { width: 100% !important } }",
    "td.x, #y p { padding: 0; margin: 1px } a:hover { color: red } * { border: 0 }",
    "",
)


def plain_premailer(html: str) -> str:
    """premailer itself, with inline_css's options and without its kept rules."""
    html = htmlpart._MJML_RESET_STYLE.sub(
        '<style type="text/css" data-premailer="ignore">', html, 1
    )
    out: str = Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=True,
        strip_important=False,
        disable_validation=True,
        disable_link_rewrites=True,
        cssutils_logging_level=50,
    ).transform(pretty_print=False)
    return out


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
def test_inlining_with_kept_rules_is_premailers(
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
        assert htmlpart.inline_css(html, rules=cache) == plain_premailer(html)


reflow_text = st.lists(
    st.text(st.sampled_from("ab -*\t\n  https://x.org/aaaaaaaaaaaaaaaaaaaaaa é"), max_size=200),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(texts=reflow_text, width=st.sampled_from([10, 30, R.TEXT_WIDTH]))
def test_reflow_with_kept_lines_is_the_plain_reflow(texts: list[str], width: int) -> None:
    kept: dict[tuple[str, int], list[str]] = {}  # shared across texts, as across variants
    for text in texts * 2:
        out = R._reflow(text, width, wrapped=kept)
        assert out == R._reflow(text, width)
        for line in out.splitlines():  # a longer line is one word (after its bullet)
            body = line.strip().removeprefix("* ").removeprefix("- ")
            assert len(line) <= width or len(body.split()) <= 1
        assert out.split() == text.split()


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


# --------------------------------------------------------------------------- html lines

html_piece = st.one_of(
    st.sampled_from(["<td>", "</a>", " ", "  ", "word", "&amp;", "&#160;", "\n", "x" * 300]),
    st.sampled_from([slots.placeholder("n" * 16, slot) for slot in SLOTS]),
    st.text(st.sampled_from("ab <>&;"), max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(html_piece, max_size=400), limit=st.sampled_from([120, 600, 900]))
def test_wrapped_html_lines_fit_with_every_slot_at_its_longest(
    pieces: list[str], limit: int
) -> None:
    html = "".join(pieces)
    wrapped = htmlpart.wrap_lines(html, "n" * 16, limit)
    longest = slots.placeholder_pattern("n" * 16).sub("x" * MAX_SLOT_BYTES, wrapped)
    soft = [line for line in longest.split("\n") if " " in line or "<" in line]
    assert all(len(line) <= limit for line in soft)
    # only spaces became line breaks, or breaks were added: the text is the same
    assert wrapped.replace("\n", "").replace(" ", "") == html.replace("\n", "").replace(" ", "")


# --------------------------------------------------------------------------- links and grouping


@settings(max_examples=100, deadline=None)
@given(
    base=st.sampled_from(["https://news.example.org", "https://news.example.org/list/"]),
    secret=st.binary(min_size=1, max_size=40),
    name=st.text(max_size=20),
    local=st.from_regex(r"[a-z0-9.+_-]{1,20}", fullmatch=True),
)
def test_slot_links_carry_tokens_that_read_back(
    base: str, secret: bytes, name: str, local: str
) -> None:
    address = f"{local}@example.org"
    values = values_maker(base_url=base, secret=secret, list_id="L", date=DATE)(
        Subscriber(email=address, name=name)
    )
    assert (values["name"], values["email"]) == (name, address)
    for slot, purpose in (("unsubscribe_url", "unsubscribe"), ("preferences_url", "preferences")):
        parts = urlsplit(values[slot])
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{base.rstrip('/')}/{purpose}"
        (token,) = parse_qs(parts.query)["token"]
        assert tokens.read_token(secret, token, purpose) == (address, None)


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
