"""Store migrations: they build the schema the code expects, run safely in parallel,
go down and up again, and refuse a database migrated by a newer rollwise."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from rollwise.domain import ModelSpec, RegisteredVersion, Routing, VersionSource, VersionSpec
from rollwise.errors import StoreError
from rollwise.store import RolloutRow, open_store
from rollwise.store.engine import create_store_engine, parse_store_url
from rollwise.store.jsontext import spec_fingerprint
from rollwise.store.schema import VERSION_TABLE, metadata

MIGRATIONS_DIR = Path(__file__).parents[3] / "src" / "rollwise" / "store" / "migrations"
HEAD = "0003"

# Each process imports everything first, then starts migrating at the same instant.
MIGRATE_AT = """
import sys, time
from rollwise.errors import StoreError
from rollwise.store import open_store
store = open_store(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
store.migrate()
store.close()
"""


def revisions(url: str) -> list[str]:
    engine = create_store_engine(parse_store_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


def test_the_migrated_schema_matches_the_code(store_url: str) -> None:
    open_store(store_url).migrate()
    engine = create_store_engine(parse_store_url(store_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_processes_migrating_at_once_all_succeed(store_url: str) -> None:
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AT, store_url, str(start_at)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    failures = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]

    assert failures == []
    assert revisions(store_url) == [HEAD]


def test_downgrade_to_nothing_and_upgrade_again(store_url: str) -> None:
    store = open_store(store_url)
    store.migrate()
    engine = create_store_engine(parse_store_url(store_url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", "rollwise.store:migrations")
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert revisions(store_url) == []
        assert "events" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    store.migrate()
    assert store.state_version() == 0
    store.close()


def test_a_store_at_the_first_revision_upgrades_and_keeps_its_rows(store_url: str) -> None:
    engine = create_store_engine(parse_store_url(store_url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", "rollwise.store:migrations")
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            conn.execute(
                sa.text(
                    "INSERT INTO models (name, stable, task, created_at_s, updated_at_s) "
                    "VALUES ('iris', 'v1', 'classification', 1.0, 1.0)"
                )
            )
    finally:
        engine.dispose()
    assert revisions(store_url) == ["0001"]

    store = open_store(store_url)
    try:
        store.migrate()
        assert revisions(store_url) == [HEAD]
        started = store.start_rollout(
            RolloutRow("iris", "pending", {"candidate": "v2"}, {}, 2.0, 2.0), events=[]
        )
        assert store.latest_rollout("iris") == started
    finally:
        store.close()


def test_a_store_at_0002_upgrades_its_models_and_versions_with_defaults(store_url: str) -> None:
    engine = create_store_engine(parse_store_url(store_url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", "rollwise.store:migrations")
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
            for statement in (
                "INSERT INTO models (name, stable, sticky_key, task, created_at_s, updated_at_s) "
                "VALUES ('iris', 'v1', 'header:x-user-id', 'classification', 1.0, 2.0)",
                "INSERT INTO versions (model, name, backend, options, updated_at_s) "
                """VALUES ('iris', 'v1', 'sklearn', '{"path":"iris-v1.skops"}', 3.0)""",
                "INSERT INTO versions (model, name, backend, options, updated_at_s) "
                """VALUES ('iris', 'v2', 'onnx', '{"path":"iris-v2.onnx","threads":2}', 4.0)""",
                "INSERT INTO routing (model, stable, weights, mirrors, salt, updated_at_s) "
                """VALUES ('iris', 'v1', '{"v1":80,"v2":20}', '{}', 'iris', 2.0)""",
            ):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()

    store = open_store(store_url)
    try:
        store.migrate()
        assert revisions(store_url) == [HEAD]
        (iris,) = store.list_models()
        assert (iris.salt, iris.agreement_tolerance, iris.source) == (
            "",
            1e-6,
            VersionSource.CONFIG,
        )
        assert str(iris.sticky_key) == "header:x-user-id"
        v2_options = {"path": "iris-v2.onnx", "threads": 2}
        assert store.list_versions() == [
            RegisteredVersion(
                model="iris",
                spec=VersionSpec("v1", "sklearn", {"path": "iris-v1.skops"}),
                # Every version so far came from a config: it asked for what it loads.
                requested={"path": "iris-v1.skops"},
                registered_at_s=3.0,
            ),
            RegisteredVersion(
                model="iris",
                spec=VersionSpec("v2", "onnx", v2_options),
                requested=v2_options,
                registered_at_s=4.0,
            ),
        ]
        assert store.list_replicas() == [] and store.list_replica_versions() == []
        assert store.get_routing("iris") == Routing("iris", "v1", {"v1": 80, "v2": 20}, {}, "iris")

        # The first sync after the upgrade fingerprints the versions and keeps routing.
        spec = ModelSpec(
            name="iris",
            stable="v1",
            versions={
                "v1": VersionSpec("v1", "sklearn", {"path": "iris-v1.skops"}),
                "v2": VersionSpec("v2", "onnx", v2_options),
            },
        )
        assert store.sync_models([spec], now_s=10.0) == []
        assert [v.spec_sha256 for v in store.list_versions()] == [
            spec_fingerprint("sklearn", {"path": "iris-v1.skops"}),
            spec_fingerprint("onnx", v2_options),
        ]
        assert store.get_routing("iris") == Routing("iris", "v1", {"v1": 80, "v2": 20}, {}, "iris")
    finally:
        store.close()


def test_a_database_from_a_newer_rollwise_is_refused(store_url: str) -> None:
    store = open_store(store_url)
    store.migrate()
    engine = create_store_engine(parse_store_url(store_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        engine.dispose()

    with pytest.raises(StoreError, match=r"9999.*newer than this rollwise"):
        store.migrate()
    store.close()


def test_the_alembic_command_line_migrates_with_the_shipped_ini(tmp_path: Path) -> None:
    """The developer workflow: ``alembic -c .../alembic.ini -x url=... upgrade head``."""
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(MIGRATIONS_DIR / "alembic.ini"),
            "-x",
            f"url={url}",
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert revisions(url) == [HEAD]
