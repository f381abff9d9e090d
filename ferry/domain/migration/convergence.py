"""When a mirror is done and when it has stalled: pure rules, fed samples and the caller's clock."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


def converged(ready: bool, actively_synced: bool, write_blocking: bool) -> bool:
    """Ready to pivot: READY, and in write-blocking mode also actively synced (every guest write
    now reaches both sides). The one rule both the machine's decision and the driver wait use."""
    return ready and (actively_synced or not write_blocking)


class MirrorCondition(StrEnum):
    """What a driver's `wait_mirror` waits for, by name: a condition, unlike a callable, can be
    sent to the agent of another host."""

    READY = "ready"
    """The job reached READY (the first full pass is done)."""
    CONVERGED = "converged"
    """`converged()`: ready to pivot."""

    def holds(self, ready: bool, actively_synced: bool, write_blocking: bool) -> bool:
        if self is MirrorCondition.READY:
            return ready
        return converged(ready, actively_synced, write_blocking)


@dataclass
class ConvergenceWatch:
    """Decides when a background mirror has stalled: the bytes left to copy have not fallen by
    at least `min_progress` for `stall_seconds`. Fed samples; no clock of its own."""

    stall_seconds: float
    min_progress: int = 1 << 20
    _best: int | None = None
    _since: float = 0.0

    def stalled(self, now: float, remaining: int) -> bool:
        if self._best is None or remaining < self._best - self.min_progress:
            self._best, self._since = remaining, now
            return False
        return now - self._since >= self.stall_seconds
