"""``newsletter taxonomy``: show (and so validate) the topics digests are grouped by."""

from __future__ import annotations

import click

from newsletter.cli.options import config_option, count
from newsletter.config import load_settings
from newsletter.topics import load_taxonomy


@click.command("taxonomy")
@config_option
@click.option(
    "--file",
    "taxonomy_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A taxonomy YAML file to check and show, instead of the configured one.",
)
@click.option("--keywords", is_flag=True, help="List every topic's keywords too.")
def taxonomy_command(config_path: str | None, taxonomy_path: str | None, keywords: bool) -> None:
    """Check a topic taxonomy and list its topics.

    Without --file, shows the taxonomy the config names (digest.taxonomy), else the
    default shipped with the package. A broken file is reported as one line naming
    the file and the topic entry.
    """
    if taxonomy_path is None:
        taxonomy_path = load_settings(config_path).digest.taxonomy
    topics = load_taxonomy(taxonomy_path)
    source = taxonomy_path or "default taxonomy"
    click.echo(f"{source}: {count(len(topics), 'topic')}")
    for topic in topics:
        categories = f" [{', '.join(topic.categories)}]" if topic.categories else ""
        click.echo(f"- {topic.name} ({count(len(topic.keywords), 'keyword')}){categories}")
        if topic.description:
            click.echo(f"    {topic.description}")
        if keywords and topic.keywords:
            click.echo(f"    keywords: {', '.join(topic.keywords)}")


def register(group: click.Group) -> None:
    """Add the taxonomy command to the ``newsletter`` group."""
    group.add_command(taxonomy_command)
