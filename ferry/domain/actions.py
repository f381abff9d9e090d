"""The life of an action addressed to a host (`ferry.coordination`): its states, pure.

queued -> claimed (an agent holds it under a lease) -> done | failed. A claimed action whose lease
ran out (its agent died) may be claimed again; a graceful agent stop puts it back to queued.
"""

from __future__ import annotations

from enum import StrEnum


class ActionState(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (ActionState.DONE, ActionState.FAILED)
