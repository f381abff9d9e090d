"""Values of a server's live migration as the hypervisor contract speaks them (DESIGN §10).

Pure values: the QEMU driver (`drivers/hypervisor/qemu/live.py`) maps `query-migrate` onto
them; the conductor's machine (`domain/server_migration`) decides from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LiveState(StrEnum):
    """QEMU's MigrationStatus, the states Ferry reads (others map to `ACTIVE`)."""

    NONE = "none"
    SETUP = "setup"
    ACTIVE = "active"
    PRE_SWITCHOVER = "pre-switchover"
    DEVICE = "device"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (LiveState.COMPLETED, LiveState.FAILED, LiveState.CANCELLED)


@dataclass(frozen=True)
class DiskSlot:
    """Where a volume's disk sits in the guest: the root port its device is plugged into. The
    destination puts every disk in the same slot, so the guest sees the same PCI topology."""

    volume_id: str
    port: str


@dataclass(frozen=True)
class LiveSettings:
    """Limits of one live migration: bytes per second (0: unlimited) and the longest pause the
    switchover may take (ms). Changeable while it runs."""

    bandwidth: int = 0
    downtime_ms: int = 300


@dataclass(frozen=True)
class LiveProgress:
    """The source's view of a live migration (`query-migrate`)."""

    state: LiveState
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    dirty_rate: int = 0
    """Pages dirtied per second, in bytes."""
    expected_downtime_ms: int = 0
    downtime_ms: int | None = None
    """The measured pause of the switchover, once completed."""
    total_ms: int | None = None
    error: str | None = None
