"""Hosts (issue 11, items 3 and 4): liveness from heartbeats, where a new server goes, which backends
a host reaches — the domain's rules as tables, then the registry and the compute and migration
services on SQLite with an injected clock (no sleeps), and refusals that change nothing."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ferry import config as cfgmod
from ferry.config import HostsConfig
from ferry.db.engine import make_engine, upgrade
from ferry.db.models import Attachment, Host, Server
from ferry.domain.errors import BadRequest, Forbidden, NotFound
from ferry.domain.hosts import (
    HostLoad,
    HostState,
    Need,
    Placed,
    Refused,
    check_attach,
    check_migration,
    place,
    reaches,
    state_of,
)
from ferry.domain.model import BackendConfig
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services import bootstrap
from ferry.services.app import Ferry
from ferry.services.context import RequestContext
from ferry.services.hosts import HostRegistry, HostSpec
from ferry.services.images import register_image
from ferry.services.volume_create import VolumeCreate
from testkit.server import reset_database
from tests.unit.test_migration_service import ADMIN, run
from tests.unit.test_refusals import rows, server_row
from tests.unit.test_states import ROWS_0001, store_0001_rows

T0 = datetime(2026, 12, 1, 12, 0, 0)
MEMBER = RequestContext("u-demo", "p-admin", frozenset({"member", "reader"}))


# -- liveness ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age_s", "state"),
    [(0, "up"), (59.9, "up"), (60, "up"), (60.1, "down"), (3600, "down"), (None, "down")],
)
def test_a_host_is_down_once_silent_for_longer_than_service_down_time(
    age_s: float | None, state: str
) -> None:
    beat = None if age_s is None else T0 - timedelta(seconds=age_s)
    assert state_of(beat, T0, 60.0) == HostState(state)


# -- placement -----------------------------------------------------------------------------
def host(name: str, **kw: Any) -> HostLoad:
    values: dict[str, Any] = {"address": "127.0.0.2", "enabled": True, "disabled_reason": None}
    values |= {"state": HostState.UP, "vcpus": 4, "ram_mb": 4096}
    return HostLoad(name=name, **(values | kw))


FULL = host("full", vcpus_used=4)
LOW_RAM = host("low-ram", ram_mb_used=3900)
DISABLED = host("off", enabled=False, disabled_reason="maintenance")
DOWN = host("gone", state=HostState.DOWN)
ROOMY = host("roomy", ram_mb=8192)
TIGHT = host("tight", ram_mb=2048)
NEED = Need(2, 1024)


@pytest.mark.parametrize(
    ("hosts", "requested", "decision"),
    [
        ([FULL, TIGHT], None, Placed("tight")),  # full skipped
        ([DISABLED, TIGHT], None, Placed("tight")),  # disabled skipped
        ([DOWN, TIGHT], None, Placed("tight")),  # down skipped
        ([LOW_RAM, TIGHT], None, Placed("tight")),  # vCPUs free but not the RAM
        ([TIGHT, ROOMY], None, Placed("roomy")),  # the most free RAM
        ([host("b"), host("a")], None, Placed("b")),  # a tie: by name, deterministic
        ([TIGHT, ROOMY], "tight", Placed("tight")),  # an admin's pick is honoured
        ([TIGHT], "nowhere", Refused("Compute host nowhere could not be found.")),
        (
            [FULL],
            "full",
            Refused(
                "Host full cannot take the server: it has 0 vCPUs and 4096 MB of RAM "
                "free, the flavor needs 2 vCPUs and 1024 MB of RAM."
            ),
        ),
        ([DISABLED], "off", Refused("Host off cannot take the server: it is disabled (maintenance).")),
        (
            [DOWN],
            "gone",
            Refused("Host gone cannot take the server: it is down (no heartbeat within service_down_time)."),
        ),
        (
            [FULL, DISABLED, DOWN],
            None,
            Refused(
                "No valid host was found for 2 vCPUs and 1024 MB of RAM: "
                "of 3 hosts, 1 disabled, 1 down, 1 without that much free."
            ),
        ),
        (
            [],
            None,
            Refused("No valid host was found for 2 vCPUs and 1024 MB of RAM: no host has registered."),
        ),
    ],
)
def test_placement(hosts: list[HostLoad], requested: str | None, decision: object) -> None:
    assert place(hosts, NEED, requested) == decision


# -- reachability --------------------------------------------------------------------------
SHARED = BackendConfig("nfs", "/p")
LOCAL = BackendConfig("local", "/p", hosts=("h1", "h2"), shared=False)


@pytest.mark.parametrize(
    ("backend", "host_name", "reachable"),
    [(SHARED, "h1", True), (SHARED, "h9", True), (LOCAL, "h2", True), (LOCAL, "h3", False)],
)
def test_reachability(backend: BackendConfig, host_name: str, reachable: bool) -> None:
    assert reaches(backend, host_name) is reachable


def test_reachability_refusals_name_the_host_and_the_backend() -> None:
    with pytest.raises(BadRequest, match=r"backend 'local', which host 'h3' of server s1 cannot reach"):
        check_attach(LOCAL, "h3", "s1", "v1")
    with pytest.raises(BadRequest, match=r"server s1 on host 'h3', which cannot reach backend 'local'"):
        check_migration(LOCAL, "h3", "s1", "v1")
    check_attach(LOCAL, "h1", "s1", "v1")


# -- configuration -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "hosts", "shared"),
    [({}, (), True), ({"shared": True}, (), True), ({"hosts": ["h1", "h2"]}, ("h1", "h2"), False)],
)
def test_a_backend_says_where_it_is_reachable(
    entry: dict[str, Any], hosts: tuple[str, ...], shared: bool
) -> None:
    cfg = cfgmod.from_dict({"backends": [{"name": "b", "path": "p", **entry}]})
    assert (cfg.backends[0].hosts, cfg.backends[0].shared) == (hosts, shared)
    again = cfgmod.from_dict(tomllib.loads(cfgmod.dump(cfg)))
    assert (again.backends[0].hosts, again.backends[0].shared) == (hosts, shared)


@pytest.mark.parametrize(
    "entry",
    [{"shared": False}, {"hosts": ["h1"], "shared": True}, {"hosts": "h1"}, {"hosts": [""]}, {"hosts": [1]}],
)
def test_a_backend_reachable_from_nowhere_or_ambiguously_is_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="Backend b"):
        cfgmod.from_dict({"backends": [{"name": "b", "path": "p", **entry}]})


@pytest.mark.parametrize(
    "section",
    [{"service_down_time": 5, "heartbeat_interval": 10}, {"vcpus": 0}, {"ram_mb": -1}, {"bogus": 1}],
)
def test_bad_hosts_sections_are_refused(section: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match=r"\[hosts\]"):
        cfgmod.from_dict({"hosts": section})


def test_hosts_section_defaults_and_round_trip() -> None:
    cfg = cfgmod.from_dict({"hosts": {"vcpus": 8, "ram_mb": 2048, "service_down_time": 30}})
    assert (cfg.hosts.offered_vcpus(), cfg.hosts.offered_ram_mb()) == (8, 2048)
    assert cfgmod.from_dict(tomllib.loads(cfgmod.dump(cfg))).hosts == cfg.hosts
    assert cfgmod.from_dict({}).hosts == HostsConfig(service_down_time=60.0)


# -- the registry, on SQLite, with an injected clock ---------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_app(tmp: Path, backends: tuple[BackendConfig, ...] | None = None) -> tuple[Ferry, Clock]:
    cfg = cfgmod.default_config(tmp / "data")
    if backends is not None:
        cfg = replace(cfg, backends=backends)
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    bootstrap.setup_database(cfg, bootstrap.Credentials("a", "s", "d"))
    app = Ferry(cfg, hypervisor=FakeHypervisorDriver())
    clock = Clock()
    app.hosts.clock = clock
    return app, clock


def test_heartbeats_keep_a_host_up_and_silence_takes_it_down(tmp_path: Path) -> None:
    app, clock = make_app(tmp_path)
    hosts = HostRegistry(app.db, HostsConfig(), clock=clock)
    hosts.register(HostSpec("h1", "127.0.0.2", 4, 4096))
    assert hosts.get(ADMIN, "h1").state is HostState.UP
    for _ in range(10):  # an agent beating every 10 s stays up however long it runs
        clock.advance(10)
        hosts.heartbeat("h1")
        assert hosts.get(ADMIN, "h1").state is HostState.UP
    clock.advance(60)
    assert hosts.get(ADMIN, "h1").state is HostState.UP  # exactly service_down_time: still up
    clock.advance(1)
    assert hosts.get(ADMIN, "h1").state is HostState.DOWN
    hosts.heartbeat("h1")
    assert hosts.get(ADMIN, "h1").state is HostState.UP
    with pytest.raises(NotFound, match="has not registered"):
        hosts.heartbeat("h2")


def test_a_disable_survives_the_hosts_next_registration(tmp_path: Path) -> None:
    app, clock = make_app(tmp_path)
    hosts = app.hosts
    hosts.register(HostSpec("h1", "127.0.0.2", 4, 4096))
    hosts.disable(ADMIN, "h1", "disk swap")
    clock.advance(5)
    hosts.register(HostSpec("h1", "127.0.0.3", 8, 8192))  # the agent restarts, elsewhere, bigger
    h1 = hosts.get(ADMIN, "h1")
    assert (h1.enabled, h1.disabled_reason, h1.address, h1.vcpus, h1.started_at) == (
        False,
        "disk swap",
        "127.0.0.3",
        8,
        clock.now,
    )
    assert hosts.enable(ADMIN, "h1").enabled and hosts.get(ADMIN, "h1").disabled_reason is None


def test_only_admins_see_and_change_hosts(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    app.hosts.register(HostSpec("h1", "127.0.0.2", 4, 4096))
    for call in (
        lambda: app.hosts.list_hosts(MEMBER),
        lambda: app.hosts.get(MEMBER, "h1"),
        lambda: app.hosts.disable(MEMBER, "h1", "x"),
        lambda: app.hosts.enable(MEMBER, "h1"),
    ):
        with pytest.raises(Forbidden):
            call()
    assert app.hosts.get(ADMIN, "h1").enabled
    assert not app.hosts.sees_server_host(MEMBER) and app.hosts.sees_server_host(ADMIN)
    with pytest.raises(NotFound):
        app.hosts.disable(ADMIN, "nowhere", None)
    with pytest.raises(BadRequest, match="at most 255"):
        app.hosts.disable(ADMIN, "h1", "x" * 256)


# -- scheduling through the compute service ------------------------------------------------------
def image(app: Ferry, tmp: Path) -> str:
    kernel = tmp / "vmlinuz"
    kernel.write_bytes(b"k")
    return register_image(app.db, "img", kernel=str(kernel)).id


def only_hosts(app: Ferry, *specs: HostSpec) -> None:
    """These hosts, and the all-in-one's own taken out of scheduling."""
    assert app.hosts.local is not None
    app.hosts.register(app.hosts.local)
    app.hosts.disable(ADMIN, app.hosts.local.name, "not in this test")
    for spec in specs:
        app.hosts.register(spec)


