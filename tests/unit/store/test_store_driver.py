"""A PostgreSQL store without its driver says how to install it."""

from __future__ import annotations

import sys

import pytest

from rollwise.errors import ConfigError
from rollwise.store import create_store_engine, parse_store_url


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes ``import psycopg`` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    target = parse_store_url("postgresql://postgres@127.0.0.1:5432/test")
    with pytest.raises(ConfigError, match=r"pip install 'rollwise\[postgres\]'"):
        create_store_engine(target)
