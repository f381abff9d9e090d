"""The start-up settling tables of docs/recovery.md, row by row, without I/O."""

from __future__ import annotations

import pytest

from ferry.domain.model import GiB
from ferry.domain.servers import ServerStatus, ServerTaskState
from ferry.domain.settling import (
    UNSETTLED_VOLUME,
    Outcome,
    ServerFacts,
    VolumeFacts,
    settle_server,
    settle_volume,
)
from ferry.domain.volumes import VolumeStatus

V = VolumeStatus
WHOLE_1 = {"file_present": True, "file_sound": True, "file_size": 1 * GiB}
WHOLE_2 = {"file_present": True, "file_sound": True, "file_size": 2 * GiB}
DAMAGED = {"file_present": True, "file_sound": False, "file_size": None}
LIVE = {"attached": True, "plugged": True}
"""An in-use extend under a running guest: QEMU's size of the disk decides, not the file."""


@pytest.mark.parametrize(
    ("status", "facts", "outcome", "settled", "size"),
    [
        (V.CREATING, WHOLE_1, Outcome.COMPLETE, V.AVAILABLE, None),
        (V.CREATING, {}, Outcome.FAIL, V.ERROR, None),
        (V.CREATING, DAMAGED, Outcome.FAIL, V.ERROR, None),
        (V.CREATING, WHOLE_2, Outcome.FAIL, V.ERROR, None),
        (V.EXTENDING, WHOLE_2, Outcome.COMPLETE, V.AVAILABLE, 2),
        (V.EXTENDING, WHOLE_1, Outcome.ROLL_BACK, V.AVAILABLE, None),
        (V.EXTENDING, DAMAGED, Outcome.FAIL, V.ERROR, None),
        (V.EXTENDING, {}, Outcome.FAIL, V.ERROR, None),
        (V.EXTENDING, {**LIVE, "disk_size": 2 * GiB}, Outcome.COMPLETE, V.IN_USE, 2),
        (V.EXTENDING, {**LIVE, "disk_size": 1 * GiB}, Outcome.ROLL_BACK, V.IN_USE, None),
        (V.EXTENDING, {**LIVE, "disk_size": 3 * GiB}, Outcome.FAIL, V.ERROR, None),
        # QEMU's size wins over a file read behind its back (here: the header looks unchanged)
        (V.EXTENDING, {**LIVE, **WHOLE_1, "disk_size": 2 * GiB}, Outcome.COMPLETE, V.IN_USE, 2),
        (V.EXTENDING, {**LIVE, **DAMAGED, "disk_size": 1 * GiB}, Outcome.ROLL_BACK, V.IN_USE, None),
        # attached to a shut-off server (or a dead QEMU): the file decides, back to in-use
        (V.EXTENDING, {"attached": True, **WHOLE_2}, Outcome.COMPLETE, V.IN_USE, 2),
        (V.EXTENDING, {"attached": True, **WHOLE_1}, Outcome.ROLL_BACK, V.IN_USE, None),
        (V.EXTENDING, {"attached": True, **DAMAGED}, Outcome.FAIL, V.ERROR, None),
        # plugged but the hypervisor reports no size: the file decides
        (V.EXTENDING, {**LIVE, **WHOLE_2}, Outcome.COMPLETE, V.IN_USE, 2),
        (V.DELETING, {}, Outcome.COMPLETE, None, None),
        (V.DELETING, WHOLE_1, Outcome.COMPLETE, None, None),
        (V.ATTACHING, {"attached": True, "plugged": True}, Outcome.COMPLETE, V.IN_USE, None),
        (V.ATTACHING, {"attached": True}, Outcome.ROLL_BACK, V.AVAILABLE, None),
        (V.DETACHING, {"attached": True, "plugged": True}, Outcome.ROLL_BACK, V.IN_USE, None),
        (V.DETACHING, {"attached": True}, Outcome.COMPLETE, V.AVAILABLE, None),
        (V.AVAILABLE, WHOLE_1, Outcome.LEAVE, V.AVAILABLE, None),
        (V.ERROR, {}, Outcome.LEAVE, V.ERROR, None),
    ],
)
def test_volume_table(
    status: VolumeStatus,
    facts: dict[str, object],
    outcome: Outcome,
    settled: VolumeStatus | None,
    size: int | None,
) -> None:
    d = settle_volume(VolumeFacts(status=status, size_gib=1, target_size_gib=2, **facts))  # type: ignore[arg-type]
    assert (d.outcome, d.status, d.size_gib) == (outcome, settled, size), d.why
    assert d.why


