"""`ferry doctor`: compare the database with what QEMU and the backends really hold, say for each
finding what to run to repair it, and (`--repair`) do the repairs that are safe.

Drift kinds (each finding's `repair` names the command that fixes it):
- `server-dead`: ACTIVE in the database but its process is gone;
- `serial-mismatch`: an attached disk's serial (qom-get) differs from its volume id;
- `chain-mismatch`: a device's file chain differs from the volume's recorded location;
- `disk-missing` / `disk-unknown`: an attachment QEMU does not have, or a disk the DB does not know;
- `stuck-volume` / `stuck-server`: a transitional status (task state) unchanged for longer than
  `[doctor] stuck_after_s` while no work of this process is on it;
- `size-mismatch`: an available or in-use volume whose file's virtual size is not its size;
- `orphan-file`, `orphan-dir`, `partial-file`: a layer file, a volume directory or an unfinished
  `.part` copy that no volume (or running migration) owns;
- `missing-file`: a layer file a volume needs that is not on its backend.

The safe repairs (`repair`) settle stuck statuses with the start-up tables (`domain.settling`) and
remove unowned files older than the threshold; everything else is reported, never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import Config
from ferry.db.models import Attachment, Server, Volume
from ferry.db.statements import active_migrations, migrating_volume_of
from ferry.domain.servers import ServerStatus
from ferry.domain.settling import UNSETTLED_VOLUME, Outcome, ServerFacts
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.drift import REPAIR, Drift, FileDrift
from ferry.services.recovery import VolumeRecovery, stuck_since
from ferry.services.server_settling import ServerSettling
from ferry.services.storage import Backends


@dataclass(frozen=True)
class RepairReport:
    repaired: list[str]
    """What `--repair` did, one line each."""
    drift: list[Drift]
    """What is still found afterwards."""


class Doctor:
    def __init__(
        self,
        db: sessionmaker[Session],
        config: Config,
        backends: Backends,
        hypervisor: HypervisorDriver,
        recovery: VolumeRecovery,
        servers: ServerSettling,
    ) -> None:
        self.db = db
        self.stuck_after_s = config.doctor.stuck_after_s
        self.backends = backends
        self.hv = hypervisor
        self.recovery = recovery
        self.servers = servers
        self.files = FileDrift(db, backends)

    async def check(self, ctx: RequestContext) -> list[Drift]:
        policy.enforce(ctx, "doctor:run")
        return await self._findings()

    async def _findings(self) -> list[Drift]:
        return [*await self._servers(), *self._stuck(), *await self.files.find(self.stuck_after_s)]

    async def repair(self, ctx: RequestContext) -> RepairReport:
        """Settle stuck statuses as a restart would, remove unowned files older than the threshold."""
        policy.enforce(ctx, "doctor:repair")
        since = stuck_since(self.stuck_after_s)
        done = await self._settle_stuck_servers()
        for settled in await self.recovery.settle_unsettled(updated_before=since):
            d = settled.decision
            done.append(f"volume {settled.volume_id}: {settled.found} → {d.status or 'deleted'} ({d.why})")
        for part in await self.recovery.sweep_partials(older_than=since):
            done.append(f"removed unfinished copy {part.path}")
        done += await self.files.remove_orphans(since)
        return RepairReport(done, await self._findings())

    # -- statuses --------------------------------------------------------------------------
    def _stuck(self) -> list[Drift]:
        since = stuck_since(self.stuck_after_s)
        out: list[Drift] = []
        with self.db() as s:
            for vid, status, at in s.execute(
                select(Volume.id, Volume.status, Volume.updated_at).where(
                    Volume.status.in_(UNSETTLED_VOLUME), Volume.updated_at < since
                )
            ):
                if not self.recovery.volumes.in_flight(vid):
                    detail = f"{status} since {at:%Y-%m-%d %H:%M:%S} UTC, no work in progress"
                    out.append(Drift("stuck-volume", vid, detail, REPAIR))
            for sid, server_status, task, at in s.execute(
                select(Server.id, Server.status, Server.task_state, Server.updated_at).where(
                    Server.task_state.is_not(None), Server.updated_at < since
                )
            ):
                detail = f"{server_status} ({task}) since {at:%Y-%m-%d %H:%M:%S} UTC"
                out.append(Drift("stuck-server", sid, detail, REPAIR))
        return out

    async def _settle_stuck_servers(self) -> list[str]:
        since = stuck_since(self.stuck_after_s)
        with self.db() as s:
            stuck = [
                (srv.id, srv.status, srv.task_state, s.scalar(migrating_volume_of(srv.id)) is not None)
                for srv in s.scalars(
                    select(Server).where(Server.task_state.is_not(None), Server.updated_at < since)
                )
            ]
        done: list[str] = []
        for sid, status, task, migrating in stuck:
            facts = ServerFacts(status, task, await self.hv.is_running(sid), migrating)
            d = await self.servers.settle(sid, facts)
            if d.outcome is not Outcome.LEAVE:
                done.append(f"server {sid}: {status} ({task}) → {d.status or 'deleted'} ({d.why})")
        return done

    # -- QEMU ------------------------------------------------------------------------------
    async def _servers(self) -> list[Drift]:
        with self.db() as s:
            servers = list(s.scalars(select(Server).where(Server.status == ServerStatus.ACTIVE)))
            expected: dict[str, dict[str, list[str]]] = {srv.id: {} for srv in servers}
            for att in s.scalars(select(Attachment)):
                vol = s.get(Volume, att.volume_id)
                if vol is not None and att.server_id in expected:
                    chain = self.backends.disk_chain(vol.id, self.backends.location(s, vol))
                    expected[att.server_id][vol.id] = [lf.path for lf in reversed(chain.layers)]
            migrating = {m.volume_id for m in s.scalars(active_migrations())}
        out: list[Drift] = []
        for srv in servers:
            reboot = f"ferry server reboot {srv.id}"
            if not await self.hv.is_running(srv.id):
                out.append(
                    Drift(
                        "server-dead",
                        srv.id,
                        "ACTIVE in the database but its process is gone",
                        f"ferry server stop {srv.id} && ferry server start {srv.id}",
                    )
                )
                continue
            disks = {d.volume_id: d for d in await self.hv.disks(srv.id)}
            for vid, files in expected[srv.id].items():
                disk = disks.pop(vid, None)
                if disk is None:
                    detail = f"attached to server {srv.id} but not plugged in QEMU"
                    out.append(Drift("disk-missing", vid, detail, reboot))
                    continue
                if disk.serial != vid:
                    detail = f"server {srv.id} disk serial is {disk.serial!r}"
                    out.append(Drift("serial-mismatch", vid, detail, reboot))
                if list(disk.files) != files and vid not in migrating:
                    detail = f"QEMU has {list(disk.files)}, database says {files}"
                    fix = "none automatic: find which chain holds the newest data before a reboot"
                    out.append(Drift("chain-mismatch", vid, detail, fix))
            for vid, disk in disks.items():
                detail = f"server {srv.id} has a disk {disk.files} the DB does not know"
                out.append(Drift("disk-unknown", vid, detail, reboot))
        return out
