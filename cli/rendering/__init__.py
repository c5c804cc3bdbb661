"""Turning runs, events and verdicts into text and JSON: output options, tables, sanitising, progress."""
