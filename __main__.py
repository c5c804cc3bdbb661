"""``python -m runjournal``: the same as the ``runjournal`` command."""

from runjournal.cli.main import main

main()
