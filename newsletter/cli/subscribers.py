"""``newsletter subscribers``: list, add, remove, set, import, export, validate.

Edits go through :func:`newsletter.subscribers.edit_subscribers` (comments kept, locked,
atomic, backed up); the readers' own unsubscribes and preferences are read from the
state database and shown by ``list``, never written into the YAML.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import click

from newsletter import stores
from newsletter import subscribers as roster
from newsletter.bounces.policy import LOCKED_REASONS
from newsletter.cli.options import (
    FORMULA_STARTS,
    LIST_SEPARATOR,
    config_option,
    csv_cell,
    echo_rows,
)
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError, SubscribersError
from newsletter.files import atomic_write
from newsletter.listfile import render_list
from newsletter.models import SUMMARY_STYLES, Subscriber, email_key
from newsletter.prefs import PrefsStore
from newsletter.state import Overlay, State, Suppression

CLEARABLE_FIELDS: tuple[str, ...] = tuple(f for f in roster.FIELDS if f not in ("email", "added"))
"""Fields ``set --clear`` may remove (every field but email and added)."""

HEADER_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "e_mail": "email",
        "mail": "email",
        "email_address": "email",
        "address": "email",
        "full_name": "name",
        "fullname": "name",
        "topic": "topics",
        "keyword": "keywords",
        "author": "authors",
        "summary_style": "summary",
        "style": "summary",
        "tz": "timezone",
        "time_zone": "timezone",
        "maxpapers": "max_papers",
        "max": "max_papers",
        "date_added": "added",
    }
)
"""CSV headers (lowercased, spaces and dashes as ``_``) understood besides the field names."""

_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "no", "n", "off"})


@dataclass
class _Env:
    config: str | None
    list_path: str | None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def path(self) -> str:
        return self.list_path or self.settings.subscribers

    def topics(self) -> tuple[str, ...] | None:
        return roster.default_topic_names(self.settings.digest.taxonomy)

    def roster(self) -> stores.SubscriberStore:
        """Where the list lives: the YAML file or the state database."""
        settings = self.settings
        return stores.open_store(self.path, state=settings.state, group=settings.file_group)

    def prefs(self) -> PrefsStore:
        return PrefsStore(self.settings.state)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _split(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _entry_options(func: Any) -> Any:
    options = [
        click.option("--name", help="How the greeting addresses them."),
        click.option(
            "--topics",
            "topics",
            multiple=True,
            help="Topic names, comma-separated or repeated (from the taxonomy).",
        ),
        click.option("--keywords", multiple=True, help="Keywords, comma-separated or repeated."),
        click.option("--authors", multiple=True, help="Authors, comma-separated or repeated."),
        click.option("--max-papers", type=click.IntRange(min=1), help="At most this many papers."),
        click.option("--summary", type=click.Choice(SUMMARY_STYLES), help="How much per paper."),
        click.option("--timezone", help="IANA time zone, e.g. Europe/Paris."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _fields(
    *,
    name: str | None,
    topics: Sequence[str],
    keywords: Sequence[str],
    authors: Sequence[str],
    max_papers: int | None,
    summary: str | None,
    timezone: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if topics:
        fields["topics"] = _split(topics)
    if keywords:
        fields["keywords"] = _split(keywords)
    if authors:
        fields["authors"] = _split(authors)
    if max_papers is not None:
        fields["max_papers"] = max_papers
    if summary is not None:
        fields["summary"] = summary
    if timezone is not None:
        fields["timezone"] = timezone
    return fields


def _refuse(email: str, reasons: list[tuple[str, str]]) -> SubscribersError:
    shown = email if email.isprintable() else repr(email)  # a CR/LF must not split the line
    return SubscribersError(
        f"{shown}: not saved", [f"{field}: {reason}" for field, reason in reasons]
    )


def _with_env(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command ``--config`` and ``--subscribers`` and pass it an _Env first."""

    @click.option(
        "--subscribers",
        "list_path",
        type=click.Path(dir_okay=False),
        help="The subscriber list (default: the 'subscribers' setting, subscribers.yaml).",
    )
    @config_option
    @functools.wraps(func)
    def command(config_path: str | None, list_path: str | None, **kwargs: Any) -> None:
        func(_Env(config_path, list_path), **kwargs)

    return command


