"""Example workflow files shipped with runjournal (``runjournal example NAME`` prints one)."""
