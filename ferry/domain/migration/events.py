"""The step log's vocabulary: every kind of entry a migration writes, and the sentence each one reads
as. Clients read the kind and its typed detail fields, never the sentence."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    START = "start"
    """A step records its intent (and everything it will create) before it acts."""
    DONE = "done"
    LAYER_COPIED = "layer-copied"
    COPY_MODE_SWITCHED = "copy-mode-switched"
    PIVOT_COMPLETED = "pivot-completed"
    """`job-complete` returned: from here on the guest may write to the destination only."""
    SERIAL_CHECKED = "serial-checked"
    SPEED_CHANGED = "speed-changed"
    CANCEL_REQUESTED = "cancel-requested"
    RESTARTED = "restarted"
    ROLLBACK_DONE = "rollback-done"
    NOTE = "note"
    """Anything else worth telling the operator; its detail carries the message."""


MESSAGES: dict[EventKind, str] = {
    EventKind.LAYER_COPIED: "layer copied and compared",
    EventKind.COPY_MODE_SWITCHED: "copy mode switched to write-blocking",
    EventKind.PIVOT_COMPLETED: "mirror job completed: the guest runs on the destination",
    EventKind.SERIAL_CHECKED: "serial checked",
    EventKind.SPEED_CHANGED: "speed changed",
    EventKind.CANCEL_REQUESTED: "cancel requested",
    EventKind.RESTARTED: "control plane restarted",
}
"""The human sentence stored beside a kind (as the entry's `message`), for people reading the log."""
