"""The click commands, one module per command (or per family: ``run``/``exec``/``rerun``).

Each command is a thin adaptor: it parses options, calls the library (``journal``,
``projections``, :mod:`runjournal.cli.engine`) and renders with :mod:`runjournal.cli.rendering`.
"""
