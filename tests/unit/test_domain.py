"""Pure domain rules, no I/O: backend choice, sizes and metadata, ids, the migration plan, the
destination check, the convergence watch and the restart decision table."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ferry.domain.errors import BadRequest
from ferry.domain.ids import is_uuid, new_id, require_uuid
from ferry.domain.migration import (
    ATTACHED_STEPS,
    DETACHED_STEPS,
    ConvergenceWatch,
    Recovery,
    RecoveryFacts,
    Step,
    check_destination,
    plan,
    recover,
)
from ferry.domain.model import BackendConfig, DiskFormat, GiB, VolumeLocation
from ferry.domain.scheduling import PoolStats, choose_backend
from ferry.domain.volumes import MAX_METADATA_ITEMS, MAX_SIZE_GIB, check_metadata, check_size

FAST = BackendConfig("fast", "/b/fast", capacity_gib=100)
BULK = BackendConfig("bulk", "/b/bulk", capacity_gib=500)
RAW = BackendConfig("flat", "/b/flat", format=DiskFormat.RAW, capacity_gib=100)
THIN = BackendConfig("thin", "/b/thin", capacity_gib=10, oversubscription=3.0)


# -- scheduling ------------------------------------------------------------------------------
def test_choose_backend_prefers_most_free_capacity() -> None:
    pools = [PoolStats(FAST, 0), PoolStats(BULK, 0)]
    assert choose_backend(pools, 1).backend is BULK
    # bulk nearly full: fast now has more room
    assert choose_backend([PoolStats(FAST, 10), PoolStats(BULK, 450)], 1).backend is FAST


def test_choose_backend_ties_are_broken_by_name_deterministically() -> None:
    a, b = BackendConfig("a", "/a", capacity_gib=10), BackendConfig("b", "/b", capacity_gib=10)
    assert choose_backend([PoolStats(a, 0), PoolStats(b, 0)], 1).backend is b
    assert choose_backend([PoolStats(b, 0), PoolStats(a, 0)], 1).backend is b


def test_choose_backend_skips_pools_without_room() -> None:
    pools = [PoolStats(FAST, 0), PoolStats(BULK, 499)]
    assert choose_backend(pools, 2).backend is FAST  # bulk has 1 GiB left
    assert choose_backend(pools, 100).backend is FAST  # exactly full is allowed
    with pytest.raises(BadRequest, match="No capacity for a 101 GiB volume on any backend"):
        choose_backend(pools, 101)


def test_choose_backend_honours_a_pinned_backend() -> None:
    # Cinder's behaviour (was: an unknown pin raised "pins backend 'nope'"): the type's
    # volume_backend_name is a filter; no backend passing it: NoValidBackend (test_scheduling.py).
    pools = [PoolStats(FAST, 0), PoolStats(BULK, 0)]
    assert choose_backend(pools, 1, {"volume_backend_name": "fast"}).backend is FAST
    with pytest.raises(BadRequest, match="No valid backend"):
        choose_backend(pools, 1, {"volume_backend_name": "nope"})
    with pytest.raises(BadRequest, match=r"No valid backend.*fast has 0 GiB free"):
        choose_backend([PoolStats(FAST, 100), PoolStats(BULK, 0)], 1, {"volume_backend_name": "fast"})


def test_oversubscription_scales_provisionable_capacity() -> None:
    assert THIN.provisionable_gib == 30
    pool = PoolStats(THIN, 25)
    assert pool.free_gib == 5
    assert pool.fits(5) and not pool.fits(6)


# -- sizes, metadata, ids --------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, MAX_SIZE_GIB])
def test_check_size_accepts_whole_gib(size: int) -> None:
    assert check_size(size) == size


@pytest.mark.parametrize("size", [0, -1, MAX_SIZE_GIB + 1, 10**30, True, False, 1.5, 1.0, "1", None, [1]])
def test_check_size_rejects(size: object) -> None:
    with pytest.raises(BadRequest, match="Invalid size"):
        check_size(size)


def test_check_size_minimum() -> None:
    assert check_size(5, minimum=5) == 5
    with pytest.raises(BadRequest, match="between 5 and"):
        check_size(4, minimum=5)


def test_gib_is_binary() -> None:
    assert GiB == 1 << 30


def test_check_metadata_limits() -> None:
    ok = {f"k{i}": "v" * 255 for i in range(MAX_METADATA_ITEMS)}
    assert check_metadata(ok) is ok
    with pytest.raises(BadRequest, match="Too many metadata items"):
        check_metadata({**ok, "one-more": "x"})
    for bad in ({"": "v"}, {"k" * 256: "v"}, {"k": "v" * 256}):
        with pytest.raises(BadRequest, match="Metadata keys"):
            check_metadata(bad)


def test_ids() -> None:
    ident = new_id()
    assert is_uuid(ident) and ident != new_id()
    assert require_uuid(ident.upper()) == ident
    for bad in ("", "x" * 36, ident[:-1], ident.replace("-", ""), "../" + ident[3:], None, 5):
        assert not is_uuid(bad)
        with pytest.raises(BadRequest, match="is not a UUID"):
            require_uuid(bad, "volume id")


# -- the migration plan ----------------------------------------------------------------------
def loc(backend: str = "fast", layers: int = 1, fmt: DiskFormat = DiskFormat.QCOW2) -> VolumeLocation:
    return VolumeLocation(backend, new_id(), tuple(new_id() for _ in range(layers)), fmt)


def test_plan_keeps_layer_ids_and_uses_a_new_name_id() -> None:
    src = loc(layers=3)
    dest_name = new_id()
    p = plan("vol", src, BULK, dest_name, 2 * GiB, None)
    assert p.dest == VolumeLocation("bulk", dest_name, src.layers, DiskFormat.QCOW2)
    assert p.dest.name_id != src.name_id
    assert p.size_bytes == 2 * GiB


def test_detached_plan_copies_every_layer_and_has_no_mirror() -> None:
    src = loc(layers=3)
    p = plan("vol", src, BULK, new_id(), GiB, None)
    assert not p.attached
    assert p.steps == DETACHED_STEPS
    assert Step.MIRROR not in p.steps and Step.PIVOT not in p.steps
    assert p.layers_to_copy == src.layers


def test_attached_plan_copies_readonly_layers_and_mirrors_the_top() -> None:
    src = loc(layers=3)
    p = plan("vol", src, BULK, new_id(), GiB, "server")
    assert p.attached and p.sync_top
    assert p.steps == ATTACHED_STEPS
    assert p.layers_to_copy == src.layers[:2]
    assert (
        p.steps.index(Step.VERIFY_TARGET)
        < p.steps.index(Step.PIVOT)
        < p.steps.index(Step.COMMIT)
        < p.steps.index(Step.CLEANUP)
    )


def test_attached_plan_without_snapshots_mirrors_everything() -> None:
    p = plan("vol", loc(layers=1), BULK, new_id(), GiB, "server")
    assert not p.sync_top
    assert p.layers_to_copy == ()


def test_next_step_walks_the_plan_to_done() -> None:
    for server in (None, "server"):
        p = plan("vol", loc(layers=2), BULK, new_id(), GiB, server)
        seen, step = [], Step.QUEUED
        while step is not Step.DONE:
            step = p.next_step(step)
            seen.append(step)
        assert tuple(seen) == (*p.steps, Step.DONE)


# -- destination check -----------------------------------------------------------------------
def test_check_destination_refuses_the_same_backend() -> None:
    with pytest.raises(BadRequest, match="already on backend 'fast'"):
        check_destination(loc("fast"), FAST, FAST)


def test_check_destination_refuses_raw_for_a_volume_with_snapshots() -> None:
    with pytest.raises(BadRequest, match=r"raw .* 2 snapshot\(s\)"):
        check_destination(loc("fast", layers=3), FAST, RAW)


def test_check_destination_allows() -> None:
    check_destination(loc("fast", layers=3), FAST, BULK)  # qcow2 → qcow2 with snapshots
    check_destination(loc("fast", layers=1), FAST, RAW)  # flat volume → raw
    check_destination(loc("flat", layers=1, fmt=DiskFormat.RAW), RAW, FAST)  # raw → qcow2


# -- convergence -----------------------------------------------------------------------------
MiB = 1 << 20


def test_convergence_watch_is_not_stalled_while_remaining_falls() -> None:
    w = ConvergenceWatch(stall_seconds=3)
    remaining = 100 * MiB
    for t in range(20):
        assert not w.stalled(float(t), remaining)
        remaining -= 2 * MiB


def test_convergence_watch_stalls_after_stall_seconds_without_progress() -> None:
    w = ConvergenceWatch(stall_seconds=3)
    assert not w.stalled(0.0, 50 * MiB)
    assert not w.stalled(1.0, 50 * MiB)
    assert not w.stalled(2.9, 51 * MiB)  # growing dirty count is no progress
    assert w.stalled(3.0, 50 * MiB)
    assert w.stalled(10.0, 60 * MiB)


def test_convergence_watch_ignores_progress_below_min_progress() -> None:
    w = ConvergenceWatch(stall_seconds=2, min_progress=MiB)
    assert not w.stalled(0.0, 10 * MiB)
    assert not w.stalled(1.0, 10 * MiB - MiB // 2)  # half a MiB: noise
    assert w.stalled(2.0, 10 * MiB - MiB)  # exactly min_progress is not enough either


def test_convergence_watch_progress_restarts_the_clock() -> None:
    w = ConvergenceWatch(stall_seconds=3)
    assert not w.stalled(0.0, 50 * MiB)
    assert not w.stalled(2.5, 40 * MiB)  # real progress at 2.5 s
    assert not w.stalled(5.0, 40 * MiB)  # only 2.5 s since
    assert w.stalled(5.5, 40 * MiB)


# -- restart decision table ------------------------------------------------------------------
def facts(
    step: Step,
    *,
    attached: bool = True,
    committed: bool = False,
    job_exists: bool = False,
    job_failed: bool = False,
    device_on_target: bool = False,
    server_alive: bool = True,
) -> RecoveryFacts:
    return RecoveryFacts(step, attached, committed, job_exists, job_failed, device_on_target, server_alive)


@pytest.mark.parametrize("attached", [True, False])
@pytest.mark.parametrize("step", list(Step))
def test_recover_committed_always_cleans_up(step: Step, attached: bool) -> None:
    """Once the destination is committed the source is garbage, whatever else is true."""
    assert recover(facts(step, attached=attached, committed=True, server_alive=False)) is Recovery.CLEANUP


@pytest.mark.parametrize("step", [Step.CLEANUP, Step.DONE])
def test_recover_in_cleanup_cleans_up(step: Step) -> None:
    assert recover(facts(step, attached=False)) is Recovery.CLEANUP
    assert recover(facts(step, server_alive=False)) is Recovery.CLEANUP


@pytest.mark.parametrize("step", [Step.OPEN_TARGET, Step.MIRROR, Step.VERIFY_TARGET, Step.PIVOT, Step.COMMIT])
def test_recover_device_on_target_commits(step: Step) -> None:
    """The guest runs on the target: it is the only current copy; never roll back onto the source."""
    assert recover(facts(step, device_on_target=True, job_exists=False)) is Recovery.COMMIT
    assert recover(facts(step, device_on_target=True, job_exists=True, job_failed=True)) is Recovery.COMMIT


def test_recover_detached_commit_step_commits() -> None:
    assert recover(facts(Step.COMMIT, attached=False)) is Recovery.COMMIT


@pytest.mark.parametrize("step", [Step.MIRROR, Step.VERIFY_TARGET, Step.PIVOT])
def test_recover_live_job_resumes(step: Step) -> None:
    assert recover(facts(step, job_exists=True)) is Recovery.RESUME


@pytest.mark.parametrize("step", [Step.MIRROR, Step.VERIFY_TARGET, Step.PIVOT])
def test_recover_attached_without_a_healthy_job_rolls_back(step: Step) -> None:
    assert recover(facts(step, job_exists=False)) is Recovery.ROLLBACK
    assert recover(facts(step, job_exists=True, job_failed=True)) is Recovery.ROLLBACK
    assert recover(facts(step, job_exists=True, server_alive=False)) is Recovery.ROLLBACK


@pytest.mark.parametrize("step", [Step.QUEUED, Step.RESERVE, Step.COPY_LAYERS, Step.OPEN_TARGET])
def test_recover_before_the_mirror_rolls_back(step: Step) -> None:
    assert recover(facts(step, job_exists=True)) is Recovery.ROLLBACK
    assert recover(facts(step, attached=False)) is Recovery.ROLLBACK


@pytest.mark.parametrize("step", [Step.RESERVE, Step.COPY_LAYERS, Step.VERIFY_TARGET])
def test_recover_detached_before_commit_rolls_back(step: Step) -> None:
    assert recover(facts(step, attached=False, job_exists=True)) is Recovery.ROLLBACK


def test_recover_attached_commit_step_with_dead_server_does_not_roll_back() -> None:
    # Commit is entered only after the pivot was confirmed: the target holds the newest writes.
    assert recover(facts(Step.COMMIT, server_alive=False)) is Recovery.COMMIT


def test_recover_pivot_completed_in_log_with_dead_server_commits() -> None:
    f = facts(Step.PIVOT, server_alive=False)
    assert recover(f) is Recovery.ROLLBACK
    assert recover(replace(f, pivot_completed=True)) is Recovery.COMMIT
