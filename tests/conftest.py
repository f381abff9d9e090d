"""Shared fixtures: a real `ferry serve` per test module, on SQLite or on FERRY_TEST_DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.config import load
from ferry.db.engine import make_engine, session_factory
from ferry.services.images import register_image
from testkit.server import Api, FerryServer, reset_database

ROOT = Path(__file__).resolve().parent.parent
GUEST_DIR = ROOT / "build" / "guest"


UNLIMITED_QUOTAS = (
    "[quotas]\nvolumes = -1\nsnapshots = -1\ngigabytes = -1\ninstances = -1\ncores = -1\nram = -1\n"
)
"""Tests of other features create more than Cinder's default 10 volumes in one project; the quota
tests (`test_api_quotas.py`) run with the defaults (`quotas=""`)."""


def make_server(tmp: Path, quotas: str = UNLIMITED_QUOTAS, **kw: object) -> FerryServer:
    url = os.environ.get("FERRY_TEST_DATABASE_URL")
    if url:
        reset_database(url)
    kw["extra_config"] = quotas + "\n" + str(kw.get("extra_config", ""))
    return FerryServer(tmp, database_url=url, **kw)  # type: ignore[arg-type]


def fake_hypervisor_server(tmp: Path) -> Iterator[FerryServer]:
    """A real `ferry serve` with the fake hypervisor (servers to attach to, no guests to boot), for
    a module's `server` fixture; it must have logged no problem when it stops."""
    srv = make_server(tmp)
    cfg = srv.config_path.read_text()
    srv.config_path.write_text(cfg.replace('driver = "qemu"', 'driver = "fake"', 1))
    srv.start()
    yield srv
    srv.shutdown()
    assert srv.log_problems() == []


def kernel_image(srv: FerryServer, tmp: Path, name: str) -> str:
    """The id of an image `name` whose kernel is a stand-in file (for the fake hypervisor)."""
    kernel = tmp / "vmlinuz"
    kernel.write_bytes(b"k")
    engine = make_engine(load(srv.config_path).database_url)
    try:
        return register_image(session_factory(engine), name, kernel=str(kernel)).id
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    srv = make_server(tmp_path_factory.mktemp("ferry"), extra_config="")
    srv.start()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def no_server_errors(server: FerryServer) -> Iterator[None]:
    """Use it module-wide (`pytest.mark.usefixtures`): the module's server logged no error."""
    yield
    assert server.log_problems() == []


@pytest.fixture(scope="module")
def admin(server: FerryServer) -> Api:
    """The admin's API caller on the module's server."""
    return server.api("ferry-admin")


@pytest.fixture(scope="module")
def demo(server: FerryServer) -> Api:
    """The demo member's API caller on the module's server."""
    return server.api("ferry-demo")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that talks to a real `ferry serve` is database-facing: `make test` runs those a
    second time against PostgreSQL (`-m db`)."""
    for item in items:
        if "server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
