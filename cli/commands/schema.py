"""``runjournal schema``: the JSON Schema of a journal line."""

from __future__ import annotations

import click
import orjson

from runjournal.journal.events import event_json_schema


@click.command()
def schema() -> None:
    """Print the JSON Schema of one journal line (every event type).

    A runner in another language can validate what it writes against it; the hash chain
    and sequencing rules it cannot express are in docs/format.md.
    """
    click.echo(orjson.dumps(event_json_schema(), option=orjson.OPT_INDENT_2).decode())