def test_the_all_in_one_places_servers_on_its_own_host_unstarted(tmp_path: Path) -> None:
    async def go() -> None:
        app, _ = make_app(tmp_path)
        server = await app.compute.create(ADMIN, "s", image(app, tmp_path), "tiny")
        assert server.host == app.config.host_name == app.hosts.host_of_server(server.id)
        (h,) = app.hosts.list_hosts(ADMIN)
        assert (h.name, h.state, h.servers, h.vcpus_used, h.ram_mb_used) == ("ferry", "up", 1, 1, 256)

    run(go)


def test_scheduling_skips_full_disabled_and_down_hosts(tmp_path: Path) -> None:
    async def go() -> None:
        app, clock = make_app(tmp_path)
        img = image(app, tmp_path)
        only_hosts(app, HostSpec("a", "127.0.0.2", 2, 2048), HostSpec("b", "127.0.0.3", 1, 1024))
        assert (await app.compute.create(ADMIN, "s", img, "medium")).host == "a"  # b: 1 vCPU, not 2
        with pytest.raises(BadRequest, match=r"No valid host.*1 disabled, 0 down, 2 without"):
            await app.compute.create(ADMIN, "full", img, "medium")  # a is now full
        assert (await app.compute.create(ADMIN, "t", img, "tiny")).host == "b"
        app.hosts.register(HostSpec("c", "127.0.0.4", 8, 8192))
        app.hosts.disable(ADMIN, "c", "maintenance")
        with pytest.raises(BadRequest, match="No valid host"):
            await app.compute.create(ADMIN, "disabled", img, "medium")
        app.hosts.enable(ADMIN, "c")
        clock.advance(61)  # every agent silent
        app.hosts.heartbeat("a")
        with pytest.raises(BadRequest, match="2 down"):
            await app.compute.create(ADMIN, "down", img, "medium")
        app.hosts.heartbeat("c")
        assert (await app.compute.create(ADMIN, "back", img, "medium")).host == "c"
        assert len(app.compute.list_servers(ADMIN)) == 3  # refused creates left no row

    run(go)


