"""Projections: the status fold, liveness verdicts, reconciliation and read models.

Everything here is derived from journal events; nothing here is a source of truth.
"""