@click.group("subscribers")
def subscribers_group() -> None:
    """Manage the subscriber list (the YAML file) and see the readers' own choices."""


@subscribers_group.command("validate")
@_with_env
def validate_cmd(env: _Env) -> None:
    """Check the list; print every problem with file:line: field (exit 2 if any)."""
    store = env.roster()
    subs = store.load(env.topics())
    active = sum(1 for s in subs if s.active)
    click.echo(f"{store.label}: {_count(len(subs), 'subscriber')} ({active} active), no problems")


@subscribers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per subscriber.")
@_with_env
def list_cmd(env: _Env, as_json: bool) -> None:
    """Show every subscriber with their state: active, inactive, unsubscribed, paused."""
    subs = env.roster().load(env.topics())
    existing = State.open_existing(env.settings.state)  # a listing creates no database
    if existing is None:
        suppressed: dict[str, Suppression] = {}
        overlays: dict[str, Overlay] = {}
        receiving = {email_key(s.email) for s in subs if s.active}
    else:
        with existing as store:
            suppressed = {email_key(s.email): s for s in store.suppressions()}
            overlays = store.overlays()
            receiving = {email_key(s.email) for s in store.apply(subs)}
    rows: list[dict[str, Any]] = []
    for sub in subs:
        key = email_key(sub.email)
        overlay = overlays.get(key)
        if key in suppressed:
            why = suppressed[key].reason
            label = "unsubscribed" if why == "unsubscribe" else f"suppressed: {why}"
            state = f"{label} {suppressed[key].created_at[:10]}"
        elif not sub.active:
            state = "inactive"
        elif overlay is not None and overlay.paused:
            state = "paused"
        else:
            state = "active"
        row: dict[str, Any] = {
            "email": sub.email,
            "name": sub.name,
            "state": state,
            "receives_next_send": key in receiving,
            "suppressed": suppressed[key].reason if key in suppressed else None,
            "topics": list(sub.topics),
            "summary": sub.summary,
        }
        if overlay is not None:
            row["own_choices"] = {
                "topics": list(overlay.topics) if overlay.topics is not None else None,
                "summary": overlay.summary,
                "paused": overlay.paused,
            }
        rows.append(row)
    echo_rows(rows, as_json=as_json, line=_subscriber_line)
    if as_json:
        return
    known = {email_key(s.email) for s in subs}
    gone = [s for key, s in suppressed.items() if key not in known]
    unsubscribed = sum(1 for s in suppressed.values() if s.reason == "unsubscribe")
    click.echo(
        f"{_count(len(subs), 'subscriber')}, {len(receiving)} receive the next send, "
        f"{unsubscribed} unsubscribed, {len(suppressed) - unsubscribed} suppressed "
        f"(bounces, complaints; {len(gone)} of all no longer in the list)"
    )


def _subscriber_line(row: Mapping[str, Any], width: int) -> str:
    topics = ", ".join(row["topics"]) or "(all topics)"
    mine = row.get("own_choices")
    extra = ""
    if mine:
        parts = []
        if mine["topics"] is not None:
            parts.append("topics: " + (", ".join(mine["topics"]) or "(all)"))
        if mine["summary"]:
            parts.append(f"summary: {mine['summary']}")
        extra = f"  [own choice: {'; '.join(parts)}]" if parts else ""
    return f"{row['email']:<{width}}  {row['state']:<23}  {row['summary']:<8}  {topics}{extra}"


@subscribers_group.command("add")
@click.argument("email")
@_entry_options
@click.option("--inactive", is_flag=True, help="Add the entry paused (active: false).")
@_with_env
def add_cmd(env: _Env, /, email: str, inactive: bool, **options: Any) -> None:
    """Add EMAIL to the list (comments and formatting of the file are kept)."""
    fields: dict[str, Any] = {"email": email, **_fields(**options)}
    if inactive:
        fields["active"] = False
    fields["added"] = dt.date.today()
    known = env.topics()
    with env.roster().edit(known) as doc:
        taken = {email_key(e) for e in doc.emails()}
        sub, reasons = roster.check_entry(fields, known_topics=known, taken=taken)
        if sub is None:
            raise _refuse(email, reasons)
        fields["email"] = sub.email
        doc.add(fields)
    with env.prefs() as store:
        suppressed = store.is_suppressed(sub.email)
    note = (
        " (note: they unsubscribed earlier; 'set --resubscribe' lifts that)" if suppressed else ""
    )
    click.echo(f"added {sub.email}{note}")


