"""Which fields of a block storage view each volume microversion shows.

Cinder's v3 view builders add fields as microversions go on (and some for admins only); tempest's
schemas forbid additional properties, so a field shown before its version is a failure. The views
(`views.py`) render every field Ferry has; `gated` removes the ones the request's microversion, or
the caller, may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ferry.api.versions import at_least


@dataclass(frozen=True)
class Gate:
    """`field` is shown from volume microversion `since`; with `admin`, to admins only."""

    field: str
    since: str
    admin: bool = False


VOLUME_GATES = (
    Gate("group_id", "3.13"),
    Gate("provider_id", "3.21", admin=True),
    Gate("service_uuid", "3.48"),
    Gate("shared_targets", "3.48"),
    Gate("cluster_name", "3.61", admin=True),
    Gate("volume_type_id", "3.63"),
)
"""Cinder's `views/volumes.py` (v3): 3.13 generic groups, 3.21 provider id, 3.48 shared targets and
service uuid, 3.61 cluster name, 3.63 type id. (3.64's encryption_key_id is shown for encrypted
volumes only: Ferry has none.)"""

SNAPSHOT_GATES = (
    Gate("group_snapshot_id", "3.14"),
    Gate("user_id", "3.41"),
)
"""Cinder's `views/snapshots.py` (v3): 3.14 group snapshots, 3.41 the creating user."""


def gated(
    request: Request, views: list[dict[str, Any]], gates: tuple[Gate, ...], *, admin: bool
) -> list[dict[str, Any]]:
    """The views without the fields the request's microversion (or the caller) may not see."""
    hidden = [g.field for g in gates if (g.admin and not admin) or not at_least(request, g.since, "volume")]
    for view in views:
        for field in hidden:
            view.pop(field, None)
    return views
