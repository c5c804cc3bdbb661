"""The ``runjournal`` command line: thin click commands over ``journal`` and ``projections``."""