@subscribers_group.command("remove")
@click.argument("email")
@_with_env
def remove_cmd(env: _Env, email: str) -> None:
    """Remove EMAIL from the list."""
    with env.roster().edit(env.topics(), create=False) as doc:
        if not doc.remove(email):
            raise SubscribersError(f"{email} is not in {env.path}")
    click.echo(f"removed {email}")


@subscribers_group.command("set")
@click.argument("email")
@_entry_options
@click.option("--active/--inactive", default=None, help="Send to this entry, or pause it.")
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice(CLEARABLE_FIELDS),
    help="Remove a field from the entry (repeatable).",
)
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Lift the reader's unsubscribe (only with their consent).",
)
@_with_env
def set_cmd(
    env: _Env,
    /,
    email: str,
    active: bool | None,
    clear: Sequence[str],
    resubscribe: bool,
    **options: Any,
) -> None:
    """Change fields of EMAIL's entry."""
    changes: dict[str, Any] = _fields(**options)
    if active is not None:
        changes["active"] = active
    for field in clear:
        changes[field] = None
    if changes:
        known = env.topics()
        with env.roster().edit(known, create=False) as doc:
            index = doc.find(email)
            if index is None:
                raise SubscribersError(f"{email} is not in {env.path}")
            current = doc.current(email)
            merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
            sub, reasons = roster.check_entry(merged, known_topics=known)
            if sub is None:
                raise _refuse(email, reasons)
            doc.update(email, changes)
        click.echo(f"updated {email}: {', '.join(sorted(changes))}")
    if resubscribe:
        with env.prefs() as store:
            held = store.suppression(email)
            if held is not None and held.reason in LOCKED_REASONS:
                raise NewsletterError(
                    f"{email} reported the digest as spam: only "
                    f"'newsletter suppressions remove --force {email}' lifts that"
                )
            lifted = store.unsuppress(email, source="admin")
        click.echo(f"{email}: unsubscribe lifted" if lifted else f"{email}: was not unsubscribed")
    if not changes and not resubscribe:
        raise click.UsageError("nothing to change: give an option such as --name or --clear")


def _csv_value(field: str, raw: str) -> Any:
    text = raw.strip()
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        text = text[1:]  # a cell neutralised by export
    if field in ("topics", "keywords", "authors"):
        return [part.strip() for part in text.split(LIST_SEPARATOR) if part.strip()]
    if field == "max_papers":
        try:
            return int(text)
        except ValueError:
            return text
    if field == "active":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return text
    if field == "added":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return text
    return text


def _header_map(headers: Sequence[str]) -> tuple[dict[int, str], list[str]]:
    mapping: dict[int, str] = {}
    ignored: list[str] = []
    for index, header in enumerate(headers):
        norm = header.strip().lower().replace(" ", "_").replace("-", "_")
        field = norm if norm in roster.FIELDS else HEADER_ALIASES.get(norm)
        if field is None or field in mapping.values():
            ignored.append(header)
        else:
            mapping[index] = field
    return mapping, ignored


def _csv_rows(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line``, fields) of each non-empty row of a CSV file with a header row."""
    try:
        with open(name, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()  # all of it first: a decoding error comes before any edit
    except UnicodeDecodeError as exc:
        raise SubscribersError(f"{name}: not UTF-8 text ({exc.reason})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        headers = next(reader)
    except StopIteration:
        raise SubscribersError(f"{name}: empty CSV file") from None
    mapping, ignored = _header_map(headers)
    if "email" not in mapping.values():
        raise SubscribersError(f"{name}: no email column (headers: {', '.join(headers)})")
    if ignored:
        click.echo(f"ignored columns: {', '.join(ignored)}", err=True)
    for row in reader:
        if any(cell.strip() for cell in row):
            yield (
                f"{name}:{reader.line_num}",
                {
                    field: _csv_value(field, row[i])
                    for i, field in mapping.items()
                    if i < len(row) and row[i].strip()
                },
            )


def _yaml_rows(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line``, fields) of each entry of a subscribers YAML file."""
    entries, problems = roster.read_entries(roster.read_text(name), name)
    if problems:
        raise SubscribersError(f"{name}: cannot be imported", problems)
    for line, fields in entries:
        yield f"{name}:{line}", {str(k): v for k, v, _n in fields or ()}


