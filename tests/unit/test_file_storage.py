"""File storage driver against the real qemu-img: layout, snapshots, merges, chain-preserving copies."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.domain.errors import BadRequest, DriverError
from ferry.domain.ids import new_id
from ferry.domain.model import BackendConfig, DiskFormat, VolumeLocation
from ferry.drivers.storage import file as file_driver
from ferry.drivers.storage.file import FileStorageDriver
from ferry.drivers.storage.qemu_img import QemuImg, progress_parser

pytestmark = pytest.mark.anyio

MiB = 1024**2
SIZE = 64 * MiB

DriverFactory = Callable[..., FileStorageDriver]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_driver(tmp_path: Path) -> DriverFactory:
    def make(name: str = "a", fmt: DiskFormat = DiskFormat.QCOW2) -> FileStorageDriver:
        return FileStorageDriver(BackendConfig(name=name, path=str(tmp_path / name), format=fmt))

    return make


def qemu_io(path: Path, command: str) -> bool:
    """Run one qemu-io command on an image chain; False when it fails (e.g. a pattern mismatch)."""
    fmt = path.suffix.lstrip(".")
    result = subprocess.run(
        ["qemu-io", "-f", fmt, "-c", command, str(path)], capture_output=True, check=False
    )
    return result.returncode == 0


def write(path: Path, command: str) -> None:
    assert qemu_io(path, command), f"qemu-io {command!r} failed on {path}"


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


async def new_volume(driver: FileStorageDriver, size: int = SIZE) -> VolumeLocation:
    loc = VolumeLocation(driver.name, new_id(), (new_id(),), driver.format)
    await driver.create_volume(loc, size)
    return loc


async def three_layer_volume(driver: FileStorageDriver) -> VolumeLocation:
    """base: 0xaa over [0,2M); snap: 0xbb over [1M,3M); active: 0xcc over [0,512k) and a zeroed
    [1M,1M+64k) hole punched through both lower layers."""
    loc = await new_volume(driver)
    write(driver.layer_path(loc.name_id, loc.active_layer), "write -P 0xaa 0 2M")
    loc = await driver.snapshot(loc, new_id())
    write(driver.layer_path(loc.name_id, loc.active_layer), "write -P 0xbb 1M 2M")
    loc = await driver.snapshot(loc, new_id())
    top = driver.layer_path(loc.name_id, loc.active_layer)
    write(top, "write -P 0xcc 0 512k")
    write(top, "write -z 1M 64k")
    return loc


def top(driver: FileStorageDriver, loc: VolumeLocation) -> Path:
    return driver.layer_path(loc.name_id, loc.active_layer)


# -- layout and creation -----------------------------------------------------------------------


async def test_create_volume_layout_and_idempotence(make_driver: DriverFactory, tmp_path: Path) -> None:
    driver = make_driver()
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    loc = await new_volume(driver)
    path = top(driver, loc)
    assert path == tmp_path / "a" / f"volume-{loc.name_id}" / f"{loc.active_layer}.qcow2"
    assert await driver.virtual_size(path) == SIZE
    assert allocated(path) < MiB
    await driver.create_volume(loc, SIZE)  # replay keeps the file
    with pytest.raises(DriverError, match="already exists"):
        await driver.create_volume(loc, 2 * SIZE)
    assert await driver.backing_chain(path) == [path]


async def test_raw_backend_is_sparse_and_refuses_snapshots(make_driver: DriverFactory) -> None:
    driver = make_driver("r", DiskFormat.RAW)
    loc = await new_volume(driver)
    path = top(driver, loc)
    assert path.suffix == ".raw"
    assert path.stat().st_size == SIZE
    assert allocated(path) < MiB
    with pytest.raises(BadRequest, match="backend r is raw: snapshots need a qcow2 backend"):
        await driver.snapshot(loc, new_id())
    with pytest.raises(BadRequest):
        await driver.create_volume(VolumeLocation("r", new_id(), (new_id(),), DiskFormat.QCOW2), SIZE)


async def test_delete_volume_is_idempotent(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    (driver.volume_dir(loc.name_id) / f".{new_id()}.part").write_bytes(b"junk")
    await driver.delete_volume(loc.name_id)
    assert not driver.volume_dir(loc.name_id).exists()
    await driver.delete_volume(loc.name_id)
    await driver.delete_volume(new_id())


async def test_retire_volume_moves_now_and_reclaims_later(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await new_volume(driver)
    write(top(driver, loc), "write -P 0x5a 0 8M")
    before = (await driver.usage()).allocated_bytes
    await driver.retire_volume(loc.name_id)
    assert not driver.volume_dir(loc.name_id).exists()
    assert loc.name_id not in {s.name_id for s in driver.stored_layers()}
    await driver.retire_volume(loc.name_id)  # idempotent
    await driver.reclaim()  # waits for the background delete
    assert list((driver.root / ".trash").iterdir()) == []
    assert (await driver.usage()).allocated_bytes <= before - 8 * MiB


async def test_reclaim_empties_what_a_crash_left_in_the_trash(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await new_volume(driver)
    write(top(driver, loc), "write -P 0x5a 0 8M")
    trash = driver.root / ".trash"
    trash.mkdir()
    os.rename(driver.volume_dir(loc.name_id), trash / f"volume-{loc.name_id}.deadbeef")
    retired = (await driver.usage()).allocated_bytes
    assert retired >= 8 * MiB  # still counted: it still takes space
    restarted = make_driver()
    await restarted.reclaim()
    assert list(trash.iterdir()) == []
    assert (await restarted.usage()).allocated_bytes <= retired - 8 * MiB


@pytest.mark.parametrize("bad", ["../../etc/passwd", "abc", "", "0" * 36, "volume-x/../y", None])
def test_non_uuid_ids_are_rejected(make_driver: DriverFactory, bad: object) -> None:
    driver = make_driver()
    with pytest.raises(BadRequest):
        driver.layer_path(new_id(), bad)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        driver.volume_dir(bad)  # type: ignore[arg-type]


def test_paths_stay_inside_root(make_driver: DriverFactory, tmp_path: Path) -> None:
    driver = make_driver()
    name_id, layer = new_id(), new_id()
    upper = driver.layer_path(name_id.upper(), layer.upper())
    assert upper == driver.layer_path(name_id, layer)
    outside = tmp_path / "outside"
    outside.mkdir()
    (driver.root / f"volume-{name_id}").symlink_to(outside)
    with pytest.raises(BadRequest, match="outside backend"):
        driver.layer_path(name_id, layer)


# -- snapshots and merges ----------------------------------------------------------------------


async def test_snapshot_chain_is_relative_and_replayable(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    paths = [driver.layer_path(loc.name_id, layer) for layer in loc.layers]
    assert await driver.backing_chain(paths[-1]) == paths[::-1]
    info = await driver.img.info(paths[-1], DiskFormat.QCOW2)
    assert info.backing_filename == paths[1].name
    assert qemu_io(paths[-1], "read -P 0xcc 0 512k")
    assert qemu_io(paths[-1], "read -P 0 1M 64k")
    assert qemu_io(paths[-1], "read -P 0xbb 2M 1M")
    # Replaying the last snapshot step keeps the file (and the data written into it).
    replayed = await driver.snapshot(VolumeLocation(loc.backend, loc.name_id, loc.layers[:2]), loc.layers[2])
    assert replayed == loc
    assert qemu_io(paths[-1], "read -P 0xcc 0 512k")


async def test_merge_middle_then_base_keeps_guest_view(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    flat = await new_volume(driver)
    await driver.delete_volume(flat.name_id)
    await driver.copy_flat(top(driver, loc), flat, SIZE)
    reference = top(driver, flat)
    assert await driver.same_content(top(driver, loc), reference)

    base, middle, active = loc.layers
    loc = await driver.merge_layer(loc, middle)
    assert loc.layers == (base, active)
    assert not driver.layer_path(loc.name_id, middle).exists()
    assert await driver.same_content(top(driver, loc), reference)

    loc = await driver.merge_layer(loc, base)
    assert loc.layers == (active,)
    assert await driver.backing_chain(top(driver, loc)) == [top(driver, loc)]
    assert await driver.same_content(top(driver, loc), reference)
    # The check can fail: one more guest write makes the views differ.
    write(top(driver, loc), "write -P 0x11 4M 4k")
    assert not await driver.same_content(top(driver, loc), reference)


async def test_merge_refuses_active_and_unknown_layers(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    for layer in (loc.active_layer, new_id()):
        with pytest.raises(BadRequest, match="not a read-only layer"):
            await driver.merge_layer(loc, layer)


async def test_merge_layer_survives_a_crash_after_rebase(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    base, middle, active = loc.layers
    expected = await new_volume(driver)
    await driver.delete_volume(expected.name_id)
    await driver.copy_flat(top(driver, loc), expected, SIZE)
    # The first half of merge_layer by hand; the process "dies" before deleting the layer file.
    child = driver.layer_path(loc.name_id, active)
    await driver.img.rebase(child, DiskFormat.QCOW2, f"{base}.qcow2", DiskFormat.QCOW2)
    assert driver.layer_path(loc.name_id, middle).exists()

    merged = await driver.merge_layer(loc, middle)
    assert merged.layers == (base, active)
    assert not driver.layer_path(loc.name_id, middle).exists()
    assert await driver.same_content(child, top(driver, expected))
    # A second replay (file already gone) is harmless too.
    assert await driver.merge_layer(loc, middle) == merged


async def test_extend_grows_active_layer_only(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    await driver.extend(loc, 2 * SIZE)
    assert await driver.virtual_size(top(driver, loc)) == 2 * SIZE
    assert await driver.virtual_size(driver.layer_path(loc.name_id, loc.layers[0])) == SIZE
    assert qemu_io(top(driver, loc), f"read -P 0 {SIZE} 1M")
    assert qemu_io(top(driver, loc), "read -P 0xbb 2M 1M")
    await driver.extend(loc, 2 * SIZE)
    with pytest.raises(BadRequest, match="shrink"):
        await driver.extend(loc, SIZE)

    raw = make_driver("r", DiskFormat.RAW)
    raw_loc = await new_volume(raw)
    await raw.extend(raw_loc, 2 * SIZE)
    assert top(raw, raw_loc).stat().st_size == 2 * SIZE
    assert allocated(top(raw, raw_loc)) < MiB


# -- copies ------------------------------------------------------------------------------------


async def test_copy_flat_across_backends_and_resize(make_driver: DriverFactory) -> None:
    src = make_driver("a")
    loc = await three_layer_volume(src)
    for fmt in DiskFormat:
        dst = make_driver(f"b-{fmt}", fmt)
        dest = VolumeLocation(dst.name, new_id(), (new_id(),), fmt)
        await dst.copy_flat(top(src, loc), dest, 2 * SIZE)
        copied = top(dst, dest)
        assert await dst.virtual_size(copied) == 2 * SIZE
        assert await dst.backing_chain(copied) == [copied]
        assert await dst.same_content(top(src, loc), copied)
        assert allocated(copied) < 8 * MiB
        with pytest.raises(BadRequest, match="Cannot copy"):
            await dst.copy_flat(copied, VolumeLocation(dst.name, new_id(), (new_id(),), fmt), SIZE // 2)


async def test_a_copy_is_flushed_before_it_takes_its_final_name(
    make_driver: DriverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qemu-img convert never flushes its output; a migration deletes the source right after."""
    src, dst = make_driver("a"), make_driver("b")
    loc = await three_layer_volume(src)
    flushed: list[tuple[Path, bool]] = []
    real = file_driver._fsync_file

    def record(path: Path) -> None:
        real(path)
        final = path.parent / path.name.removeprefix(".").removesuffix(".part")
        flushed.append((path, final.exists()))

    monkeypatch.setattr(file_driver, "_fsync_file", record)
    dest = VolumeLocation("b", new_id(), (loc.layers[0],))
    await dst.copy_layer(src.layer_path(loc.name_id, loc.layers[0]), dest, loc.layers[0], None)
    assert flushed == [(dst.part_path(dest.name_id, loc.layers[0]), False)]
    assert dst.layer_path(dest.name_id, loc.layers[0]).exists()


