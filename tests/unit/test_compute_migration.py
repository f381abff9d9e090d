"""Migration 0015 (key pairs, flavor admin fields and access, server fields): the migrated schema
matches the models, rows from before keep working (flavors public, servers without metadata), and
it downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from ferry.db.engine import MIGRATIONS, upgrade
from ferry.db.models import Base

TABLES = ("flavors", "flavor_projects", "key_pairs", "servers")


def test_the_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    engine.dispose()
    indexes = ("add_index", "remove_index")  # index reflection differs on SQLite for every table
    touching = [
        d
        for d in diff
        if any(t in repr(d) for t in TABLES) and not (isinstance(d, tuple) and d[0] in indexes)
    ]
    assert touching == [], "\n".join(map(repr, touching))


def test_a_flavor_from_before_is_public_with_no_extra_specs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0013")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO flavors (id, name, vcpus, ram_mb, disk_gib) VALUES ('9', 'old', 1, 64, 0)")
        )
    upgrade(url)
    with engine.connect() as c:
        row = c.execute(text("SELECT is_public, extra_specs, swap_mb, description FROM flavors")).one()
    engine.dispose()
    assert (bool(row[0]), row[1], row[2], row[3]) == (True, "{}", 0, None)


def test_it_downgrades_to_0013_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    upgrade(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.downgrade(cfg, "0013")
    engine = create_engine(url)
    with engine.connect() as c:
        tables = {r[0] for r in c.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
        columns = {r[1] for r in c.execute(text("PRAGMA table_info(servers)"))}
    assert "key_pairs" not in tables and "flavor_projects" not in tables and "tags" not in columns
    upgrade(url)
    with engine.connect() as c:
        assert "tags" in {r[1] for r in c.execute(text("PRAGMA table_info(servers)"))}
    engine.dispose()
