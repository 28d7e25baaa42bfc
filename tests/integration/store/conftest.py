"""Fixtures of the store tests: a fresh, migrated store per test on SQLite and PostgreSQL.

Each PostgreSQL test gets its own schema inside the session database (``postgres_url``
from ``tests/conftest.py``), named on the connection's search_path, so tests never see
each other's rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from rollwise.store import Store, open_store

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def schema_url(database_url: str, schema: str) -> str:
    """The URL of ``database_url`` with ``schema`` as the only schema on the search path."""
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def new_pg_schema(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Make empty schemas in the session database; each is dropped after the test."""
    database_url = request.getfixturevalue("postgres_url")
    conninfo = make_url(database_url).render_as_string(hide_password=False)
    made: list[str] = []

    def make() -> str:
        schema = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        made.append(schema)
        return schema_url(database_url, schema)

    def drop_all() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for schema in made:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

    request.addfinalizer(drop_all)
    return make


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rollwise.db'}"
    make: Callable[[], str] = request.getfixturevalue("new_pg_schema")
    return make()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on an empty database."""
    opened = open_store(store_url)
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()