async def test_copy_layer_preserves_the_chain(make_driver: DriverFactory, tmp_path: Path) -> None:
    src, dst = make_driver("a"), make_driver("b")
    loc = await three_layer_volume(src)
    dest = VolumeLocation("b", new_id(), loc.layers)
    parent: str | None = None
    calls: list[tuple[int, int]] = []
    for layer in loc.layers:
        source = src.layer_path(loc.name_id, layer)
        calls.clear()
        await dst.copy_layer(source, dest, layer, parent, progress=lambda d, t: calls.append((d, t)))
        assert calls[-1] == (SIZE, SIZE)
        assert all(b >= a for (a, _), (b, _) in itertools.pairwise(calls))
        copied = dst.layer_path(dest.name_id, layer)
        assert await dst.same_content(source, copied), f"layer {layer} differs"
        backing = (await dst.img.info(copied, DiskFormat.QCOW2)).backing_filename
        assert backing == (f"{parent}.qcow2" if parent else None)
        parent = layer
    # Chain-preserving: the middle layer holds its own 2 MiB, not the base's data again.
    assert allocated(dst.layer_path(dest.name_id, loc.layers[1])) < 3 * MiB
    assert not list(dst.volume_dir(dest.name_id).glob("*.part"))
    # Self-contained: the copied volume directory still works after moving the backend root.
    moved = tmp_path / "moved"
    (tmp_path / "b").rename(moved)
    moved_top = moved / f"volume-{dest.name_id}" / f"{dest.active_layer}.qcow2"
    assert await dst.same_content(top(src, loc), moved_top)


