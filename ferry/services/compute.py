"""Compute use cases: servers as real hypervisor guests, volume attach/detach, live disk work.

Invariant: every attached disk's serial is its volume id. Disks are keyed by volume id end to end.
QEMU outlives the control plane; `reconcile` re-attaches to live servers at start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import Config
from ferry.db.models import Attachment, Flavor, Image, Server, Volume
from ferry.db.statements import compare_and_set, compensate, migrating_volume_of
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, FerryError, NotFound
from ferry.domain.hosts import check_attach
from ferry.domain.ids import new_id
from ferry.domain.instance_actions import OF_TASK, InstanceAction
from ferry.domain.model import DiskFormat, LayerFile
from ferry.domain.servers import TASK_VERB, ServerStatus, ServerTaskState, device_name, refusal
from ferry.domain.volumes import AttachmentStatus, VolumeStatus
from ferry.drivers.hypervisor.base import DiskInfo, HypervisorDriver, ServerSpec
from ferry.drivers.hypervisor.console import complete_utf8
from ferry.drivers.storage.qemu_img import QemuImg
from ferry.services import failpoints, instance_actions, policy
from ferry.services.compute_quotas import ComputeQuotas
from ferry.services.context import RequestContext
from ferry.services.detaching import GuestDetach, Unplug
from ferry.services.extending import extending_volume_of
from ferry.services.hosts import HostRegistry
from ferry.services.qos import disk_limits_of, volume_disk_limits
from ferry.services.queries import attachment_of, get_owned, get_volume
from ferry.services.records import ServerRecord
from ferry.services.server_details import NO_DETAILS, ServerDetails, admit
from ferry.services.storage import Backends
from ferry.services.volumes import set_status

log = logging.getLogger(__name__)


class ComputeService:
    def __init__(
        self,
        db: sessionmaker[Session],
        config: Config,
        backends: Backends,
        hypervisor: HypervisorDriver,
        hosts: HostRegistry,
        quotas: ComputeQuotas,
    ) -> None:
        self.db = db
        self.quotas = quotas
        self.config = config
        self.backends = backends
        self.hv = hypervisor
        self.hosts = hosts
        h = config.hypervisor
        self.detaching = GuestDetach(db, hypervisor, h.detach_attempts, h.detach_wait_s)

    # -- queries -----------------------------------------------------------------------
    def get(self, ctx: RequestContext, server_id: str) -> Server:
        policy.enforce(ctx, "server:get")
        with self.db() as s:
            return get_owned(s, Server, ctx, server_id, "Server")

    def list_servers(self, ctx: RequestContext, all_tenants: bool = False) -> list[Server]:
        policy.enforce(ctx, "server:get")
        stmt = select(Server).order_by(Server.created_at.desc())
        if not (all_tenants and ctx.is_admin):
            stmt = stmt.where(Server.project_id == ctx.project_id)
        with self.db() as s:
            return list(s.scalars(stmt))

    def server_attachments(self, ctx: RequestContext, server_id: str) -> list[Attachment]:
        with self.db() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            return list(
                s.scalars(
                    select(Attachment).where(Attachment.server_id == server.id).order_by(Attachment.device)
                )
            )

    def list_attachments(self, ctx: RequestContext) -> list[Attachment]:
        policy.enforce(ctx, "attachment:get")
        with self.db() as s:
            stmt = select(Attachment).order_by(Attachment.created_at)
            if not ctx.is_admin:
                stmt = stmt.where(Attachment.project_id == ctx.project_id)
            return list(s.scalars(stmt))

    def get_attachment(self, ctx: RequestContext, attachment_id: str) -> Attachment:
        policy.enforce(ctx, "attachment:get")
        with self.db() as s:
            att = s.get(Attachment, attachment_id)
            if att is None or (att.project_id != ctx.project_id and not ctx.is_admin):
                raise NotFound(f"Attachment {attachment_id} could not be found.")
            return att

    def flavors_of(self, servers: Sequence[ServerRecord]) -> list[Flavor]:
        """The flavors of these servers (one query), for views that embed them."""
        ids = {s.flavor_id for s in servers}
        with self.db() as s:
            return list(s.scalars(select(Flavor).where(Flavor.id.in_(ids)))) if ids else []

    def volumes_attached(self, server_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in server_ids}
        with self.db() as s:
            for a in s.scalars(select(Attachment).where(Attachment.server_id.in_(server_ids))):
                out[a.server_id].append(a.volume_id)
        return out

    # -- life cycle --------------------------------------------------------------------
    async def create(
        self,
        ctx: RequestContext,
        name: str,
        image_ref: str,
        flavor_ref: str,
        host: str | None = None,
        details: ServerDetails = NO_DETAILS,
    ) -> Server:
        policy.enforce(ctx, "server:create_on_host" if host else "server:create")
        with self.db.begin() as s:
            image, flavor = admit(s, ctx, self.quotas, image_ref, flavor_ref, details)
            chosen = self.hosts.choose_host(s, flavor, host)  # first: it may beat in its own transaction
            self.quotas.claim_servers(s, ctx.project_id, flavor)  # held until this transaction ends
            now = utcnow()
            server = Server(
                id=new_id(),
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                name=name,
                status=ServerStatus.BUILD,
                task_state=ServerTaskState.SPAWNING,
                image_id=image.id,
                flavor_id=flavor.id,
                host=chosen,
                created_at=now,
                updated_at=now,
                **details.columns(),
            )
            s.add(server)
            instance_actions.begin(s, ctx, server, InstanceAction.CREATE)
        await self.prepare_boot_disk(server.id, image)
        await self._boot(server.id)
        return self.get(ctx, server.id)

    async def _boot(self, server_id: str) -> None:
        """Start the server's process with every attached volume plugged; ACTIVE or ERROR."""
        try:
            with self.db() as s:
                spec = self.spec(s, server_id)
                limits = {d.volume_id: volume_disk_limits(s, d.volume_id) for d in spec.disks}
            failpoints.hit("server-boot.before_spawn")
            await self.hv.spawn(spec)
            for volume_id, limit in limits.items():  # a new process: the front-end QoS again
                if limit:
                    await self.hv.set_disk_limits(server_id, volume_id, limit)
            failpoints.hit("server-boot.after_spawn")
            self.set_status(server_id, ServerStatus.ACTIVE, fault=None)
        except FerryError as e:
            log.error("server %s failed to boot: %s", server_id, e)
            self.set_status(server_id, ServerStatus.ERROR, fault=e.message)
            raise

    def has_boot_disk(self, s: Session, server: Server) -> bool:
        image = s.get(Image, server.image_id)
        return image is not None and bool(image.disk)

    def spec(self, s: Session, server_id: str) -> ServerSpec:
        server = s.get(Server, server_id)
        assert server is not None
        image = s.get(Image, server.image_id)
        flavor = s.get(Flavor, server.flavor_id)
        if image is None or flavor is None:
            raise BadRequest(f"Server {server_id}: its image or flavor no longer exists.")
        disks = []
        for att in s.scalars(select(Attachment).where(Attachment.server_id == server_id)):
            vol = s.get(Volume, att.volume_id)
            assert vol is not None
            disks.append(self.backends.disk_chain(vol.id, self.backends.location(s, vol)))
        boot = None
        if image.disk:
            boot = LayerFile(str(self.config.run_dir / "disks" / f"{server_id}.qcow2"), DiskFormat.QCOW2)
        return ServerSpec(
            server_id=server_id,
            vcpus=flavor.vcpus,
            ram_mb=flavor.ram_mb,
            kernel=image.kernel,
            initrd=image.initrd,
            cmdline=image.cmdline,
            boot_disk=boot,
            disks=tuple(disks),
        )

    def set_status(self, server_id: str, status: ServerStatus, fault: str | None = None) -> None:
        """Settle the server in `status`, its task slot free: its life-cycle action has ended."""
        with self.db.begin() as s:
            s.execute(
                update(Server)
                .where(Server.id == server_id)
                .values(status=status, task_state=None, fault=fault, updated_at=utcnow())
            )
            instance_actions.task_ended(s, server_id, fault if status is ServerStatus.ERROR else None)

    def _claim(
        self, ctx: RequestContext, server_id: str, task: ServerTaskState, *, expect: tuple[ServerStatus, ...]
    ) -> Server:
        """Take the server's task slot (one life-cycle action at a time) if its status allows."""
        policy.enforce(ctx, "server:action")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            # Checked in the claim's own transaction: a refusal leaves the task slot untouched.
            busy = s.scalar(migrating_volume_of(server.id))
            if busy:
                raise Conflict(
                    f"Server {server.id}: volume {busy} is being migrated; "
                    f"{TASK_VERB[task]} it when the migration is done."
                )
            compare_and_set(
                s,
                update(Server)
                .where(Server.id == server.id, Server.task_state.is_(None), Server.status.in_(expect))
                .values(task_state=task, updated_at=utcnow()),
                refusal(task, server.id, server.status, server.task_state),
            )
            instance_actions.begin(s, ctx, server, OF_TASK[task])
            # After the claim's write: an extend that claimed the server row first is visible now.
            extending = s.scalar(extending_volume_of(server.id))
            if extending:
                raise Conflict(
                    f"Server {server.id}: volume {extending} is being extended; "
                    f"{TASK_VERB[task]} it when the extend is done."
                )
            return server

    async def stop(self, ctx: RequestContext, server_id: str) -> None:
        self._claim(
            ctx, server_id, ServerTaskState.POWERING_OFF, expect=(ServerStatus.ACTIVE, ServerStatus.ERROR)
        )
        await self.hv.stop(server_id)
        failpoints.hit("server-stop.after_stop")
        self.set_status(server_id, ServerStatus.SHUTOFF)

    async def start(self, ctx: RequestContext, server_id: str) -> None:
        self._claim(ctx, server_id, ServerTaskState.POWERING_ON, expect=(ServerStatus.SHUTOFF,))
        await self._boot(server_id)

    async def reboot(self, ctx: RequestContext, server_id: str, kind: str) -> None:
        if kind not in ("HARD", "SOFT"):
            raise BadRequest("reboot type must be HARD or SOFT.")
        self._claim(
            ctx,
            server_id,
            ServerTaskState.REBOOTING,
            expect=(ServerStatus.ACTIVE, ServerStatus.ERROR, ServerStatus.SHUTOFF),
        )
        # A SOFT reboot of a guest without ACPI support is a HARD one: restart the process.
        await self.hv.stop(server_id)
        failpoints.hit("server-reboot.after_stop")
        await self._boot(server_id)

    async def delete(self, ctx: RequestContext, server_id: str) -> None:
        policy.enforce(ctx, "server:delete")
        self._claim(ctx, server_id, ServerTaskState.DELETING, expect=tuple(ServerStatus))
        await self.finish_delete(server_id)

    async def finish_delete(self, server_id: str) -> None:
        """Destroy a `deleting` server's process, free its volumes, drop its rows and boot disk.
        Idempotent: start-up recovery completes an interrupted delete with it."""
        failpoints.hit("server-delete.before_destroy")
        await self.hv.destroy(server_id)
        failpoints.hit("server-delete.after_destroy")
        with self.db.begin() as s:
            vols = list(s.scalars(select(Attachment.volume_id).where(Attachment.server_id == server_id)))
            s.execute(delete(Attachment).where(Attachment.server_id == server_id))
            if vols:
                s.execute(
                    update(Volume)
                    .where(Volume.id.in_(vols))
                    .values(status=VolumeStatus.AVAILABLE, updated_at=utcnow())
                )
            s.execute(delete(Server).where(Server.id == server_id))
            instance_actions.task_ended(s, server_id)
        (self.config.run_dir / "disks" / f"{server_id}.qcow2").unlink(missing_ok=True)

    async def prepare_boot_disk(self, server_id: str, image: Image) -> None:
        if image.disk:
            disk = self.config.run_dir / "disks" / f"{server_id}.qcow2"
            disk.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fmt = image.disk_format or DiskFormat.QCOW2
            await QemuImg().create(
                disk, DiskFormat.QCOW2, None, backing=str(Path(image.disk)), backing_fmt=fmt
            )

    # -- volumes -----------------------------------------------------------------------
    async def attach(self, ctx: RequestContext, server_id: str, volume_id: str) -> Attachment:
        policy.enforce(ctx, "server:attach_volume")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            vol = get_volume(s, ctx, volume_id)
            if vol.project_id != server.project_id:
                raise NotFound(f"Volume {volume_id} could not be found.")
            if server.status != ServerStatus.ACTIVE or server.task_state:
                raise Conflict(f"Server {server.id} is {server.status}: volumes attach to ACTIVE servers.")
            if attachment_of(s, vol.id) is not None:
                raise BadRequest(f"Invalid volume: volume {vol.id} is already attached.")  # Nova: 400
            check_attach(self.config.backend(vol.backend), server.host, server.id, vol.id)
            set_status(s, vol.id, VolumeStatus.ATTACHING, expect=(VolumeStatus.AVAILABLE,))
            used = set(s.scalars(select(Attachment.device).where(Attachment.server_id == server.id)))
            att = Attachment(
                id=new_id(),
                volume_id=vol.id,
                server_id=server.id,
                project_id=vol.project_id,
                device=device_name(used),
                status=AttachmentStatus.ATTACHING,
                created_at=utcnow(),
            )
            s.add(att)
            event = instance_actions.begin(s, ctx, server, InstanceAction.ATTACH_VOLUME)
            chain = self.backends.disk_chain(vol.id, self.backends.location(s, vol))
            limits = disk_limits_of(s, vol.volume_type_id)
        failpoints.hit("attach.before_plug")
        with compensate(
            self.db,
            delete(Attachment).where(Attachment.id == att.id),
            update(Volume).where(Volume.id == volume_id).values(status=VolumeStatus.AVAILABLE),
            *instance_actions.failed(event, "the hypervisor could not plug the disk"),
        ):
            await self.hv.attach_disk(server_id, chain)
            if limits:  # the type's front-end QoS, as Nova applies it (libvirt iotune)
                try:
                    await self.hv.set_disk_limits(server_id, chain.volume_id, limits)
                except FerryError:
                    await self.hv.detach_disk(server_id, chain.volume_id)
                    raise
        failpoints.hit("attach.after_plug")
        with self.db.begin() as s:
            s.execute(
                update(Attachment).where(Attachment.id == att.id).values(status=AttachmentStatus.ATTACHED)
            )
            s.execute(
                update(Volume)
                .where(Volume.id == volume_id)
                .values(status=VolumeStatus.IN_USE, updated_at=utcnow())
            )
            instance_actions.finish(s, event)
        att.status = AttachmentStatus.ATTACHED
        return att

    async def detach(self, ctx: RequestContext, server_id: str, volume_id: str) -> None:
        """Claim the volume (`detaching`) and unplug it as Nova does: in the background, asking
        the guest until it lets go (`services/detaching.py`). A server that is not running has
        no guest to ask: its rows change at once."""
        policy.enforce(ctx, "server:detach_volume")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            att = attachment_of(s, volume_id) if volume_id else None
            if att is None or att.server_id != server.id:
                raise NotFound(f"Volume {volume_id} is not attached to server {server.id}.")
            set_status(s, volume_id, VolumeStatus.DETACHING, expect=(VolumeStatus.IN_USE,))
            running = server.status == ServerStatus.ACTIVE
            event = instance_actions.begin(s, ctx, server, InstanceAction.DETACH_VOLUME)
        job = Unplug(server.id, volume_id, att.id, event)
        if running:
            await self.detaching.start(job)
        else:
            self.detaching.finish(job)

    async def hypervisor_disks(self, ctx: RequestContext, server_id: str) -> list[DiskInfo]:
        policy.enforce(ctx, "volume:admin_fields")  # serials and file paths are for operators
        server = self.get(ctx, server_id)
        if server.status != ServerStatus.ACTIVE:
            raise Conflict(f"Server {server.id} is {server.status}: no running process to ask.")
        return await self.hv.disks(server.id)

    # -- console ----------------------------------------------------------------------
    async def console_output(self, ctx: RequestContext, server_id: str, length: int | None) -> str:
        """The last `length` lines of the server's console (all when None), as Nova's
        os-getConsoleOutput. A server without a console log (never started) is NotFound."""
        server = self._console_server(ctx, server_id)
        return await self.hv.console_output(server.id, length)

    async def console_read(
        self, ctx: RequestContext, server_id: str, offset: int, limit: int
    ) -> tuple[bytes, int]:
        """Console bytes from byte `offset` and the offset to follow on from. A chunk stops
        before a character it would cut (the next one starts with it), so each decodes whole."""
        server = self._console_server(ctx, server_id)
        data, after = await self.hv.console_read(server.id, offset, limit)
        whole = complete_utf8(data)
        return whole, after - (len(data) - len(whole))

    def _console_server(self, ctx: RequestContext, server_id: str) -> Server:
        policy.enforce(ctx, "server:console")
        with self.db() as s:
            return get_owned(s, Server, ctx, server_id, "Server")

    # -- live disk work for snapshots and extends (LiveDisks, LiveExtend) -------------------
    async def live_snapshot(self, server_id: str, volume_id: str, new_active: LayerFile) -> None:
        await self.hv.snapshot_disk(server_id, volume_id, new_active)

    async def live_merge(self, server_id: str, volume_id: str, layer: LayerFile) -> None:
        await self.hv.merge_layer(server_id, volume_id, layer)

    async def live_extend(self, ctx: RequestContext, server_id: str, volume_id: str, new_size: int) -> None:
        async with instance_actions.recorded(self.db, ctx, server_id, InstanceAction.EXTEND_VOLUME):
            await self.hv.extend_volume(server_id, volume_id, new_size)

    async def live_files(self, server_id: str, volume_id: str) -> tuple[str, ...] | None:
        return next((d.files for d in await self.hv.disks(server_id) if d.volume_id == volume_id), None)
