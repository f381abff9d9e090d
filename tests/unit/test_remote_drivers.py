"""The remote driver proxies over the in-process queue and an agent executor: the file storage
driver's own tests and the migration service's tests pass through them unchanged, and the fake
hypervisor's contract (errors, bytes, conditions, cancel) holds across the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.coordination.calls import DriverCall
from ferry.coordination.executor import AgentExecutor
from ferry.coordination.hypervisor import RemoteHypervisor
from ferry.coordination.memory import InProcessQueue
from ferry.coordination.queue import Timing
from ferry.coordination.storage import RemoteStorage
from ferry.domain.errors import BadRequest, Conflict, DriverError, NotFound
from ferry.domain.migration import MirrorCondition
from ferry.domain.model import BackendConfig, DiskChain, DiskFormat, LayerFile
from ferry.drivers.hypervisor.base import ServerSpec
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.drivers.storage.file import FileStorageDriver
from ferry.services.app import Ferry
from tests.unit import test_migration_service as migration_tests
from tests.unit.test_file_storage import (  # the file driver's tests, run here through the proxy
    test_a_copy_is_flushed_before_it_takes_its_final_name,
    test_cancelled_copy_kills_qemu_img,
    test_copy_flat_across_backends_and_resize,
    test_copy_layer_needs_the_parent_first,
    test_copy_layer_preserves_the_chain,
    test_copy_layer_replaces_leftover_part,
    test_copy_layer_writes_no_zeros,
    test_create_overlay_is_fresh_and_relative,
    test_create_volume_layout_and_idempotence,
    test_delete_volume_is_idempotent,
    test_extend_grows_active_layer_only,
    test_merge_layer_survives_a_crash_after_rebase,
    test_merge_middle_then_base_keeps_guest_view,
    test_merge_refuses_active_and_unknown_layers,
    test_non_uuid_ids_are_rejected,
    test_paths_stay_inside_root,
    test_raw_and_qcow2_round_trip,
    test_raw_backend_is_sparse_and_refuses_snapshots,
    test_reclaim_empties_what_a_crash_left_in_the_trash,
    test_snapshot_chain_is_relative_and_replayable,
    test_usage_counts_allocated_bytes,
)
from tests.unit.test_live_extend import (  # an in-use extend, the disk grown through the agent
    test_a_failed_live_extend_leaves_error_extending,
    test_an_in_use_extend_grows_the_running_disk_and_returns_to_in_use,
)
from tests.unit.test_migration_service import (  # the migration service, with proxies in place
    test_attached_migration_commits_and_cleans,
    test_cancel_and_swap_guard,
    test_job_error_and_dead_qemu_roll_back,
    test_stalled_mirror_switches_to_write_blocking,
    test_unverified_target_is_never_pivoted,
)

pytestmark = pytest.mark.anyio
HOST = "h1"
TIMING = Timing(
    call_timeout=30, recheck=0.2, lease=5.0, cancel_grace=10, stop_grace=0.2, progress_interval=0.05
)

__all__ = [
    "test_a_copy_is_flushed_before_it_takes_its_final_name",
    "test_a_failed_live_extend_leaves_error_extending",
    "test_an_in_use_extend_grows_the_running_disk_and_returns_to_in_use",
    "test_attached_migration_commits_and_cleans",
    "test_cancel_and_swap_guard", "test_cancelled_copy_kills_qemu_img",
    "test_copy_flat_across_backends_and_resize", "test_copy_layer_needs_the_parent_first",
    "test_copy_layer_preserves_the_chain", "test_copy_layer_replaces_leftover_part",
    "test_copy_layer_writes_no_zeros", "test_create_overlay_is_fresh_and_relative",
    "test_create_volume_layout_and_idempotence", "test_delete_volume_is_idempotent",
    "test_extend_grows_active_layer_only", "test_job_error_and_dead_qemu_roll_back",
    "test_merge_layer_survives_a_crash_after_rebase", "test_merge_middle_then_base_keeps_guest_view",
    "test_merge_refuses_active_and_unknown_layers", "test_non_uuid_ids_are_rejected",
    "test_paths_stay_inside_root", "test_raw_and_qcow2_round_trip",
    "test_raw_backend_is_sparse_and_refuses_snapshots", "test_reclaim_empties_what_a_crash_left_in_the_trash",
    "test_snapshot_chain_is_relative_and_replayable", "test_stalled_mirror_switches_to_write_blocking",
    "test_unverified_target_is_never_pivoted", "test_usage_counts_allocated_bytes",
]  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class AgentInLoop(InProcessQueue):
    """An in-process queue whose agent (of `HOST`) starts in whichever event loop first calls it:
    the reused tests run their own loops (`asyncio.run`) and know nothing of agents."""

    def __init__(self, executor: AgentExecutor) -> None:
        super().__init__(TIMING)
        self.executor = executor
        self._agents: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    async def call(self, host: str, call: DriverCall, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        if loop not in self._agents or self._agents[loop].done():
            self._agents[loop] = loop.create_task(
                self.serve(HOST, "agent", self.executor.perform, asyncio.Event())
            )
        return await super().call(host, call, **kw)


async def on_host(_: object = None) -> str:
    return HOST


class ProxiedFile(RemoteStorage):
    """A RemoteStorage the file driver's white-box tests can look through: `img` and `part_path`
    of the agent's real driver, and its inventories as a caller on a shared mount could read
    them (the services still call the synchronous forms)."""

    def __init__(self, queue: AgentInLoop, real: FileStorageDriver) -> None:
        super().__init__(queue, real.config, on_host)
        self.img = real.img
        self.part_path = real.part_path
        self.stored_layers = real.stored_layers  # type: ignore[method-assign]
        self.stored_partials = real.stored_partials  # type: ignore[method-assign]
        self.stored_locations = real.stored_locations  # type: ignore[method-assign]


@pytest.fixture
def executor() -> AgentExecutor:
    return AgentExecutor(None, {})


@pytest.fixture
def make_driver(tmp_path: Path, executor: AgentExecutor) -> Any:
    """Overrides test_file_storage's fixture: the same drivers, reached through the queue."""
    queue = AgentInLoop(executor)

    def make(name: str = "a", fmt: DiskFormat = DiskFormat.QCOW2) -> ProxiedFile:
        real = FileStorageDriver(BackendConfig(name=name, path=str(tmp_path / name), format=fmt))
        executor.storage_drivers[name] = real
        return ProxiedFile(queue, real)

    return make