async def test_copy_layer_replaces_leftover_part(make_driver: DriverFactory) -> None:
    src, dst = make_driver("a"), make_driver("b")
    loc = await new_volume(src)
    write(top(src, loc), "write -P 0x5a 0 1M")
    dest = VolumeLocation("b", new_id(), loc.layers)
    dst.volume_dir(dest.name_id).mkdir()
    part = dst.part_path(dest.name_id, dest.active_layer)
    part.write_bytes(b"half a copy" * 1000)
    assert part.is_file()
    await dst.copy_layer(top(src, loc), dest, dest.active_layer, None)
    assert not part.exists()
    assert await dst.same_content(top(src, loc), top(dst, dest))


async def test_copy_layer_needs_the_parent_first(make_driver: DriverFactory) -> None:
    src, dst = make_driver("a"), make_driver("b")
    loc = await three_layer_volume(src)
    dest = VolumeLocation("b", new_id(), loc.layers)
    with pytest.raises(DriverError, match="has not been copied"):
        await dst.copy_layer(top(src, loc), dest, loc.layers[2], loc.layers[1])


@pytest.mark.parametrize("fmt", list(DiskFormat))
async def test_copy_layer_writes_no_zeros(make_driver: DriverFactory, fmt: DiskFormat) -> None:
    """1 GiB with 16 MiB written: the copy must stay about 16 MiB, whatever the target format."""
    src, dst = make_driver("a"), make_driver("b", fmt)
    loc = await new_volume(src, 1024 * MiB)
    write(top(src, loc), "write -P 0x42 100M 16M")
    dest = VolumeLocation("b", new_id(), loc.layers, fmt)
    await dst.copy_layer(top(src, loc), dest, dest.active_layer, None, rate_limit=0)
    assert 16 * MiB <= allocated(top(dst, dest)) < 20 * MiB
    assert await dst.virtual_size(top(dst, dest)) == 1024 * MiB
    assert qemu_io(top(dst, dest), "read -P 0x42 100M 16M")