@subscribers_group.command("import")
@click.argument("list_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the rows and report, change nothing.")
@_with_env
def import_cmd(env: _Env, list_file: str, dry_run: bool) -> None:
    """Add the entries of LIST_FILE to the list: a CSV file (columns mapped by header;
    lists separated by ';') or a subscribers YAML file (.yaml/.yml), which moves a list
    into the state database (``--subscribers state``) or back into a file.

    Rows that are invalid, already in the list or repeated are refused and reported,
    and the exit code is then 2 (the other rows are added).
    """
    yaml_file = list_file.lower().endswith((".yaml", ".yml"))
    rows = list(_yaml_rows(list_file) if yaml_file else _csv_rows(list_file))
    known = env.topics()
    today = dt.date.today()
    refused: list[str] = []
    accepted: list[dict[str, Any]] = []
    with env.roster().edit(known) as doc:
        taken = {email_key(e) for e in doc.emails()}
        for where, fields in rows:
            fields.setdefault("added", today)
            sub, reasons = roster.check_entry(fields, known_topics=known, taken=taken)
            if sub is None:
                why = "; ".join(f"{f}: {r}" for f, r in reasons)
                refused.append(f"{where}: {fields.get('email', '(no address)')}: {why}")
                continue
            fields["email"] = sub.email
            taken.add(email_key(sub.email))
            accepted.append(fields)
        if not dry_run:
            for fields in accepted:
                doc.add(fields)
    verb = "would add" if dry_run else "added"
    click.echo(
        f"{verb} {_count(len(accepted), 'subscriber')}, refused {_count(len(refused), 'row')}"
    )
    if refused:  # the accepted rows are saved; the exit code tells a script some were not
        raise SubscribersError(f"{list_file}: {_count(len(refused), 'row')} refused", refused)


def _export_rows(subs: Sequence[Subscriber]) -> list[dict[str, Any]]:
    rows = []
    for sub in subs:
        rows.append(
            {
                "email": sub.email,
                "name": sub.name,
                "topics": list(sub.topics),
                "keywords": list(sub.keywords),
                "authors": list(sub.authors),
                "max_papers": sub.max_papers,
                "summary": sub.summary,
                "timezone": sub.timezone,
                "active": sub.active,
                "added": sub.added.isoformat() if sub.added else None,
            }
        )
    return rows


@subscribers_group.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "yaml"]),
    default="csv",
    show_default=True,
    help="CSV (a cell a spreadsheet would run as a formula gets a leading '), JSON, or a "
    "subscribers YAML file (to move a list out of the state database).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout."
)
@_with_env
def export_cmd(env: _Env, fmt: str, output: str | None) -> None:
    """Write the list as CSV (lists joined with ';', same columns import reads), JSON or
    YAML. A file written with -o is created 0600, like every file holding addresses."""
    rows = _export_rows(env.roster().load(env.topics()))
    buffer = io.StringIO()
    if fmt == "json":
        json.dump(rows, buffer, ensure_ascii=False, indent=2)
        buffer.write("\n")
    elif fmt == "yaml":
        buffer.write(render_list(rows))
    else:
        writer = csv.DictWriter(buffer, fieldnames=list(roster.FIELDS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(v) for k, v in row.items()})
    if output:
        atomic_write(output, buffer.getvalue().encode("utf-8"), group=env.settings.file_group)
        click.echo(f"wrote {_count(len(rows), 'subscriber')} to {output}", err=True)
    else:
        click.echo(buffer.getvalue(), nl=False)


def register(group: click.Group) -> None:
    """Add ``newsletter subscribers`` to the main command."""
    group.add_command(subscribers_group)
