"""``runjournal upgrade-db``: bring a database made by an older runjournal to this version's schema."""

from __future__ import annotations

import click

from runjournal.cli.target import Target


@click.command("upgrade-db")
@click.pass_obj
def upgrade_db(target: Target) -> None:
    """Upgrade the --store database, made by an older runjournal, to this version's schema, in place.

    One transaction: every line is copied as it is (hash chains untouched), each run gets
    its summary row and anchor, events move into month partitions; on any error nothing
    changes. Refused while writers of the old version are connected. A journal directory
    needs no upgrade.

    \b
    Examples:
      runjournal --store postgresql://ci-db/runs upgrade-db
    """
    from runjournal.journal.stores import upgrade_store

    click.echo(upgrade_store(target.store if target.store else str(target.root)))