async def test_raw_and_qcow2_round_trip(make_driver: DriverFactory) -> None:
    qcow, raw, back = make_driver("q"), make_driver("r", DiskFormat.RAW), make_driver("q2")
    loc = await new_volume(qcow)
    write(top(qcow, loc), "write -P 0x77 3M 1M")
    raw_loc = VolumeLocation("r", loc.name_id, loc.layers, DiskFormat.RAW)
    await raw.copy_layer(top(qcow, loc), raw_loc, raw_loc.active_layer, None)
    assert await raw.same_content(top(qcow, loc), top(raw, raw_loc))
    assert allocated(top(raw, raw_loc)) < 2 * MiB
    back_loc = VolumeLocation("q2", loc.name_id, loc.layers)
    await back.copy_layer(top(raw, raw_loc), back_loc, back_loc.active_layer, None)
    assert await back.same_content(top(raw, raw_loc), top(back, back_loc))
    assert qemu_io(top(back, back_loc), "read -P 0x77 3M 1M")
    with pytest.raises(BadRequest, match="raw"):
        await raw.copy_layer(top(qcow, loc), raw_loc, new_id(), loc.active_layer)


async def test_create_overlay_is_fresh_and_relative(make_driver: DriverFactory) -> None:
    src, dst = make_driver("a"), make_driver("b")
    loc = await new_volume(src)
    write(top(src, loc), "write -P 0x21 0 1M")
    dest = VolumeLocation("b", new_id(), (loc.active_layer, new_id()))
    await dst.copy_layer(top(src, loc), dest, loc.active_layer, None)
    overlay = top(dst, dest)
    await dst.create_overlay(dest, dest.active_layer, loc.active_layer, SIZE)
    write(overlay, "write -P 0x99 0 64k")
    await dst.create_overlay(dest, dest.active_layer, loc.active_layer, SIZE)  # a retried attempt
    assert await dst.same_content(overlay, top(src, loc))
    assert (await dst.img.info(overlay, DiskFormat.QCOW2)).backing_filename == f"{loc.active_layer}.qcow2"


