"""Request input: the rules every string and number must meet, bodies and query flags.

Strict types: a size is a whole number, never a bool or a float. Every string that reaches the
database or a log meets `text_problem` (checked on every body by `errors.json_body` and on every
URL by `deps.context`); the models add Cinder's lengths (names, descriptions, metadata keys and
values: 255). Numbers are 64-bit at most (`INT64_MIN`..`INT64_MAX`): the database's widest column.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from ferry.domain.errors import BadRequest

MAX_TEXT = 255
"""Cinder's limit on names, descriptions, metadata and extra-spec keys and values."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Name = Field(default=None, max_length=MAX_TEXT)
Text = Field(default=None, max_length=MAX_TEXT)
Key = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Value = Annotated[str, Field(max_length=MAX_TEXT)]
Pairs = dict[Key, Value]
"""Metadata and extra specs (checked by `string_pairs`; the types document it in the OpenAPI)."""
Tag = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[^,/]*$")]
"""A server tag (Nova's 2.26): 1 to 60 characters, neither ',' nor '/'."""
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A query parameter that counts or offsets (`limit`, `offset`)."""
QueryText = Annotated[str | None, Query(max_length=MAX_TEXT)]
"""A text query parameter (filters, markers, sort keys)."""


def text_problem(value: str) -> str | None:
    """Why `value` may not be stored or logged, or None: PostgreSQL refuses NUL characters, and a
    lone surrogate (valid JSON: `"\\ud800"`) is not UTF-8 at all."""
    if "\x00" in value:
        return "strings must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must be valid UTF-8 (no lone surrogates)"
    return None


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def string_pairs(v: object, what: str) -> dict[str, str]:
    """A free-form object of strings (metadata, extra specs) as Cinder takes it: keys of 1 to 255
    characters, values of at most 255. Raises ValueError naming the offending key."""
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ValueError(f"{what} must be an object of string keys and string values")
    for key, value in v.items():
        if not 1 <= len(key) <= MAX_TEXT:
            raise ValueError(f"{what} keys must be 1 to {MAX_TEXT} characters long: {key[:40]!r}")
        if len(value) > MAX_TEXT:
            raise ValueError(f"{what} value of {key[:40]!r} is longer than {MAX_TEXT} characters")
    return v


METADATA_KEY = re.compile(r"[a-zA-Z0-9\-_:. /]{1,255}")
"""Cinder's metadata keys (`parameter_types.extra_specs`): letters, digits and `-_:. /`."""


def _meta(v: object) -> dict[str, str]:
    pairs = {} if v is None else string_pairs(v, "metadata")
    for key in pairs:
        if not METADATA_KEY.fullmatch(key):
            raise ValueError(f"metadata keys hold only letters, digits and '-_:. /': {key[:40]!r}")
    return pairs


def _specs(v: object) -> dict[str, str]:
    return string_pairs(v, "extra_specs")


class VolumeCreateBody(Body):
    size: StrictInt | None = None
    name: str | None = Name
    description: str | None = Text
    volume_type: str | None = Name
    metadata: Pairs = Field(default_factory=dict)
    snapshot_id: str | None = Name
    source_volid: str | None = Name
    imageRef: str | None = Name
    availability_zone: str | None = Name

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
    metadata: Pairs | None = None

    _m = field_validator("metadata", mode="before")(_meta)


class SnapshotCreateBody(Body):
    volume_id: str | None = Field(default=None, max_length=MAX_TEXT)
    name: str | None = Name
    description: str | None = Text
    metadata: Pairs = Field(default_factory=dict)
    force: StrictBool | Value | None = None

    _m = field_validator("metadata", mode="before")(_meta)


class SnapshotUpdateBody(Body):
    name: str | None = Name
    description: str | None = Text
    metadata: Pairs | None = None

    _m = field_validator("metadata", mode="before")(_meta)


class TypeCreateBody(Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Text
    is_public: StrictBool = Field(default=True, alias="os-volume-type-access:is_public")
    extra_specs: Pairs = Field(default_factory=dict)

    _s = field_validator("extra_specs", mode="before")(_specs)

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
    bytes_per_sec: StrictInt | None = Field(default=None, ge=0, le=INT64_MAX)
    """Ferry extension: cap the copy speed from the start (0 = unlimited)."""


class RevertBody(Body):
    snapshot_id: str = Field(min_length=1, max_length=255)


class RetypeBody(Body):
    new_type: str = Field(min_length=1, max_length=255)
    migration_policy: str = Field(default="never", max_length=MAX_TEXT)


class SetSpeedBody(Body):
    bytes_per_sec: StrictInt = Field(ge=0, le=INT64_MAX)


class MigrationCompletionBody(Body):
    new_volume: str = Field(max_length=MAX_TEXT)
    error: StrictBool = False


TRUE_WORDS = ("1", "true", "t", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "f", "no", "n", "off")


def strict_flag(value: object, what: str) -> bool:
    """A boolean as Cinder's `parameter_types.boolean` takes it: true or false, or one of the
    words for them (`"True"`, `"yes"`, `"0"` …); anything else is a 400 naming `what`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise BadRequest(f"Invalid input: {what} must be a boolean, not {str(value)[:40]!r}.")


def metadata_filter(text: str | None) -> dict[str, str] | None:
    """The `metadata` list filter: a dict of strings written as JSON or as a Python literal
    (`{'k': 'v'}`: what clients that urlencode a dict send, and what Cinder evaluates)."""
    if text is None:
        return None
    parsed: object = None
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise BadRequest('Invalid input: the metadata filter must be an object of strings: {"k": "v"}.')
    return parsed


def flag(value: str | None) -> bool:
    """A boolean query parameter as OpenStack clients send it (`?cascade=true`, `?detail=1`)."""
    return (value or "").lower() in ("1", "true", "yes", "on")
