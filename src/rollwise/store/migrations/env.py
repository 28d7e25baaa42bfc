"""Alembic environment of the store: runs the revisions in ``versions/``.

``rollwise.store`` runs it through ``Store.migrate()``, handing over a connection that
is already inside a locked transaction. A developer can also run it with the alembic
command line and the ``alembic.ini`` next to this file, naming the database with
``-x url=...`` or ``ROLLWISE_STORE_URL``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from rollwise.store.engine import create_store_engine, parse_store_url
from rollwise.store.schema import VERSION_TABLE, metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url_from_command_line() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "ROLLWISE_STORE_URL"
    )
    if not url:
        raise SystemExit("name the database: alembic -x url=sqlite:///rollwise.db ...")
    return url


def main() -> None:
    if context.is_offline_mode():
        context.configure(
            url=parse_store_url(_url_from_command_line()).sa_url,
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    # Only the alembic command line gets here; rollwise itself leaves logging alone.
    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    engine = create_store_engine(parse_store_url(_url_from_command_line()))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # As in Store.migrate(): rebuilding a parent table must not cascade.
                driver = conn.connection.driver_connection
                if driver is not None:
                    driver.execute("PRAGMA foreign_keys = OFF")
            with conn.begin():
                _run(conn)
    finally:
        engine.dispose()


main()
