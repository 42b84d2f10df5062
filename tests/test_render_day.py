"""A day's variants rendered with the work kept across them (one ``Templates`` for the day:
kept paper views, one-line texts, wrapped lines, parsed stylesheets)
give, byte for byte, what each variant rendered alone with a fresh ``load_templates`` gives.
"""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.config import DigestSettings, Settings, SourceSettings
from newsletter.pipeline import prepare_day
from newsletter.render import render
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy
from tests.scale_helpers import synthetic_subscribers

DATE = dt.date(2026, 11, 25)
WEB_URL = "https://papers.example/2026-11-25.html"


@pytest.mark.parametrize(
    "budget",
    [
        None,  # the default: every paper in full
        40_000,  # summaries shortened, some papers in the compact list
        15_000,  # most papers in the compact list
    ],
)
def test_every_variant_of_the_sample_day_is_its_fresh_render(budget: int | None) -> None:
    digest = DigestSettings(
        base_url="https://papers.example", max_html_bytes=budget or DigestSettings().max_html_bytes
    )
    settings = Settings(source=SourceSettings(default="sample"), digest=digest)
    topics = [t.name for t in load_taxonomy(None)]
    people = synthetic_subscribers(400, topics=topics, variants=24)
    day = prepare_day(settings, DATE, source="sample", subscribers=people, web_url=WEB_URL)

    assert len(day.variants) >= 20
    shrunk = 0
    for variant in (day.full, *day.variants):
        kept = variant.rendered
        fresh = render(
            variant.digest,
            settings=settings.digest,
            templates=load_templates(None),
            web_url=WEB_URL,
            nonce=kept.nonce,
        )
        assert kept == fresh
        shrunk += kept.compact_papers > 0 or kept.summary_chars != fresh.summary_chars
    assert (shrunk > 0) == (budget is not None)
