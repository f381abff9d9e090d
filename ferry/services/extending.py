"""Extending an attached volume (Cinder 3.42 with Nova's volume-extended event): which server
must grow the disk, and what the volume service needs from the compute side to do it live.

The volume service owns the extend itself (`VolumeService.extend`); this module owns the rule on
the server (ACTIVE or SHUTOFF, no task) and the claim that keeps a task from starting meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from ferry.db.models import Attachment, Server, Volume
from ferry.db.statements import updated_one
from ferry.domain.errors import Conflict
from ferry.domain.servers import ServerStatus
from ferry.domain.volumes import VolumeStatus
from ferry.services.context import RequestContext
from ferry.services.queries import attachment_of


@dataclass(frozen=True)
class ServerClaim:
    """The server an attached volume's extend is recorded on, and whether its QEMU runs (then
    that process must grow the disk: it has the image open)."""

    server_id: str
    running: bool


def claim_server(s: Session, volume_id: str) -> ServerClaim:
    """For an attached volume's extend: its server, running (its QEMU must grow the disk) or shut
    off (no process has the image open). Refused while the server is busy with a
    life-cycle task or in a status with no settled process (Nova grows a disk only under an
    ACTIVE or SHUTOFF guest). The no-op write on the server's row orders this claim with a
    concurrent task claim (`ComputeService._claim` refuses while a volume is `extending`)."""
    att = attachment_of(s, volume_id)
    server = s.get(Server, att.server_id) if att is not None else None
    if server is None:
        raise Conflict(f"Volume {volume_id} is in-use but attached to no server; retry.")
    busy = f"busy ({server.task_state})" if server.task_state else str(server.status)
    refused = Conflict(
        f"Cannot extend volume {volume_id}: its server {server.id} is {busy}; an attached volume "
        "is extended while its server is ACTIVE or SHUTOFF with no task in progress."
    )
    if server.task_state is not None or server.status not in (ServerStatus.ACTIVE, ServerStatus.SHUTOFF):
        raise refused
    idle = update(Server).where(
        Server.id == server.id, Server.task_state.is_(None), Server.status == server.status
    )
    if not updated_one(s, idle.values(task_state=None)):
        raise refused
    return ServerClaim(server.id, server.status is ServerStatus.ACTIVE)


class LiveExtend(Protocol):
    """What the volume service needs from the compute side to grow an attached, running disk."""

    async def live_extend(
        self, ctx: RequestContext, server_id: str, volume_id: str, new_size: int
    ) -> None: ...


def extending_volume_of(server_id: str) -> Select[str]:
    """A volume attached to this server that is being extended (the server's task must wait)."""
    return (
        select(Volume.id)
        .join(Attachment, Attachment.volume_id == Volume.id)
        .where(Attachment.server_id == server_id, Volume.status == VolumeStatus.EXTENDING)
        .limit(1)
    )
