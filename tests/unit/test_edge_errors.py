"""The last word on failures, in process: a 500 names a request id and never the exception's text
(the log has both), and the type-delete race of issue #10 (a volume of the type created while
the type is deleted) is a clean refusal, not an IntegrityError."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import event, insert
from sqlalchemy.exc import IntegrityError

from ferry.api import errors
from ferry.api.edge import Edge
from ferry.api.errors import json_body
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.db.models import Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, DriverError
from ferry.domain.roles import Role
from ferry.domain.volumes import VolumeStatus
from ferry.services.context import RequestContext
from ferry.services.storage import Backends
from ferry.services.types import TypeService

SECRET = "SELECT password FROM users WHERE name = 'admin'"


def toy_app(limit: int = 1024) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(Edge, max_body_bytes=limit)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(SECRET)

    @app.get("/driver")
    def driver() -> None:
        raise DriverError("qemu-img failed", OSError(SECRET))

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return await json_body(request)

    return app


@pytest.mark.parametrize("path", ["/boom", "/driver"])
def test_a_500_names_the_request_id_not_the_exception(path: str, caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(toy_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR):
        resp = client.get(path)
    assert resp.status_code == 500
    rid = resp.headers["x-openstack-request-id"]
    message = resp.json()["computeFault"]["message"]
    assert rid in message and SECRET not in resp.text and "RuntimeError" not in resp.text
    logged = [r for r in caplog.records if rid in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback, under the request id
    assert client.get("/nothing").status_code == 404  # and the app goes on answering


def test_a_body_over_the_limit_is_413_declared_or_streamed() -> None:
    client = TestClient(toy_app(limit=1024))
    assert client.post("/echo", json={"a": "x" * 900}).status_code == 200
    assert client.post("/echo", json={"a": "x" * 2000}).status_code == 413

    def stream() -> Any:
        yield b'{"a": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    resp = client.post("/echo", content=stream())  # no Content-Length: counted as it arrives
    assert resp.status_code == 413 and "overLimit" in resp.json()
    assert client.post("/echo", content=b"{}", headers={"Content-Length": "x"}).status_code == 400


# -- the type-delete race ------------------------------------------------------------------------
ADMIN = RequestContext("admin", "p", frozenset({Role.ADMIN}))


@pytest.fixture
def types(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine, TypeService(session_factory(engine), cast(Backends, None))
    engine.dispose()


def volume_of(type_id: str) -> dict[str, Any]:
    now = utcnow()
    return dict(
        id="v" * 32,
        project_id="p",
        user_id="u",
        size_gib=1,
        status=VolumeStatus.CREATING,
        volume_type_id=type_id,
        backend="fast",
        name_id="n" * 32,
        active_layer_id="l" * 32,
        meta={},
        next_layer_position=1,
        created_at=now,
        updated_at=now,
    )


def on_type_delete(engine: Any, action: Any) -> None:
    """Run `action` once, just before the type's DELETE statement reaches the database."""
    done: list[bool] = []

    @event.listens_for(engine, "before_cursor_execute")
    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM volume_types") and not done:
            done.append(True)
            action()


def test_a_volume_created_during_the_type_delete_refuses_it_cleanly(types: Any) -> None:
    """The check that no volume has the type used to be a SELECT before the DELETE: a volume created
    in between made the DELETE fail on the foreign key (IntegrityError, a 500)."""
    engine, service = types
    vt = service.create(ADMIN, "racy", None, True, {})

    def create_volume() -> None:
        with engine.begin() as c:  # another connection: a request creating a volume meanwhile
            c.execute(insert(Volume).values(volume_of(vt.id)))

    on_type_delete(engine, create_volume)
    with pytest.raises(BadRequest, match="in use"):
        service.delete(ADMIN, vt.id)
    assert service.get(ADMIN, vt.id).id == vt.id


def test_a_foreign_key_refusal_of_the_type_delete_is_a_conflict(types: Any) -> None:
    """On PostgreSQL the insert can commit while the DELETE waits on the row: its foreign key
    check then refuses the DELETE."""
    engine, service = types
    vt = service.create(ADMIN, "racy", None, True, {})

    def refuse() -> None:
        raise IntegrityError("DELETE FROM volume_types", {}, Exception("violates foreign key constraint"))

    on_type_delete(engine, refuse)
    with pytest.raises(Conflict, match="try again"):
        service.delete(ADMIN, vt.id)
    service.delete(ADMIN, vt.id)  # with nothing in the way, it goes
