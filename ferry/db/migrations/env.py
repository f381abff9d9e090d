"""Alembic environment: runs migrations against the URL set by `ferry.db.engine.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from ferry.db.engine import make_engine
from ferry.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
engine = make_engine(url) if url.startswith("sqlite") else None
if engine is None:
    from sqlalchemy import create_engine

    engine = create_engine(url, poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
