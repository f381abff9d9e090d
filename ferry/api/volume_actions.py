"""Cinder's volume actions beyond the life cycle (`POST …/volumes/{id}/action`): admin status
resets and force delete/detach, the bootable and read-only flags, image metadata; and the snapshot
actions at `POST …/snapshots/{id}/action` (reset status, update status, force delete).

HTTP only: each handler parses its arguments as Cinder's schema does and calls a service. The
volume route itself is `volumes.py`'s; it merges `VOLUME_ACTIONS` into its table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.actions import ACTION_ANSWERS, Handler, perform
from ferry.api.errors import parse
from ferry.api.openapi import ANY, actions
from ferry.api.schemas import Body, Pairs, VolumeUpdateBody, strict_flag
from ferry.api.views import stored
from ferry.domain.errors import BadRequest
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.metadata import MetadataService
from ferry.services.migration import MigrationService
from ferry.services.snapshots import SnapshotService
from ferry.services.volume_admin import VolumeAdmin
from ferry.services.volume_images import VolumeUploads
from ferry.services.volumes import VolumeService

router = APIRouter(prefix="/volume/v3/{project_id}")


@dataclass(frozen=True)
class VolumeActors:
    """The services a volume action calls."""

    volumes: VolumeService
    migrations: MigrationService
    admin: VolumeAdmin
    metadata: MetadataService
    compute: ComputeService
    snapshots: SnapshotService
    uploads: VolumeUploads
    in_use_extend: bool = False
    """The request's microversion is 3.42 or later: an attached volume may be extended."""
    clusters: bool = False
    """The request's microversion is 3.16 or later: os-migrate_volume takes `cluster`."""


