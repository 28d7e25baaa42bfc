"""Shared fixtures: the PostgreSQL server that integration tests run against.

``postgres_url`` is a database created for this test session on the server at
``ROLLWISE_TEST_POSTGRES`` (default: trust auth as ``postgres`` on 127.0.0.1:5432,
database ``test``) and dropped at the end. When the server cannot be reached the tests
that need it are skipped, or fail when ``CI=true`` so that CI never passes without them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from sqlalchemy import make_url

# CI explores the same examples on every run, so a red build is reproducible; local runs
# keep drawing new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

POSTGRES_ADMIN_URL = os.environ.get(
    "ROLLWISE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL (``postgresql://...``) of an empty database that lives for this session."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        reason = f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {' '.join(str(exc).split())}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(f"{reason} (set CI=true to fail instead of skipping)")
    name = f"rollwise_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield (
                make_url(POSTGRES_ADMIN_URL)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """URL of an empty database of its own for one test (a fleet's tables start empty),
    dropped when the test ends; skipped or failed like ``postgres_url``."""
    name = f"rollwise_one_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