# -- inventory ---------------------------------------------------------------------------------


async def test_usage_counts_allocated_bytes(make_driver: DriverFactory) -> None:
    driver = make_driver()
    empty = await driver.usage()
    loc = await new_volume(driver, 256 * MiB)
    write(top(driver, loc), "write -P 0x33 8M 4M")
    usage = await driver.usage()
    assert 4 * MiB <= usage.allocated_bytes - empty.allocated_bytes < 16 * MiB
    stat = os.statvfs(driver.root)
    assert 0 < usage.free_bytes <= stat.f_blocks * stat.f_frsize


async def test_stored_layers_ignores_foreign_files(make_driver: DriverFactory) -> None:
    driver = make_driver()
    loc = await three_layer_volume(driver)
    (driver.root / "notes.txt").write_text("hello")
    (driver.root / "volume-not-a-uuid").mkdir()
    (driver.root / "volume-not-a-uuid" / f"{new_id()}.qcow2").write_text("x")
    (driver.root / f"volume-{new_id()}").write_text("a file, not a dir")
    vdir = driver.volume_dir(loc.name_id)
    (vdir / "README").write_text("x")
    (vdir / f"{new_id()}.qcow2.bak").write_text("x")
    (vdir / f".{new_id()}.part").write_text("x")
    layers = driver.stored_layers()
    assert {(s.name_id, s.layer_id) for s in layers} == {(loc.name_id, layer) for layer in loc.layers}
    assert all(s.path == driver.layer_path(s.name_id, s.layer_id) for s in layers)
    assert (await driver.usage()).allocated_bytes > 0


# -- the qemu-img wrapper ----------------------------------------------------------------------


async def test_qemu_img_errors_carry_stderr(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="Could not open"):
        await QemuImg().info(tmp_path / "missing.qcow2", DiskFormat.QCOW2)
    with pytest.raises(DriverError, match="cannot run"):
        await QemuImg(str(tmp_path / "no-such-qemu-img")).info(tmp_path / "x.qcow2", DiskFormat.QCOW2)
    with pytest.raises(DriverError, match="absolute"):
        await QemuImg().info(Path("relative.qcow2"), DiskFormat.QCOW2)


def testprogress_parser_handles_split_output() -> None:
    calls: list[tuple[int, int]] = []
    feed = progress_parser(lambda d, t: calls.append((d, t)), 1000)
    for chunk in [b"    (0.00/100%)\r    (12.", b"50/100%)\r", b"    (12.50/100%)\r    (100.00/100%)\r\n"]:
        feed(chunk)
    assert calls == [(0, 1000), (125, 1000), (1000, 1000)]


async def test_cancelled_copy_kills_qemu_img(make_driver: DriverFactory) -> None:
    src, dst = make_driver("a"), make_driver("b")
    loc = await new_volume(src)
    write(top(src, loc), "write -P 0x01 0 8M")
    dest = VolumeLocation("b", new_id(), loc.layers)
    started = asyncio.Event()
    copy = asyncio.create_task(
        dst.copy_layer(
            top(src, loc), dest, dest.active_layer, None, rate_limit=MiB, progress=lambda d, t: started.set()
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    copy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await copy
    part = str(dst.part_path(dest.name_id, dest.active_layer))
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if part.encode() in _read(p)]
    assert not top(dst, dest).exists()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
