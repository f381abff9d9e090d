"""How an interrupted live migration is settled (docs/recovery.md, "Server live migration"):
from what each host's QEMU says now, decide which one guest keeps running — never two, never
none. Pure: fed facts, returns a decision.

The one rule underneath: the guest runs where QEMU says it runs. Before the switchover the
source holds it (the destination is only waiting: drop it); after a completed switchover the
destination does (record it, quit the source); a source still paused after the switchover with no
destination running is resumed (QEMU's return path: the destination never started).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

RUNNING_STATES = ("running",)
"""QEMU run states in which the guest executes."""


class LiveOutcome(StrEnum):
    ROLL_BACK = "roll-back"
    """Cancel the outgoing migration, drop the destination, the guest stays on the source."""
    RESUME_SOURCE = "resume-source"
    """The switchover happened but the destination does not run: resume the source, drop it."""
    COMMIT = "commit"
    """The destination runs the guest: record its host, quit the source."""
    CLEANUP = "cleanup"
    """Already recorded: only the source may be left to quit."""
    LOST = "lost"
    """Neither host runs the guest: the server is in error (nothing can bring its RAM back)."""


@dataclass(frozen=True)
class LiveFacts:
    committed: bool
    """The database already names the destination as the server's host."""
    source: str | None
    """The source QEMU's run state (`running`, `paused`, `postmigrate`, …); None: not running."""
    destination: str | None
    """The destination QEMU's run state (`inmigrate` while waiting); None: not running."""


@dataclass(frozen=True)
class LiveDecision:
    outcome: LiveOutcome
    why: str


def settle_live(f: LiveFacts) -> LiveDecision:
    if f.committed:
        return LiveDecision(LiveOutcome.CLEANUP, "the destination was recorded as the server's host")
    if f.destination in RUNNING_STATES and f.source in (None, "postmigrate"):
        return LiveDecision(LiveOutcome.COMMIT, "the destination runs the guest; the source handed it over")
    if f.source is None:
        if f.destination is None:
            return LiveDecision(LiveOutcome.LOST, "neither host runs the guest")
        return LiveDecision(LiveOutcome.LOST, f"the source died and the destination is {f.destination}")
    if f.source == "postmigrate":
        return LiveDecision(
            LiveOutcome.RESUME_SOURCE, "the switchover ended but the destination does not run"
        )
    return LiveDecision(LiveOutcome.ROLL_BACK, f"the source still runs the guest ({f.source})")
