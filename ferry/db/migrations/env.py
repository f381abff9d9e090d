"""Alembic environment: runs migrations against the URL set by `ferry.db.engine.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from ferry.db.engine import make_engine
from ferry.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
sqlite = url.startswith("sqlite")
engine = make_engine(url) if sqlite else None
if engine is None:
    from sqlalchemy import create_engine

    engine = create_engine(url, poolclass=pool.NullPool)

with engine.connect() as connection:
    if sqlite:
        # Batch mode rebuilds a table by copy, drop and rename; with foreign keys on, dropping a
        # table that other rows reference fails. The pragma only takes effect outside a
        # transaction, hence the commit; the check after an upgrade proves the rebuilds kept
        # every reference intact.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    before = context.get_context().get_current_heads() if sqlite else ()
    with context.begin_transaction():
        context.run_migrations()
    if sqlite and context.get_context().get_current_heads() != before:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.commit()
        if broken:
            raise RuntimeError(f"schema upgrade broke foreign keys: {broken}")
engine.dispose()
