"""Every asynchronous failure leaves a user message the project can read (Cinder's messages), in
process on the fake hypervisor with real files: a create no backend takes, a create, extend,
snapshot or snapshot delete the driver fails, a migration that rolls back. And expiry: expired
messages are not shown, and are purged by one indexed statement."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from ferry.config import MessagesConfig
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.db.models import Message
from ferry.domain import messages as dmsg
from ferry.domain.clock import utcnow
from ferry.domain.errors import DriverError, NotFound
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services.app import Ferry
from ferry.services.context import RequestContext
from ferry.services.messages import MessageBook, MessageFilter, MessageService, Origin
from ferry.services.volume_create import VolumeCreate
from testkit.scenario import other_backend
from tests.unit.test_migration_service import ADMIN, attached_volume, make_ferry, until

CTX = RequestContext("u-admin", "p-admin", frozenset({"admin", "member", "reader"}), request_id="req-1")
OTHER = RequestContext("u-other", "p-other", frozenset({"member", "reader"}))


def run(fn: Callable[[Ferry], Awaitable[None]], tmp: Path) -> None:
    async def go() -> None:
        app = make_ferry(tmp, FakeHypervisorDriver())
        try:
            await fn(app)
        finally:
            await app.migrations.stop()

    asyncio.run(go())


def events(app: Ferry, resource: str) -> list[str]:
    return [
        m.event_id for m in app.messages.list_messages(ADMIN, MessageFilter()) if m.resource_uuid == resource
    ]


def fail(*_: Any, **__: Any) -> Any:
    raise DriverError("disk on fire")


def test_no_valid_backend_leaves_the_volume_in_error_with_a_message(tmp_path: Path) -> None:
    async def go(app: Ferry) -> None:
        app.types.create(CTX, "bogus", None, True, {"storage_protocol": "iSCSI", "vendor_name": "Acme"})
        vol = await app.volumes.create(CTX, VolumeCreate(size=1, volume_type="bogus"))
        assert (vol.status, vol.backend) == ("error", "")
        assert "vendor_name" in (vol.status_reason or "") or "storage_protocol" in (vol.status_reason or "")
        [msg] = app.messages.list_messages(CTX, MessageFilter())
        assert (msg.event_id, msg.resource_uuid, msg.project_id) == (
            "VOLUME_VOLUME_001_003",
            vol.id,
            "p-admin",
        )
        assert msg.request_id == "req-1" and msg.resource_type == "VOLUME"
        assert dmsg.user_message(msg.action_id, msg.detail_id) == (
            "schedule allocate volume:Could not find any available weighted backend."
        )
        assert msg.expires_at - msg.created_at == timedelta(days=30)  # Cinder's message_ttl
        # another project does not see it; an unplaced volume deletes (it has no files)
        assert app.messages.list_messages(OTHER, MessageFilter()) == []
        with pytest.raises(NotFound):
            app.messages.get(OTHER, msg.id)
        await app.volumes.delete(CTX, vol.id)

    run(go, tmp_path)


def test_driver_failures_leave_messages(tmp_path: Path) -> None:
    async def go(app: Ferry) -> None:
        vid = (await app.volumes.create(CTX, VolumeCreate(size=1))).id
        backend = app.volumes.get(CTX, vid).backend
        driver: Any = app.backends.drivers[backend]
        # extend: error_extending, and a message
        driver.extend = fail
        with pytest.raises(DriverError):
            await app.volumes.extend(CTX, vid, 2)
        assert app.volumes.get(CTX, vid).status == "error_extending"
        assert events(app, vid) == ["VOLUME_VOLUME_007_010"]
        # a snapshot that fails to be taken
        good = (await app.volumes.create(CTX, VolumeCreate(size=1, name="g"))).id
        gdriver: Any = app.backends.drivers[app.volumes.get(CTX, good).backend]
        real_snapshot = gdriver.snapshot
        gdriver.snapshot = fail
        with pytest.raises(DriverError):
            await app.snapshots.create(CTX, good, "s", None, {})
        [snap_msg] = [
            m
            for m in app.messages.list_messages(CTX, MessageFilter())
            if m.resource_type == "VOLUME_SNAPSHOT"
        ]
        assert snap_msg.event_id == "VOLUME_VOLUME_SNAPSHOT_009_013"
        # a snapshot whose delete (the merge) fails: error_deleting, and a message
        gdriver.snapshot = real_snapshot
        snap = await app.snapshots.create(CTX, good, "s2", None, {})
        gdriver.merge_layer = fail
        await app.snapshots.delete_now(CTX, snap.id)
        assert app.snapshots.get(CTX, snap.id).status == "error_deleting"
        assert events(app, snap.id) == ["VOLUME_VOLUME_SNAPSHOT_010_016"]
        # a create whose file the driver fails to write
        for d in app.backends.drivers.values():
            d.create_volume = fail  # type: ignore[method-assign]
        bad = await app.volumes.create(CTX, VolumeCreate(size=1, name="b"))
        assert bad.status == "error"
        assert events(app, bad.id) == ["VOLUME_VOLUME_008_012"]

    run(go, tmp_path)


def test_a_failed_migration_leaves_a_message(tmp_path: Path) -> None:
    async def go(app: Ferry) -> None:
        hv = app.hypervisor
        assert isinstance(hv, FakeHypervisorDriver)
        sid, vid = await attached_volume(app, tmp_path)
        mig = await app.migrations.migrate(ADMIN, vid, other_backend(app.volumes.get(ADMIN, vid).backend))
        job = await until("mirror", lambda: next(iter(hv.servers[sid].jobs), None))
        hv.conclude(sid, job, error="No space left on device")
        await app.migrations.wait(mig.id)
        assert app.migrations.report(ADMIN, vid).migration.status == "error"
        assert events(app, vid) == ["VOLUME_VOLUME_101_101"]
        [msg] = app.messages.list_messages(ADMIN, MessageFilter())
        assert msg.project_id == ADMIN.project_id
        assert "rolled back" in dmsg.user_message(msg.action_id, msg.detail_id)

    run(go, tmp_path)


def test_expired_messages_are_hidden_then_purged_by_an_indexed_delete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)  # the schema as migration 0009 makes it
    engine = make_engine(url)
    db = session_factory(engine)
    book = MessageBook(MessagesConfig(ttl_s=60, purge_every_s=3600))
    with db.begin() as s:
        book.leave(s, Origin("p1", "req-a"), dmsg.NO_VALID_BACKEND, "00000000-0000-4000-8000-000000000001")
        book.leave(s, Origin("p1", "req-b"), dmsg.EXTEND_FAILED, "00000000-0000-4000-8000-000000000002")
    with db.begin() as s:  # the first grows old
        s.execute(
            update(Message)
            .where(Message.request_id == "req-a")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    svc = MessageService(db)
    reader = RequestContext("u", "p1", frozenset({"reader"}))
    assert [m.request_id for m in svc.list_messages(reader, MessageFilter())] == ["req-b"]
    old = db().scalar(select(Message.id).where(Message.request_id == "req-a"))
    assert old is not None
    with pytest.raises(NotFound):
        svc.get(reader, old)
    # not purged yet: this book purged on its first message, less than purge_every_s ago
    with db.begin() as s:
        book.leave(s, Origin("p1", "req-c"), dmsg.EXTEND_FAILED, None)
    assert db().scalar(select(func.count()).select_from(Message)) == 3
    eager = MessageBook(MessagesConfig(ttl_s=60, purge_every_s=0))
    with db.begin() as s:
        eager.leave(s, Origin("p1", "req-d"), dmsg.EXTEND_FAILED, None)
    assert sorted(db().scalars(select(Message.request_id))) == ["req-b", "req-c", "req-d"]
    with db.begin() as s:
        s.execute(
            update(Message).where(Message.request_id == "req-b").values(expires_at=utcnow() - timedelta(1))
        )
    assert svc.purge_expired() == 1  # what the control plane does at start
    assert sorted(db().scalars(select(Message.request_id))) == ["req-c", "req-d"]
    engine.dispose()
