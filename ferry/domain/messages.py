"""User messages: what an asynchronous failure tells the project that asked (Cinder's
`cinder/message/message_field.py`). A message names a resource, an action and a detail by
Cinder's codes; its event id and text are derived from them, never from an exception's text (which
may say more than a project should read). Pure tables, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum


class Resource(StrEnum):
    VOLUME = "VOLUME"
    VOLUME_SNAPSHOT = "VOLUME_SNAPSHOT"


class Action(Enum):
    """(code, text), Cinder's; MIGRATE_VOLUME is Ferry's (Cinder leaves no message for a failed
    migration), numbered past Cinder's range so that it never collides with one Cinder adds."""

    SCHEDULE_ALLOCATE_VOLUME = ("001", "schedule allocate volume")
    EXTEND_VOLUME = ("007", "extend volume")
    CREATE_VOLUME_FROM_BACKEND = ("008", "create volume from backend storage")
    SNAPSHOT_CREATE = ("009", "create snapshot")
    SNAPSHOT_DELETE = ("010", "delete snapshot")
    MIGRATE_VOLUME = ("101", "migrate volume")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def text(self) -> str:
        return self.value[1]


class Detail(Enum):
    UNKNOWN_ERROR = ("001", "An unknown error occurred.")
    NO_BACKEND_AVAILABLE = ("003", "Could not find any available weighted backend.")
    DRIVER_FAILED_EXTEND = ("010", "Volume Driver failed to extend volume.")
    DRIVER_FAILED_CREATE = ("012", "Driver failed to create the volume.")
    SNAPSHOT_CREATE_ERROR = ("013", "Snapshot failed to create.")
    SNAPSHOT_DELETE_ERROR = ("016", "Snapshot failed to delete.")
    MIGRATION_ROLLED_BACK = (
        "101",
        "Migration failed and was rolled back; the volume stays on its source backend.",
    )
    MIGRATION_ABANDONED = ("102", "Migration failed; an administrator must check the volume.")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def text(self) -> str:
        return self.value[1]


class Level(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


@dataclass(frozen=True)
class Event:
    """What happened to which kind of resource: the message's codes."""

    resource: Resource
    action: Action
    detail: Detail

    @property
    def event_id(self) -> str:
        """Cinder's `VOLUME_<resource>_<action>_<detail>`, e.g. VOLUME_VOLUME_001_003."""
        return f"VOLUME_{self.resource.value}_{self.action.code}_{self.detail.code}"


NO_VALID_BACKEND = Event(Resource.VOLUME, Action.SCHEDULE_ALLOCATE_VOLUME, Detail.NO_BACKEND_AVAILABLE)
CREATE_FAILED = Event(Resource.VOLUME, Action.CREATE_VOLUME_FROM_BACKEND, Detail.DRIVER_FAILED_CREATE)
EXTEND_FAILED = Event(Resource.VOLUME, Action.EXTEND_VOLUME, Detail.DRIVER_FAILED_EXTEND)
SNAPSHOT_FAILED = Event(Resource.VOLUME_SNAPSHOT, Action.SNAPSHOT_CREATE, Detail.SNAPSHOT_CREATE_ERROR)
SNAPSHOT_DELETE_FAILED = Event(Resource.VOLUME_SNAPSHOT, Action.SNAPSHOT_DELETE, Detail.SNAPSHOT_DELETE_ERROR)
MIGRATION_FAILED = Event(Resource.VOLUME, Action.MIGRATE_VOLUME, Detail.MIGRATION_ROLLED_BACK)
MIGRATION_ABANDONED = Event(Resource.VOLUME, Action.MIGRATE_VOLUME, Detail.MIGRATION_ABANDONED)

_ACTIONS = {a.code: a for a in Action}
_DETAILS = {d.code: d for d in Detail}


def user_message(action_code: str, detail_code: str) -> str:
    """Cinder's `"<action text>:<detail text>"`, from the stored codes."""
    action = _ACTIONS.get(action_code)
    detail = _DETAILS.get(detail_code, Detail.UNKNOWN_ERROR)
    return f"{action.text if action else 'unknown action'}:{detail.text}"


def guaranteed_until(created: datetime, ttl_s: int) -> datetime:
    return created + timedelta(seconds=ttl_s)


FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")
"""The list filters Cinder accepts for messages (its resource_filters.json)."""
SORT_KEYS = {
    "created_at": "created_at",
    "id": "id",
    "event_id": "event_id",
    "message_level": "message_level",
    "resource_type": "resource_type",
    "resource_uuid": "resource_uuid",
    "request_id": "request_id",
    "guaranteed_until": "expires_at",
    "expires_at": "expires_at",
}
"""Sort keys (as the API names them) and the column each sorts by."""
