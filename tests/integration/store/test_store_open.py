"""Opening a store: URL forms, clear errors, and how SQLite connections are set up."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from rollwise.domain import Event, ModelSpec, Role, Routing, VersionSpec
from rollwise.errors import ConfigError, StoreError
from rollwise.store import FeedbackRecord, PredictionRecord, open_store
from rollwise.store.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_store_engine,
    parse_store_url,
)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url", "not a database URL"),
        ("mysql://root@localhost/rollwise", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "psycopg2"),
        ("sqlite+aiosqlite:///x.db", "aiosqlite"),
        ("sqlite:///", "no file path"),
        ("sqlite://somehost/x.db", "names a host"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_it(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        open_store(url)
    assert url in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgres://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ],
)
def test_postgresql_urls_use_psycopg_3(url: str) -> None:
    parsed = parse_store_url(url)
    assert parsed.sa_url.drivername == "postgresql+psycopg"
    assert parsed.display == "postgresql://postgres@127.0.0.1:5432/test"


def test_an_unreachable_postgresql_is_a_store_error_without_the_password() -> None:
    # Nothing listens on port 1.
    with pytest.raises(StoreError, match="cannot connect to the store") as caught:
        open_store("postgresql://postgres:s3cret@127.0.0.1:1/test")
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


@pytest.mark.postgres
def test_the_store_url_masks_the_password(postgres_url: str) -> None:
    # Trust authentication ignores the password, which must never be shown.
    url = sa.make_url(postgres_url).set(password="s3cret").render_as_string(hide_password=False)
    store = open_store(url)
    try:
        assert "s3cret" not in store.url
        assert store.url.startswith("postgresql://postgres:***@")
    finally:
        store.close()


def test_a_sqlite_file_in_a_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(StoreError, match="does the folder") as caught:
        open_store(f"sqlite:///{missing / 'rollwise.db'}")
    assert str(missing) in str(caught.value)


def test_a_relative_sqlite_path_is_fixed_against_the_directory_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data/rollwise.db")
    try:
        monkeypatch.chdir(tmp_path / "data")
        store.migrate()
        assert store.url == f"sqlite:///{tmp_path / 'data' / 'rollwise.db'}"
    finally:
        store.close()
    assert (tmp_path / "data" / "rollwise.db").is_file()
    assert not (tmp_path / "data" / "data").exists()


def test_sqlite_connections_use_wal_normal_sync_busy_timeout_and_foreign_keys(
    tmp_path: Path,
) -> None:
    engine = create_store_engine(parse_store_url(f"sqlite:///{tmp_path / 'rollwise.db'}"))
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        "foreign_keys": 1,
    }


def test_json_is_stored_compact_with_sorted_keys(tmp_path: Path) -> None:
    path = tmp_path / "rollwise.db"
    store = open_store(f"sqlite:///{path}")
    store.migrate()
    store.add_event(Event(model="iris", kind="note", message="m", data={"b": 1, "a": [1, 2]}))
    store.close()

    with sqlite3.connect(path) as raw:
        (text,) = raw.execute("SELECT data FROM events").fetchone()
    assert text == '{"a":[1,2],"b":1}'


def test_an_in_memory_store_works_across_threads() -> None:
    store = open_store("sqlite://")
    try:
        store.migrate()
        spec = ModelSpec(name="iris", stable="v1", versions={"v1": VersionSpec("v1", "fake")})
        store.sync_models([spec], now_s=1.0)

        def work(i: int) -> bool:
            store.log_predictions(
                [PredictionRecord(f"r{i}", "iris", "v1", Role.SERVED, [i], float(i))]
            )
            store.set_routing(
                Routing("iris", "v1", {"v1": 100}),
                Event(model="iris", kind="routing.changed", message=str(i)),
            )
            return store.record_feedback(FeedbackRecord(f"r{i}", "iris", i, float(i)))

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(64)))
        assert store.state_version() == 65
        assert store.url == "sqlite://"
    finally:
        store.close()


def test_opening_does_not_create_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "rollwise.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
