"""Cinder's list filters per volume microversion, and `GET /resource_filters` (3.33).

Which query parameters filter a list: before 3.31 a caller's unknown filters are dropped; from 3.31
(configurable resource filters) a non-admin's unknown filter is refused with 400, as Cinder does
with its default `resource_filters.json`. From 3.34 a filter key ending in `~` matches a substring
("like"). Some filters arrive with later versions (3.4 `glance_metadata`, 3.10 `group_id`, 3.22
snapshot `metadata`) and are dropped before them. `bootable` parses strictly from 3.2.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.schemas import QueryText
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.volumes import MigrationStatus, SnapshotStatus
from ferry.services.context import RequestContext
from ferry.services.matching import Matching

RESOURCE_FILTERS: dict[str, tuple[str, ...]] = {
    "volume": (
        "name",
        "status",
        "metadata",
        "bootable",
        "migration_status",
        "availability_zone",
        "group_id",
        "size",
        "created_at",
        "updated_at",
    ),
    "snapshot": ("name", "status", "volume_id", "metadata", "availability_zone"),
    "attachment": ("volume_id", "status", "instance_id", "attach_status"),
    "message": ("resource_uuid", "resource_type", "event_id", "request_id", "message_level"),
    "pool": ("name", "volume_type"),
}
"""Cinder's default `resource_filters.json`, for the resources Ferry serves (no backups, groups,
group snapshots or transfers)."""

RESERVED = frozenset(
    {"limit", "marker", "sort", "sort_key", "sort_dir", "offset", "all_tenants", "with_count", "detail"}
)
"""Query parameters of list calls that are not filters."""

SINCE = {
    ("volume", "glance_metadata"): "3.4",
    ("volume", "group_id"): "3.10",
    ("snapshot", "metadata"): "3.22",
    ("pool", "volume_type"): "3.35",
}
ADMIN_ONLY = {"volume": ("project_id",), "snapshot": ("project_id",)}
"""Filters an admin may use (with `all_tenants`: one project's volumes) at every version."""
LEGACY = {"volume": ("glance_metadata",)}
"""Filters taken (when their version allows) although the default resource filters do not list them:
before 3.31 nothing was checked against that list."""

router = APIRouter(prefix="/volume/v3/{project_id}")


@dataclass(frozen=True)
class Asked:
    """One filter of a list request: `like` for `key~=value` (3.34)."""

    key: str
    value: str
    like: bool = False


def asked_filters(request: Request, resource: str, admin: bool) -> list[Asked]:
    """The filters of the request's query that apply, refusing (3.31+) a non-admin's unknown ones."""
    allowed = RESOURCE_FILTERS[resource]
    checked = at_least(request, "3.31", "volume") and (not admin or resource == "pool")
    likes = at_least(request, "3.34", "volume")
    out: list[Asked] = []
    invalid: list[str] = []
    for key, value in request.query_params.multi_items():
        if key in RESERVED:
            continue
        like = likes and key.endswith("~")
        name = key[:-1] if like else key
        since = SINCE.get((resource, name))
        if since is not None and not at_least(request, since, "volume"):
            continue  # not a filter yet at this version: Cinder drops it
        known = (
            name in allowed
            or (admin and name in ADMIN_ONLY.get(resource, ()))
            or (not checked and name in LEGACY.get(resource, ()))
        )
        if not known:
            if checked:
                invalid.append(key)
            continue
        out.append(Asked(name, value, like))
    if invalid:
        raise BadRequest(f"Invalid filters {', '.join(sorted(invalid))} are found in query options.")
    return out


def volume_matching(request: Request, asked: list[Asked]) -> Matching:
    """The volume filters beyond name and status equality (`VolumeFilter`'s own)."""
    equal: dict[str, Any] = {}
    like: dict[str, str] = {}
    metadata: dict[str, str] | None = None
    image: dict[str, str] | None = None
    nothing = False
    for a in asked:
        if a.like:
            if a.key in ("name", "status", "migration_status"):
                like[a.key] = a.value
            else:
                nothing = True  # Ferry's volumes hold no text in the other filtered fields
        elif a.key == "metadata":
            metadata = parse_metadata(a.value)
        elif a.key == "bootable":
            equal["bootable"] = parse_bootable(request, a.value)
        elif a.key == "migration_status":
            if a.value not in frozenset(MigrationStatus):
                nothing = True
            else:
                equal["migration_status"] = MigrationStatus(a.value)
        elif a.key == "availability_zone":
            nothing = nothing or a.value != "nova"
        elif a.key == "group_id":
            nothing = True  # no groups
        elif a.key == "glance_metadata":
            image = parse_metadata(a.value)
        elif a.key == "size":
            equal["size_gib"] = _integer(a.value, "size")
        elif a.key == "project_id":
            equal["project_id"] = a.value
        elif a.key in ("created_at", "updated_at"):
            equal[a.key] = _moment(a.value, a.key)
    return Matching(equal=equal, like=like, metadata=metadata, image_meta=image, nothing=nothing)


def snapshot_matching(asked: list[Asked]) -> Matching:
    """The snapshot filters beyond `volume_id` (the list call's own)."""
    equal: dict[str, Any] = {}
    like: dict[str, str] = {}
    metadata: dict[str, str] | None = None
    nothing = False
    for a in asked:
        if a.key == "volume_id":
            continue
        if a.like:
            if a.key in ("name", "status"):
                like[a.key] = a.value
            else:
                nothing = True
        elif a.key == "name":
            equal["name"] = a.value
        elif a.key == "status":
            if a.value not in frozenset(SnapshotStatus):
                nothing = True
            else:
                equal["status"] = SnapshotStatus(a.value)
        elif a.key == "metadata":
            metadata = parse_metadata(a.value)
        elif a.key == "availability_zone":
            nothing = nothing or a.value != "nova"
        elif a.key == "project_id":
            equal["project_id"] = a.value
    return Matching(equal=equal, like=like, metadata=metadata, nothing=nothing)


MAX_FILTER_TEXT = 65536
"""The longest metadata filter parsed: a bound on parsing cost (clients send a few pairs)."""


def parse_metadata(text: str) -> dict[str, str]:
    """A metadata filter as Cinder's clients send it: a JSON or Python-literal object of strings."""
    value: Any = None
    # Deep nesting raises RecursionError in both parsers; a bounded length keeps them cheap.
    if len(text) <= MAX_FILTER_TEXT:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            try:
                value = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadRequest(f"Invalid input: metadata filter {text[:64]!r} is not an object of strings.")
    return value


TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})
FALSE = frozenset({"0", "f", "false", "off", "n", "no"})