def _object(args: Any, action: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The action's arguments as Cinder's schema takes them: an object of only these keys."""
    if not isinstance(args, dict):
        raise BadRequest(f"Invalid input: '{action}' must be an object.")
    extra = sorted(set(args) - set(allowed))
    if extra:
        raise BadRequest(f"Invalid input: '{action}' takes no {', '.join(map(repr, extra))}.")
    return args


def _required_flag(args: Any, action: str, key: str) -> bool:
    b = _object(args, action, (key,))
    if key not in b:
        raise BadRequest(f"Invalid input: '{action}' needs '{key}'.")
    return strict_flag(b[key], f"{action}.{key}")


class ResetStatusBody(Body):
    status: str | None = None
    attach_status: str | None = None
    migration_status: str | None = None


class ForceDetachBody(Body):
    connector: dict[str, Any] | str | None = None
    attachment_id: str | None = None


class FlagBody(Body):
    bootable: bool | None = None
    readonly: bool | None = None


class AttachBody(Body):
    instance_uuid: str | None = None
    mountpoint: str
    host_name: str | None = None
    mode: str = "rw"


class DetachBody(Body):
    attachment_id: str | None = None


class ImageMetadataBody(Body):
    metadata: Pairs


class UnsetImageMetadataBody(Body):
    key: str


async def _reset(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = _object(args, "os-reset_status", ("status", "attach_status", "migration_status"))
    if any(v is not None and not isinstance(v, str) for v in b.values()):
        raise BadRequest("Invalid input: os-reset_status takes strings (or null).")
    on.admin.reset_status(ctx, volume_id, b)


async def _force_delete(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await on.volumes.delete(ctx, volume_id, force=True)


async def _force_detach(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = _object(args, "os-force_detach", ("connector", "attachment_id"))
    attachment = b.get("attachment_id")
    if attachment is not None and not isinstance(attachment, str):
        raise BadRequest("Invalid input: os-force_detach.attachment_id must be a string.")
    await on.admin.force_detach(ctx, volume_id, attachment)


async def _set_bootable(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> Response:
    on.admin.set_bootable(ctx, volume_id, _required_flag(args, "os-set_bootable", "bootable"))
    return Response(status_code=200)


async def _readonly(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    on.admin.set_readonly(ctx, volume_id, _required_flag(args, "os-update_readonly_flag", "readonly"))


async def _set_image_metadata(
    on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any
) -> dict[str, Any]:
    b = _object(args, "os-set_image_metadata", ("metadata",))
    if not isinstance(b.get("metadata"), dict):
        raise BadRequest("Invalid input: os-set_image_metadata needs a 'metadata' object.")
    pairs = parse(VolumeUpdateBody, {"metadata": b["metadata"]}, "os-set_image_metadata").metadata or {}
    return {"metadata": stored(on.metadata.set_image_metadata(ctx, volume_id, pairs))}


async def _unset_image_metadata(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> Response:
    b = _object(args, "os-unset_image_metadata", ("key",))
    key = b.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        raise BadRequest("Invalid input: os-unset_image_metadata needs a 'key' of 1 to 255 characters.")
    on.metadata.unset_image_metadata(ctx, volume_id, key)
    return Response(status_code=200)


async def _show_image_metadata(
    on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any
) -> dict[str, Any]:
    return {"metadata": stored(on.metadata.image_metadata(ctx, volume_id))}


async def _attach(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    """Cinder's `os-attach` for a server: Ferry plugs the disk into it, as Nova's attach does
    (Ferry is the hypervisor too); the device is the one Ferry picks, not `mountpoint`."""
    b = _object(args, "os-attach", ("instance_uuid", "mountpoint", "host_name", "mode"))
    server = b.get("instance_uuid")
    if not isinstance(b.get("mountpoint"), str) or not b["mountpoint"]:
        raise BadRequest("Invalid input: os-attach needs a 'mountpoint'.")
    if b.get("mode", "rw") not in ("rw", "ro"):
        raise BadRequest("Invalid input: os-attach 'mode' is rw or ro.")
    if not isinstance(server, str) or not server:
        raise BadRequest(
            "Invalid input: os-attach needs an 'instance_uuid' (Ferry attaches to servers only)."
        )
    await on.compute.attach(ctx, server, volume_id)


async def _detach(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = _object(args if args is not None else {}, "os-detach", ("attachment_id",))
    wanted = b.get("attachment_id")
    att = on.volumes.attachments([on.volumes.get(ctx, volume_id).id]).get(volume_id)
    if att is None and wanted is None:
        on.admin.settle_unattached(ctx, volume_id)  # Cinder: "detach called, but volume not attached"
        return
    if att is None or (wanted is not None and att.id != wanted):
        raise BadRequest(f"Error detaching volume {volume_id}: it has no such attachment.")
    await on.compute.detach(ctx, att.server_id, volume_id)


async def _reserve(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    on.admin.reserve(ctx, volume_id, True)


async def _unreserve(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    on.admin.reserve(ctx, volume_id, False)


async def _begin_detaching(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    on.admin.mark_detaching(ctx, volume_id, True)


async def _roll_detaching(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    on.admin.mark_detaching(ctx, volume_id, False)


VOLUME_ACTIONS: dict[str, Handler[VolumeActors]] = {
    "os-attach": _attach,
    "os-begin_detaching": _begin_detaching,
    "os-detach": _detach,
    "os-reserve": _reserve,
    "os-roll_detaching": _roll_detaching,
    "os-unreserve": _unreserve,
    "os-force_delete": _force_delete,
    "os-force_detach": _force_detach,
    "os-reset_status": _reset,
    "os-set_bootable": _set_bootable,
    "os-set_image_metadata": _set_image_metadata,
    "os-show_image_metadata": _show_image_metadata,
    "os-unset_image_metadata": _unset_image_metadata,
    "os-update_readonly_flag": _readonly,
}
VOLUME_ARGUMENTS: dict[str, Any] = {
    "os-attach": AttachBody,
    "os-begin_detaching": ANY,
    "os-detach": DetachBody,
    "os-reserve": ANY,
    "os-roll_detaching": ANY,
    "os-unreserve": ANY,
    "os-force_delete": ANY,
    "os-force_detach": ForceDetachBody,
    "os-reset_status": ResetStatusBody,
    "os-set_bootable": FlagBody,
    "os-set_image_metadata": ImageMetadataBody,
    "os-show_image_metadata": ANY,
    "os-unset_image_metadata": UnsetImageMetadataBody,
    "os-update_readonly_flag": FlagBody,
}
assert VOLUME_ACTIONS.keys() == VOLUME_ARGUMENTS.keys()


# -- snapshot actions ----------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotActors:
    snapshots: SnapshotService
    admin: VolumeAdmin


class SnapshotStatusBody(Body):
    status: str
    progress: str | None = None


async def _snap_reset(on: SnapshotActors, ctx: RequestContext, snapshot_id: str, args: Any) -> None:
    b = _object(args, "os-reset_status", ("status",))
    on.admin.reset_snapshot_status(ctx, snapshot_id, b.get("status"))


async def _snap_update(on: SnapshotActors, ctx: RequestContext, snapshot_id: str, args: Any) -> None:
    on.admin.update_snapshot_status(
        ctx, snapshot_id, _object(args, "os-update_snapshot_status", ("status", "progress"))
    )


async def _snap_force_delete(on: SnapshotActors, ctx: RequestContext, snapshot_id: str, args: Any) -> None:
    await on.snapshots.force_delete(ctx, snapshot_id)


SNAPSHOT_ACTIONS: dict[str, Handler[SnapshotActors]] = {
    "os-force_delete": _snap_force_delete,
    "os-reset_status": _snap_reset,
    "os-update_snapshot_status": _snap_update,
}
SNAPSHOT_ARGUMENTS: dict[str, Any] = {
    "os-force_delete": ANY,
    "os-reset_status": SnapshotStatusBody,
    "os-update_snapshot_status": SnapshotStatusBody,
}


@router.post(
    "/snapshots/{snapshot_id}/action",
    status_code=202,
    responses=ACTION_ANSWERS,
    openapi_extra=actions(SNAPSHOT_ARGUMENTS),
)
async def snapshot_action(
    request: Request,
    project_id: str,
    snapshot_id: str,
    ctx: RequestContext = Depends(deps.project_context),
    snapshots: SnapshotService = Depends(deps.snapshots),
    admin: VolumeAdmin = Depends(deps.volume_admin),
) -> Response:
    return await perform(
        request, "snapshot", SNAPSHOT_ACTIONS, SnapshotActors(snapshots, admin), ctx, snapshot_id
    )
