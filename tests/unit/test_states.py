"""Typed states end to end: the refusal wording each state's table gives, the enum columns (a
non-member is refused by Python and by the database), and the 0002 upgrade of a database that
holds rows from 0001 (on SQLite, or on FERRY_TEST_DATABASE_URL with `-m db`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, Enum, MetaData, inspect, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from ferry.db.engine import make_engine, upgrade
from ferry.db.models import Attachment, Base, Image, RoleAssignment, Server, Snapshot, Volume
from ferry.domain.errors import Conflict
from ferry.domain.model import DiskFormat
from ferry.domain.roles import Role, with_implied
from ferry.domain.servers import TASK_VERB, ServerStatus, ServerTaskState, refusal
from ferry.domain.volumes import (
    DELETABLE,
    VOLUME_ACTION,
    AttachmentStatus,
    MigrationStatus,
    SnapshotStatus,
    VolumeStatus,
)
from ferry.services.volumes import set_status
from testkit.server import reset_database

# -- messages from tables --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "wording"),
    [
        (ServerTaskState.SPAWNING, "Cannot spawn server s1 while it is ACTIVE (deleting)."),
        (ServerTaskState.POWERING_OFF, "Cannot power off server s1 while it is ACTIVE (deleting)."),
        (ServerTaskState.POWERING_ON, "Cannot power on server s1 while it is ACTIVE (deleting)."),
        (ServerTaskState.REBOOTING, "Cannot reboot server s1 while it is ACTIVE (deleting)."),
        (ServerTaskState.DELETING, "Cannot delete server s1 while it is ACTIVE (deleting)."),
    ],
)
def test_a_refused_server_task_names_the_action(task: ServerTaskState, wording: str) -> None:
    assert refusal(task, "s1", ServerStatus.ACTIVE, ServerTaskState.DELETING) == wording


def test_a_refusal_of_an_idle_server_names_only_its_status() -> None:
    assert refusal(ServerTaskState.POWERING_ON, "s1", ServerStatus.ACTIVE, None) == (
        "Cannot power on server s1 while it is ACTIVE."
    )


def test_every_task_state_has_a_verb() -> None:
    assert set(TASK_VERB) == set(ServerTaskState)


def test_every_transitional_volume_status_names_its_action() -> None:
    assert VOLUME_ACTION == {
        VolumeStatus.ATTACHING: "attach",
        VolumeStatus.DETACHING: "detach",
        VolumeStatus.EXTENDING: "extend",
        VolumeStatus.DELETING: "delete",
    }


def test_roles_imply_the_weaker_ones() -> None:
    assert with_implied({Role.ADMIN}) == {Role.ADMIN, Role.MEMBER, Role.READER}
    assert with_implied({Role.SERVICE}) == {Role.SERVICE}


def test_states_read_as_the_strings_the_api_always_showed() -> None:
    assert f"{VolumeStatus.ERROR_EXTENDING}" == "error_extending"
    assert SnapshotStatus.ERROR_DELETING == "error_deleting"
    assert ServerTaskState.POWERING_OFF == "powering-off"


# -- the database --------------------------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = os.environ.get("FERRY_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'ferry.db'}"
    reset_database(url)
    yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


NOW = datetime(2026, 1, 2, 3, 4, 5)
STAMPS = {"created_at": NOW, "updated_at": NOW}
OWNER = {"project_id": "p1", "user_id": "u1"}
VOLUME = {**OWNER, **STAMPS, "size_gib": 1, "backend": "fast", "metadata": {}, "next_layer_position": 1}
ROWS_0001: list[tuple[str, dict[str, object]]] = [
    ("projects", {"id": "p1", "name": "demo", "domain_id": "default"}),
    ("users", {"id": "u1", "name": "demo", "password_hash": "x", "domain_id": "default", "enabled": True}),
    ("role_assignments", {**OWNER, "role": "member"}),
    (
        "images",
        {"id": "i1", "name": "img", "cmdline": "", "disk": "/d", "disk_format": "raw", "created_at": NOW},
    ),
    ("flavors", {"id": "1", "name": "tiny", "vcpus": 1, "ram_mb": 256, "disk_gib": 0}),
    (
        "servers",
        {**OWNER, **STAMPS, "id": "s1", "name": "vm", "status": "ACTIVE", "task_state": "powering-off"}
        | {"image_id": "i1", "flavor_id": "1"},
    ),
    (
        "volumes",
        {**VOLUME, "id": "v1", "status": "error_extending", "migration_status": "error"}
        | {"name_id": "n1", "active_layer_id": "l1"},
    ),
    ("volumes", {**VOLUME, "id": "v2", "status": "in-use", "name_id": "n2", "active_layer_id": "l2"}),
    (
        "snapshots",
        {**OWNER, **STAMPS, "id": "sn1", "volume_id": "v1", "layer_id": "l0", "position": 1, "size_gib": 1}
        | {"status": "error_deleting", "metadata": {}},
    ),
    (
        "attachments",
        {"id": "a1", "volume_id": "v2", "server_id": "s1", "project_id": "p1", "device": "/dev/vdb"}
        | {"status": "attached", "created_at": NOW},
    ),
]
"""One row of each state column, as Ferry before 0002 stored them (plain strings)."""


def store_0001_rows(engine: Engine, rows: list[tuple[str, dict[str, object]]]) -> None:
    """Insert through the tables as the database has them (reflected), not through the models."""
    tables = MetaData()
    tables.reflect(engine)
    with engine.begin() as c:
        for name, values in rows:
            c.execute(tables.tables[name].insert().values(**values))


@pytest.mark.db
def test_upgrade_keeps_rows_from_0001_and_reads_them_back_as_members(
    database_url: str, engine: Engine
) -> None:
    upgrade(database_url, "0001")
    store_0001_rows(engine, ROWS_0001)
    upgrade(database_url)
    with Session(engine) as s:
        v1, v2 = s.get(Volume, "v1"), s.get(Volume, "v2")
        assert v1 is not None and v2 is not None
        assert v1.status is VolumeStatus.ERROR_EXTENDING
        assert v1.migration_status is MigrationStatus.ERROR
        assert v2.status is VolumeStatus.IN_USE and v2.migration_status is None
        snap = s.get(Snapshot, "sn1")
        assert snap is not None and snap.status is SnapshotStatus.ERROR_DELETING
        server = s.get(Server, "s1")
        assert server is not None
        assert server.status is ServerStatus.ACTIVE and server.task_state is ServerTaskState.POWERING_OFF
        att = s.get(Attachment, "a1")
        assert att is not None and att.status is AttachmentStatus.ATTACHED and att.volume_id == "v2"
        image = s.get(Image, "i1")
        assert image is not None and image.disk_format is DiskFormat.RAW
        assert s.get(RoleAssignment, ("u1", "p1", Role.MEMBER)) is not None
    indexes = {i["name"] for i in inspect(engine).get_indexes("volumes")}
    assert {"ix_volumes_status", "ix_volumes_project_created"} <= indexes  # the rebuild kept them


ENUM_COLUMNS = [
    (table.name, column.name, column.type.enum_class)
    for table in Base.metadata.sorted_tables
    for column in table.columns
    if isinstance(column.type, Enum) and column.type.enum_class is not None
]


def test_every_state_column_is_typed() -> None:
    typed = {(t, c) for t, c, _ in ENUM_COLUMNS}
    assert {
        ("volumes", "status"),
        ("volumes", "migration_status"),
        ("snapshots", "status"),
        ("servers", "status"),
        ("servers", "task_state"),
        ("attachments", "status"),
        ("role_assignments", "role"),
        ("images", "disk_format"),
    } <= typed


@pytest.mark.db
def test_the_migrated_schema_allows_exactly_each_enums_members(database_url: str, engine: Engine) -> None:
    """A member added to an enum without a migration that widens its CHECK fails here."""
    upgrade(database_url)
    insp = inspect(engine)
    for table, column, enum in ENUM_COLUMNS:
        checks = {c["name"]: c["sqltext"] for c in insp.get_check_constraints(table)}
        allowed = re.findall(r"'([^']*)'", checks[f"ck_{table}_{column}"])
        assert sorted(allowed) == sorted(m.value for m in enum), (table, column)


@pytest.mark.db
def test_a_value_outside_the_enum_is_refused(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    store_0001_rows(engine, ROWS_0001[:7])  # up to volume v1
    with pytest.raises(StatementError, match="not among the defined enum values"), Session(engine) as s:
        s.execute(Volume.__table__.update().values(status="error_extendin"))
    # Around the ORM, the database's CHECK refuses it too.
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("UPDATE volumes SET status = 'error_extendin' WHERE id = 'v1'"))
    with Session(engine) as s:
        vol = s.get(Volume, "v1")
        assert vol is not None and vol.status is VolumeStatus.ERROR_EXTENDING


@pytest.mark.db
def test_a_refused_volume_change_names_the_action_and_the_state(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    store_0001_rows(engine, ROWS_0001[:8])  # up to volume v2, in-use
    with Session(engine) as s:
        with pytest.raises(Conflict) as refused:
            set_status(s, "v2", VolumeStatus.DELETING, expect=DELETABLE)
        assert refused.value.message == (
            "Cannot delete volume v2: it is status 'in-use'; expected available or error or error_deleting."
        )
        s.execute(update(Volume).where(Volume.id == "v2").values(migration_status=MigrationStatus.MIGRATING))
        with pytest.raises(Conflict) as refused:
            set_status(s, "v2", VolumeStatus.DETACHING, expect=(VolumeStatus.IN_USE,))
        assert refused.value.message == (
            "Cannot detach volume v2: it is being migrated (migration_status 'migrating'); expected in-use."
        )
