"""``newsletter serve``: the web app behind the unsubscribe and preferences links."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import click

from newsletter import stores
from newsletter import subscribers as roster
from newsletter.cli.options import config_option
from newsletter.config import Settings, load_settings, secret_values
from newsletter.errors import ConfigError
from newsletter.headers import split_mailbox
from newsletter.logs import setup_logging
from newsletter.models import Subscriber
from newsletter.prefs import PrefsStore
from newsletter.tokens import signing_keys
from newsletter.web import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_THREADS,
    ListLookup,
    ReaderOptions,
    SignupOptions,
    WebApp,
    make_server,
)
from newsletter.webhooks import webhook_handler
from newsletter.weekly import default_weekday

CONFIRMATION_SUBJECT = "Confirm your subscription to {title}"
"""Subject of the double opt-in email."""

CONFIRMATION_TEXT = """\
Someone (hopefully you) asked to receive {title} at this address.

To confirm, open this link and press the button:
{url}

If it was not you, ignore this email: nothing will be sent.
"""
"""Body of the double opt-in email."""


def confirmation_message(settings: Settings, address: str, url: str) -> EmailMessage:
    """The double opt-in email: plain text, one link."""
    title = settings.digest.title
    message = EmailMessage()
    message["From"] = settings.sender.from_
    message["To"] = address
    message["Subject"] = CONFIRMATION_SUBJECT.format(title=title)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.sender.from_.rsplit("@", 1)[-1].strip(">"))
    message["Auto-Submitted"] = "auto-generated"
    if settings.sender.reply_to:
        message["Reply-To"] = settings.sender.reply_to
    message.set_content(CONFIRMATION_TEXT.format(title=title, url=url))
    return message


def confirmation_sender(settings: Settings) -> Callable[[str, str], None]:
    """A sender of confirmation emails for the configured backend (outbox or smtp)."""
    delivery = settings.delivery

    def to_outbox(address: str, url: str) -> None:
        folder = Path(delivery.outbox)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"confirm-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        (folder / name).write_bytes(confirmation_message(settings, address, url).as_bytes())

    def by_smtp(address: str, url: str) -> None:
        message = confirmation_message(settings, address, url)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if delivery.security == "tls":
            smtp = smtplib.SMTP_SSL(
                delivery.host, delivery.port, timeout=delivery.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(delivery.host, delivery.port, timeout=delivery.timeout)
        with smtp:
            if delivery.security == "starttls":
                smtp.starttls(context=context)
            if delivery.username and delivery.password:
                smtp.login(delivery.username, delivery.password)
            smtp.send_message(message)

    if delivery.backend == "outbox":
        return to_outbox
    if delivery.backend == "smtp":
        return by_smtp
    raise ConfigError(
        f"delivery.backend: sign-up confirmations are sent with 'smtp' or 'outbox', "
        f"not {delivery.backend!r}"
    )


def build_app(settings: Settings, *, allow_signup: bool = False) -> WebApp:
    """The web app for these settings (the secret must be in the environment)."""
    secret = signing_keys(settings)
    topics = roster.default_topic_names(settings.digest.taxonomy)
    signup = None
    if allow_signup:
        limits = settings.signup
        signup = SignupOptions(
            list_path=settings.subscribers,
            send_confirmation=confirmation_sender(settings),
            base_url=settings.digest.base_url,
            max_age=dt.timedelta(days=limits.confirm_days),
            interval=dt.timedelta(minutes=limits.interval_minutes),
            per_client_hour=limits.per_client_hour,
            max_pending=limits.max_pending,
        )
    store = PrefsStore(settings.state)
    listed = settings.subscribers
    lookup: Callable[[str], Subscriber | None] = ListLookup(listed, known_topics=topics)
    if stores.is_database(listed):  # the list is kept in the state database
        lookup = stores.StateStore(settings.state if listed == stores.STATE else listed).find
    try:
        resubscribe: Callable[[str, str], None] | None = confirmation_sender(settings)
    except ConfigError:  # an HTTP provider backend: readers ask the sender to add them back
        resubscribe = None
    return WebApp(
        store=store,
        secret=secret,
        topics=topics or (),
        title=settings.digest.title,
        lookup=lookup,
        signup=signup,
        webhooks=webhook_handler(settings, store),
        reader=ReaderOptions(
            base_url=settings.digest.base_url,
            send_confirmation=resubscribe,
            default_weekday=default_weekday(settings.schedule.weekly_day, settings.schedule.days),
            message_domain=split_mailbox(settings.sender.from_)[1].rsplit("@", 1)[1],
        ),
    )


@click.command("serve")
@config_option
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port.")
@click.option(
    "--threads",
    default=DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads running requests (connections are held by one poll loop).",
)
@click.option(
    "--trusted-proxy",
    metavar="ADDRESS",
    help="The reverse proxy's address: its X-Forwarded-For names the client.",
)
@click.option(
    "--allow-signup",
    is_flag=True,
    help="Offer /subscribe (double opt-in: a confirmation email, then the list).",
)
def serve_cmd(
    config_path: str | None,
    host: str,
    port: int,
    threads: int,
    trusted_proxy: str | None,
    allow_signup: bool,
) -> None:
    """Serve the unsubscribe (RFC 8058 one-click) and preferences pages.

    Needs NEWSLETTER_SECRET_KEY (the same as for sending). Unsubscribes and preference
    changes go to the state database; the next send honours them.
    """
    settings = load_settings(config_path)
    app = build_app(settings, allow_signup=allow_signup)
    setup_logging(level="INFO", secrets_=secret_values(settings))
    server = make_server(app, host=host, port=port, threads=threads, trusted_proxy=trusted_proxy)
    bound_host, bound_port = server.server_address
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"serving on http://{shown}:{bound_port} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def register(group: click.Group) -> None:
    """Add ``newsletter serve`` to the main command."""
    group.add_command(serve_cmd)
