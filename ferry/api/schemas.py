"""Request input: bodies and query flags. Strict types: a size is a whole number, never a bool or a float."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

Name = Field(default=None, max_length=255)
Text = Field(default=None, max_length=4096)


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _meta(v: object) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ValueError("metadata must be an object of string keys and string values")
    return v


class VolumeCreateBody(Body):
    size: StrictInt | None = None
    name: str | None = Name
    description: str | None = Text
    volume_type: str | None = Field(default=None, max_length=255)
    metadata: dict[str, str] = Field(default_factory=dict)
    snapshot_id: str | None = None
    source_volid: str | None = None
    availability_zone: str | None = None

    _m = field_validator("metadata", mode="before")(_meta)

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        # Cinder accepts "10" as well as 10; nothing else.
        if isinstance(v, str) and v.isdigit():
            return int(v)
        return v


class VolumeUpdateBody(Body):
    name: str | None = Name
    description: str | None = Text
    metadata: dict[str, str] | None = None

    _m = field_validator("metadata", mode="before")(_meta)


class SnapshotCreateBody(Body):
    volume_id: str
    name: str | None = Name
    description: str | None = Text
    metadata: dict[str, str] = Field(default_factory=dict)
    force: StrictBool | str | None = None

    _m = field_validator("metadata", mode="before")(_meta)


class SnapshotUpdateBody(Body):
    name: str | None = Name
    description: str | None = Text
    metadata: dict[str, str] | None = None

    _m = field_validator("metadata", mode="before")(_meta)


class TypeCreateBody(Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Text
    is_public: StrictBool = Field(default=True, alias="os-volume-type-access:is_public")
    extra_specs: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TypeUpdateBody(Body):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Text
    is_public: StrictBool | None = None


class ExtendBody(Body):
    new_size: StrictInt


class MigrateBody(Body):
    host: str = Field(min_length=1, max_length=255)
    force_host_copy: StrictBool = False
    lock_volume: StrictBool = False
    bytes_per_sec: StrictInt | None = Field(default=None, ge=0)
    """Ferry extension: cap the copy speed from the start (0 = unlimited)."""


class RetypeBody(Body):
    new_type: str = Field(min_length=1, max_length=255)
    migration_policy: str = "never"


class SetSpeedBody(Body):
    bytes_per_sec: StrictInt = Field(ge=0)


class MigrationCompletionBody(Body):
    new_volume: str
    error: StrictBool = False


def flag(value: str | None) -> bool:
    """A boolean query parameter as OpenStack clients send it (`?cascade=true`, `?detail=1`)."""
    return (value or "").lower() in ("1", "true", "yes", "on")
