"""Revision 0012 on a database from before it: registered images become public, active Glance
images with their formats and data file, names may be NULL (and several unnamed); the migrated
tables match the models."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from ferry.db.engine import upgrade


def test_registered_images_become_glance_images(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO images (id, name, kernel, initrd, cmdline, disk, disk_format, created_at) "
                "VALUES ('1', 'guest', '/k', '/i', '', NULL, NULL, '2026-01-01'),"
                "('2', 'disk', NULL, NULL, '', '/d.qcow2', 'qcow2', '2026-01-01')"
            )
        )
    upgrade(url)
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT name, status, visibility, declared_format, container_format, data"
                " FROM images ORDER BY name"
            )
        ).all()
        c.execute(
            text("INSERT INTO images (id, name, cmdline, created_at) VALUES ('3', NULL, '', '2026-01-01')")
        )
        c.execute(
            text("INSERT INTO images (id, name, cmdline, created_at) VALUES ('4', NULL, '', '2026-01-01')")
        )
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("disk", "active", "public", "qcow2", "bare", "/d.qcow2"),
        ("guest", "active", "public", "ami", "ami", "/i"),
    ]


def test_the_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ferry.db.models import Base

    url = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    engine.dispose()
    # Tables and columns (index reflection differs on SQLite for every table, not only these).
    indexes = ("add_index", "remove_index")
    touching = [d for d in diff if "image" in repr(d) and not (isinstance(d, tuple) and d[0] in indexes)]
    assert touching == [], "\n".join(map(repr, touching))