def test_an_admin_may_pick_the_host_and_is_told_why_not(tmp_path: Path) -> None:
    async def go() -> None:
        app, _ = make_app(tmp_path)
        img = image(app, tmp_path)
        only_hosts(app, HostSpec("a", "127.0.0.2", 8, 8192), HostSpec("b", "127.0.0.3", 1, 256))
        assert (await app.compute.create(ADMIN, "s", img, "tiny", host="b")).host == "b"
        with pytest.raises(BadRequest, match="Host b cannot take the server: it has 0 vCPUs"):
            await app.compute.create(ADMIN, "s2", img, "tiny", host="b")
        with pytest.raises(BadRequest, match="Host ferry cannot take the server: it is disabled"):
            await app.compute.create(ADMIN, "s3", img, "tiny", host="ferry")
        with pytest.raises(BadRequest, match="Compute host nowhere could not be found"):
            await app.compute.create(ADMIN, "s4", img, "tiny", host="nowhere")
        member = RequestContext("u-admin", "p-admin", frozenset({"member", "reader"}))
        with pytest.raises(Forbidden):
            await app.compute.create(member, "s5", img, "tiny", host="a")
        assert [s.name for s in app.compute.list_servers(ADMIN)] == ["s"]

    run(go)


# -- reachability refusals: a 400 that names both, and nothing changed --------------------------
ONLY_H1 = ("h1",)