@pytest.fixture(autouse=True)
def proxied_ferry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The migration tests' `make_ferry`, with both drivers replaced by proxies to one agent."""
    real_make = migration_tests.make_ferry

    def make_ferry(tmp: Path, hv: FakeHypervisorDriver, stall: float = 3.0) -> Ferry:
        app = real_make(tmp, hv, stall)
        executor = AgentExecutor(hv, dict(app.backends.drivers))
        queue = AgentInLoop(executor)
        remote = RemoteHypervisor(queue, on_host)
        for service in (app.compute, app.migrations, app.recovery, app.doctor):
            for attr, value in vars(service).items():
                if value is hv:
                    setattr(service, attr, remote)
        app.hypervisor = remote
        for name, real in list(app.backends.drivers.items()):
            assert isinstance(real, FileStorageDriver)
            app.backends.drivers[name] = ProxiedFile(queue, real)
        return app

    monkeypatch.setattr(migration_tests, "make_ferry", make_ferry)
    yield


# -- the hypervisor contract across the queue ---------------------------------------------------


@pytest.fixture
def hv_pair() -> tuple[FakeHypervisorDriver, RemoteHypervisor]:
    fake = FakeHypervisorDriver(slots=1)
    return fake, RemoteHypervisor(AgentInLoop(AgentExecutor(fake, {})), on_host)


