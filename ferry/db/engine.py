"""Engine and session set-up, and schema upgrade through Alembic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    event.listen(engine, "connect", _postgres_json)
    return engine


def _postgres_json(dbapi_conn: Any, _record: Any) -> None:
    """Decode json columns with orjson (a volume page decodes 1000 metadata documents)."""
    import psycopg2.extras

    psycopg2.extras.register_default_json(dbapi_conn, loads=_loads)
    psycopg2.extras.register_default_jsonb(dbapi_conn, loads=_loads)


def _loads(text: str | bytes) -> Any:
    """orjson, and the standard decoder for what orjson refuses: a lone surrogate an older
    version stored (the views then render it replaced, `api.responses`)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(url: str, revision: str = "head", host_name: str | None = None) -> None:
    """Bring the schema to `revision`, the newest by default (idempotent). `host_name`: the host
    that servers created before hosts existed (revision 0004) ran on."""
    cfg = AlembicConfig()
    if host_name:
        cfg.set_main_option("ferry.host_name", host_name.replace("%", "%%"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)