def reach_app(tmp: Path) -> Ferry:
    """`fast` is shared; `bulk` (where new volumes go: the most free) only reachable from h1, and
    the server runs on the all-in-one's own host `ferry`."""
    cfg = cfgmod.default_config(tmp / "data")
    fast, bulk = cfg.backends
    app, _ = make_app(tmp, (fast, replace(bulk, hosts=ONLY_H1, shared=False)))
    return app


def attachments(app: Ferry) -> list[Any]:
    with app.db() as s:
        return [(a.id, a.volume_id, a.server_id, a.status) for a in s.query(Attachment)]


def test_attaching_a_volume_the_servers_host_cannot_reach_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        app = reach_app(tmp_path)
        sid = (await app.compute.create(ADMIN, "s", image(app, tmp_path), "tiny")).id
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id
        assert app.volumes.get(ADMIN, vid).backend == "bulk"
        before = (rows(app, vid), server_row(app, sid), attachments(app))
        with pytest.raises(BadRequest) as refused:
            await app.compute.attach(ADMIN, sid, vid)
        assert "'bulk'" in refused.value.message and "host 'ferry'" in refused.value.message
        assert (rows(app, vid), server_row(app, sid), attachments(app)) == before
        assert app.hosts.hosts_reaching(app.config.backend("bulk")) == []
        assert app.hosts.hosts_reaching(app.config.backend("fast")) == ["ferry"]

    run(go)


def test_migrating_an_attached_volume_where_its_host_cannot_reach_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        app = reach_app(tmp_path)
        sid = (await app.compute.create(ADMIN, "s", image(app, tmp_path), "tiny")).id
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id
        moved = await move_to_fast(app, vid)
        await app.compute.attach(ADMIN, sid, vid)
        before = (rows(app, vid), server_row(app, sid), attachments(app))
        with pytest.raises(BadRequest) as refused:
            await app.migrations.migrate(ADMIN, vid, "bulk")
        assert "host 'ferry'" in refused.value.message and "backend 'bulk'" in refused.value.message
        assert (rows(app, vid), server_row(app, sid), attachments(app)) == before
        assert app.migrations.report(ADMIN, vid).migration.id == moved  # no new migration row

    run(go)


async def move_to_fast(app: Ferry, vid: str) -> str:
    """A detached volume migrates anywhere (no server's host to reach it from)."""
    mig = await app.migrations.migrate(ADMIN, vid, "fast")
    await app.migrations.wait(mig.id)
    assert app.volumes.get(ADMIN, vid).backend == "fast"
    return mig.id


# -- the 0005 upgrade ------------------------------------------------------------------------
@pytest.mark.db
def test_the_upgrade_puts_existing_servers_on_the_configured_host(tmp_path: Path) -> None:
    url = os.environ.get("FERRY_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'ferry.db'}"
    reset_database(url)
    upgrade(url, "0003")
    engine = make_engine(url)
    try:
        store_0001_rows(engine, ROWS_0001)
        upgrade(url, host_name="h7")
        with Session(engine) as s:
            server = s.get(Server, "s1")
            assert server is not None and server.host == "h7"
            assert s.query(Host).count() == 0  # a host appears when it registers
    finally:
        engine.dispose()