async def test_hypervisor_calls_errors_and_bytes_cross(
    hv_pair: tuple[FakeHypervisorDriver, RemoteHypervisor],
) -> None:
    fake, hv = hv_pair
    with pytest.raises(NotFound, match="server s1 does not exist"):
        await hv.console_output("s1")
    vol = "0b1f1c1e-0000-4000-8000-000000000001"
    chain = DiskChain(vol, (LayerFile("/b/x.qcow2"),))
    await hv.spawn(ServerSpec("s1", 1, 128, disks=(chain,)))
    assert await hv.is_running("s1")
    data, after = await hv.console_read("s1", 0)
    assert data.startswith(b"FAKE-BOOT") and after == len(data)
    [disk] = await hv.disks("s1")
    assert disk.volume_id == vol and disk.files == ("/b/x.qcow2",)
    with pytest.raises(Conflict, match="no free hotplug slot"):
        await hv.attach_disk("s1", DiskChain("other", (LayerFile("/b/y.qcow2"),)))
    fake.fail_next("stop", DriverError("QEMU would not quit"))
    with pytest.raises(DriverError, match=r"^QEMU would not quit$"):
        await hv.stop("s1")


async def test_extend_volume_crosses_with_its_size_and_refusal(
    hv_pair: tuple[FakeHypervisorDriver, RemoteHypervisor],
) -> None:
    fake, hv = hv_pair
    vol = "0b1f1c1e-0000-4000-8000-000000000003"
    await hv.spawn(ServerSpec("s1", 1, 128, disks=(DiskChain(vol, (LayerFile("/b/x.qcow2"),)),)))
    await hv.extend_volume("s1", vol, 2 << 30)
    assert ("extend_volume", "s1", vol, str(2 << 30)) in fake.calls
    [disk] = await hv.disks("s1")
    assert disk.size == 2 << 30  # DiskInfo's size crosses too
    with pytest.raises(BadRequest, match="cannot shrink"):
        await hv.extend_volume("s1", vol, 1 << 30)
    with pytest.raises(NotFound, match="not attached"):
        await hv.extend_volume("s1", "0b1f1c1e-0000-4000-8000-000000000004", 2 << 30)


async def test_wait_mirror_crosses_with_its_condition(
    hv_pair: tuple[FakeHypervisorDriver, RemoteHypervisor],
) -> None:
    fake, hv = hv_pair
    vol = "0b1f1c1e-0000-4000-8000-000000000002"
    await hv.spawn(ServerSpec("s1", 1, 128, disks=(DiskChain(vol, (LayerFile("/b/x.qcow2"),)),)))
    target = DiskChain(vol, (LayerFile("/c/x.qcow2"),))
    await hv.start_mirror("s1", vol, "j1", target, sync_top=False, speed=0)
    waiting = asyncio.create_task(hv.wait_mirror("s1", "j1", MirrorCondition.READY, timeout=10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    fake.make_ready("s1", "j1")
    status = await asyncio.wait_for(waiting, 5)
    assert status.ready and status.job_id == "j1"
    await hv.set_write_blocking("s1", "j1")
    converging = asyncio.create_task(hv.wait_mirror("s1", "j1", MirrorCondition.CONVERGED, timeout=10))
    await asyncio.sleep(0.2)
    assert not converging.done(), "write-blocking and not actively synced: not converged"
    converging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await converging
    fake.make_synced("s1", "j1")
    assert (await hv.wait_mirror("s1", "j1", MirrorCondition.CONVERGED, timeout=5)).actively_synced


async def test_sync_inventories_say_to_use_the_awaitable_forms(tmp_path: Path) -> None:
    real = FileStorageDriver(BackendConfig(name="a", path=str(tmp_path / "a")))
    remote = RemoteStorage(AgentInLoop(AgentExecutor(None, {"a": real})), real.config, on_host)
    with pytest.raises(DriverError, match="use scan_layers"):
        remote.stored_layers()
    assert await remote.scan_layers() == [] and await remote.scan_locations() == []
    name_id, layer = "0b1f1c1e-0000-4000-8000-000000000003", "0b1f1c1e-0000-4000-8000-000000000004"
    assert remote.layer_path(name_id, layer) == real.layer_path(name_id, layer)
    nowhere = RemoteStorage(
        AgentInLoop(AgentExecutor(None, {})), BackendConfig("b", str(tmp_path / "b")), on_host
    )
    with pytest.raises(NotFound, match="backend b is not reachable from this host"):
        await nowhere.usage()
