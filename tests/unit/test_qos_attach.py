"""Front-end QoS at attach, on the fake hypervisor: a volume whose type has front-end (or both)
QoS specs is plugged with its disk throttled (Nova's libvirt iotune keys); back-end specs and
types without QoS leave the disk unthrottled. Plus the pure rules of `domain.qos.disk_limits`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ferry.domain.qos import QosConsumer, disk_limits
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.drivers.hypervisor.qemu.devices import throttle_args
from ferry.services.hosts import HostSpec
from ferry.services.images import register_image
from ferry.services.volume_create import VolumeCreate
from tests.unit.test_live_migration import control_plane
from tests.unit.test_migration_service import ADMIN, make_ferry


@pytest.mark.parametrize(
    ("consumer", "specs", "expected"),
    [
        (QosConsumer.FRONT_END, {"read_iops_sec": "2000", "iops_bytes": "5"}, {"read_iops_sec": 2000}),
        (QosConsumer.BOTH, {"total_bytes_sec": "1048576"}, {"total_bytes_sec": 1048576}),
        (QosConsumer.BACK_END, {"total_bytes_sec": "1048576"}, {}),
        # a total limit wins over read/write ones (QEMU refuses both)
        (QosConsumer.FRONT_END, {"total_iops_sec": "100", "read_iops_sec": "50"}, {"total_iops_sec": 100}),
        # a burst is kept only above its rate; junk and zero are no limit
        (
            QosConsumer.FRONT_END,
            {"write_bytes_sec": "10", "write_bytes_sec_max": "5"},
            {"write_bytes_sec": 10},
        ),
        (
            QosConsumer.FRONT_END,
            {"write_bytes_sec": "10", "write_bytes_sec_max": "50"},
            {"write_bytes_sec": 10, "write_bytes_sec_max": 50},
        ),
        (
            QosConsumer.FRONT_END,
            {"read_bytes_sec": "fast", "write_iops_sec": "0", "size_iops_sec": "4096"},
            {},
        ),
    ],
)
def test_disk_limits(consumer: QosConsumer, specs: dict[str, str], expected: dict[str, int]) -> None:
    assert disk_limits(consumer, specs) == expected


def test_throttle_args_name_qemus_arguments() -> None:
    vid = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    args = throttle_args(vid, {"read_iops_sec": 2000, "total_bytes_sec_max": 9})
    assert args == {
        "id": f"/machine/peripheral/disk-{vid}/virtio-backend",
        "bps": 0,
        "bps_rd": 0,
        "bps_wr": 0,
        "iops": 0,
        "iops_rd": 2000,
        "iops_wr": 0,
        "bps_max": 9,
    }


def test_front_end_qos_throttles_the_attached_disk(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        app.types.ensure_default()
        kernel = tmp_path / "vmlinuz"
        kernel.write_bytes(b"k")
        image = register_image(app.db, "img", kernel=str(kernel))
        limited = app.types.create(ADMIN, "limited", None, True, {})
        backend_only = app.types.create(ADMIN, "backend-only", None, True, {})
        front = app.qos.create(ADMIN, "front", QosConsumer.FRONT_END, {"total_bytes_sec": "1048576"})
        back = app.qos.create(ADMIN, "back", QosConsumer.BACK_END, {"total_bytes_sec": "1048576"})
        app.qos.associate(ADMIN, front.id, limited.id)
        app.qos.associate(ADMIN, back.id, backend_only.id)
        sid = (await app.compute.create(ADMIN, "s", image.id, "tiny")).id
        vols = {}
        for name in ("limited", "backend-only", None):
            vol = await app.volumes.create(ADMIN, VolumeCreate(size=1, name=str(name), volume_type=name))
            await app.compute.attach(ADMIN, sid, vol.id)
            vols[name] = vol.id
        limits = hv.servers[sid].limits
        assert limits == {vols["limited"]: {"total_bytes_sec": 1048576}}
        assert [c for c in hv.calls if c[0] == "set_disk_limits"] == [
            ("set_disk_limits", sid, vols["limited"])
        ]
        # a new process (stop, start) gets the disk's throttle again
        await app.compute.stop(ADMIN, sid)
        await app.compute.start(ADMIN, sid)
        assert hv.servers[sid].limits == {vols["limited"]: {"total_bytes_sec": 1048576}}
        await app.compute.detach(ADMIN, sid, vols["limited"])
        assert hv.servers[sid].limits == {}

    asyncio.run(go())


def test_live_migration_throttles_the_disk_on_the_destination(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = control_plane(tmp_path, hv)
        await app.live.resume_all()
        kernel = tmp_path / "vmlinuz"
        kernel.write_bytes(b"k")
        image = register_image(app.db, "img", kernel=str(kernel))
        vt = app.types.create(ADMIN, "limited", None, True, {})
        q = app.qos.create(ADMIN, "front", QosConsumer.BOTH, {"write_iops_sec": "100"})
        app.qos.associate(ADMIN, q.id, vt.id)
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v", volume_type="limited"))).id
        sid = (await app.compute.create(ADMIN, "s", image.id, "tiny")).id
        await app.compute.attach(ADMIN, sid, vid)
        app.hosts.register(HostSpec("hv2", "127.0.0.3", 64, 65536))
        row = await app.live.migrate(ADMIN, sid, "hv2")
        await app.live.wait(row.id)
        assert app.live.get(ADMIN, sid, str(row.number)).status == "completed"
        assert hv.on_host("hv2").servers[sid].limits == {vid: {"write_iops_sec": 100}}
        await app.live.stop()

    asyncio.run(go())
