"""End-to-end fixtures: the built test guest and a `ferry serve` that boots real QEMU guests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.guest import ensure_guest
from testkit.scenario import register_guest
from testkit.server import FerryServer
from tests.conftest import GUEST_DIR, make_server


@pytest.fixture(scope="session")
def guest_dir() -> Path:
    ensure_guest(GUEST_DIR)
    return GUEST_DIR


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    """A control plane with the test guest registered at two write rates."""
    data = tmp_path_factory.mktemp("ferry-e2e")
    flat = (
        f'\n[[backends]]\nname = "flat"\npath = "{data}/backends/flat"\nformat = "raw"\ncapacity_gib = 100\n'
    )
    srv = make_server(data, guest_dir=guest_dir, extra_config=flat)
    register_guest(srv, guest_dir, "guest-flat-out", rate=0, span_mb=16)
    srv.start()
    yield srv
    srv.shutdown()


@pytest.fixture(autouse=True)
def _no_idle_guests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test deletes its servers when it ends: under TCG every idle guest still costs CPU."""
    yield
    for name in ("cloud", "crashy", "faulty"):
        if name in request.fixturenames:
            srv: FerryServer = request.getfixturevalue(name)
            if srv.proc is not None and srv.proc.poll() is None:
                srv.delete_servers()