def parse_bootable(request: Request, text: str) -> bool:
    """Whether the `bootable` filter asks for bootable volumes. From 3.2 only true and false values
    are taken; before it, "false"/"False" ask for non-bootable volumes and anything else for
    bootable ones."""
    if not at_least(request, "3.2", "volume"):
        return text not in ("false", "False")
    folded = text.strip().lower()
    if folded not in TRUE | FALSE:
        raise BadRequest(f"Invalid input received: bootable={text[:64]}")
    return folded in TRUE


def _integer(text: str, key: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise BadRequest(f"Invalid input: filter {key} must be a non-negative integer.")
    return int(digits)


def _moment(text: str, key: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise BadRequest(f"Invalid input: filter {key} must be an ISO 8601 time.") from None


@router.get("/resource_filters")
def resource_filters(
    request: Request,
    project_id: str,
    resource: QueryText = None,
    ctx: RequestContext = Depends(deps.project_context),
) -> dict[str, Any]:
    """The filters each list resource takes (3.33; before it Cinder has no such resource)."""
    if not at_least(request, "3.33", "volume"):
        raise NotFound("The resource could not be found.")
    names = [resource] if resource else sorted(RESOURCE_FILTERS)
    return {
        "resource_filters": [
            {"resource": name, "filters": list(RESOURCE_FILTERS[name])}
            for name in names
            if name in RESOURCE_FILTERS
        ]
    }