@pytest.mark.parametrize("status", UNSETTLED_VOLUME)
def test_a_volume_a_migration_holds_is_left_to_it(status: VolumeStatus) -> None:
    d = settle_volume(VolumeFacts(status=status, size_gib=1, migrating=True, **WHOLE_1))  # type: ignore[arg-type]
    assert d.outcome is Outcome.LEAVE and d.status is status


def test_an_extend_without_a_recorded_target_is_never_completed() -> None:
    d = settle_volume(VolumeFacts(status=V.EXTENDING, size_gib=1, **WHOLE_2))  # type: ignore[arg-type]
    assert d.outcome is Outcome.FAIL and d.status is V.ERROR


@pytest.mark.parametrize("status", UNSETTLED_VOLUME)
@pytest.mark.parametrize("present", [True, False])
def test_no_volume_is_left_transitional(status: VolumeStatus, present: bool) -> None:
    facts = WHOLE_1 if present else {}
    d = settle_volume(VolumeFacts(status=status, size_gib=1, target_size_gib=2, **facts))  # type: ignore[arg-type]
    assert d.status not in UNSETTLED_VOLUME
    if d.outcome is Outcome.FAIL:
        assert d.status is V.ERROR  # the way out: delete is allowed from error


S, T = ServerStatus, ServerTaskState


@pytest.mark.parametrize(
    ("status", "task", "running", "migrating", "outcome", "settled"),
    [
        (S.BUILD, T.SPAWNING, True, False, Outcome.COMPLETE, S.ACTIVE),
        (S.BUILD, T.SPAWNING, False, False, Outcome.FAIL, S.ERROR),
        (S.ACTIVE, T.POWERING_OFF, True, False, Outcome.ROLL_BACK, S.ACTIVE),
        (S.ACTIVE, T.POWERING_OFF, False, False, Outcome.COMPLETE, S.SHUTOFF),
        (S.SHUTOFF, T.POWERING_ON, True, False, Outcome.COMPLETE, S.ACTIVE),
        (S.SHUTOFF, T.POWERING_ON, False, False, Outcome.ROLL_BACK, S.SHUTOFF),
        (S.ACTIVE, T.REBOOTING, True, False, Outcome.COMPLETE, S.ACTIVE),
        (S.ACTIVE, T.REBOOTING, False, False, Outcome.FAIL, S.SHUTOFF),
        (S.ACTIVE, T.DELETING, True, False, Outcome.COMPLETE, None),
        (S.SHUTOFF, T.DELETING, False, False, Outcome.COMPLETE, None),
        (S.ACTIVE, T.DELETING, True, True, Outcome.ROLL_BACK, S.ACTIVE),
        (S.ACTIVE, T.DELETING, False, True, Outcome.ROLL_BACK, S.SHUTOFF),
        (S.ACTIVE, None, True, False, Outcome.LEAVE, S.ACTIVE),
        (S.REBOOT, None, True, False, Outcome.LEAVE, S.ACTIVE),
        (S.ACTIVE, None, False, False, Outcome.ROLL_BACK, S.SHUTOFF),
        (S.SHUTOFF, None, False, False, Outcome.LEAVE, S.SHUTOFF),
        (S.ERROR, None, False, False, Outcome.LEAVE, S.ERROR),
    ],
)
def test_server_table(
    status: ServerStatus,
    task: ServerTaskState | None,
    running: bool,
    migrating: bool,
    outcome: Outcome,
    settled: ServerStatus | None,
) -> None:
    d = settle_server(ServerFacts(status, task, running, migrating))
    assert (d.outcome, d.status) == (outcome, settled), d.why
    if d.outcome is Outcome.FAIL:
        assert d.fault  # the user reads why on the server
