"""Shared fixtures and the Hypothesis profiles.

Profiles: ``ci`` (default: modest example counts, no deadline, since CI machines stall),
``dev`` (fewer examples, for quick edits) and ``full`` (many examples, for a thorough run).
Choose one with ``RUNJOURNAL_HYPOTHESIS_PROFILE=full pytest``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, settings

PROFILE_ENV = "RUNJOURNAL_HYPOTHESIS_PROFILE"
TEST_PG_ENV = "RUNJOURNAL_TEST_PG"
"""Names the URL of a PostgreSQL server to test against (as ``.ci/run`` sets it); unset, the tests start their own."""
TEST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

settings.register_profile("ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("full", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """An empty journal root (mode 0700) for one test, under pytest's ``tmp_path``."""
    root = tmp_path / "journal"
    root.mkdir(mode=0o700)
    return root


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server for the whole session: ``$RUNJOURNAL_TEST_PG``, else a throw-away cluster.

    A server that cannot be started fails the tests that need it; it never skips them.
    """
    if os.environ.get(TEST_PG_ENV):
        yield os.environ[TEST_PG_ENV]
        return
    from pgcluster import ThrowawayCluster  # tests/ is on sys.path, as for run_helpers

    base_dir = Path(tempfile.mkdtemp(prefix="rj-pg-"))
    cluster = ThrowawayCluster(base_dir, settings=TEST_PG_SETTINGS)
    try:
        url = cluster.start()
    except RuntimeError as exc:
        shutil.rmtree(base_dir, ignore_errors=True)
        pytest.fail(f"could not start a throw-away PostgreSQL (set {TEST_PG_ENV} to use another server): {exc}")
    try:
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def make_pg_database(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """A function that creates a fresh, empty database on ``pg_server_url`` and returns its URL.

    Every database it made is dropped after the test, even if a connection to it is still open.
    """
    import psycopg  # here, so that tests without PostgreSQL do not need psycopg installed

    names: list[str] = []

    def make() -> str:
        name = f"rj_test_{uuid.uuid4().hex}"
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return urlsplit(pg_server_url)._replace(path=f"/{name}").geturl()

    try:
        yield make
    finally:
        if names:
            with psycopg.connect(pg_server_url, autocommit=True) as conn:
                for name in names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(make_pg_database: Callable[[], str]) -> str:
    """URL of a fresh, empty database on ``pg_server_url`` for one test; dropped afterwards."""
    return make_pg_database()
