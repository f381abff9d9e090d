"""`ferry doctor`: compare the database with what QEMU and the backends really hold.

Drift kinds:
- `serial-mismatch`: an attached disk's serial (qom-get) differs from its volume id;
- `chain-mismatch`: a device's file chain differs from the volume's recorded location;
- `disk-missing` / `disk-unknown`: an attachment QEMU does not have, or a disk the DB does not know;
- `orphan-file`: a layer file on a backend that no volume (or running migration) owns;
- `missing-file`: a layer file a volume needs that is not on its backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Attachment, Server, Volume
from ferry.db.statements import active_migrations
from ferry.domain.servers import ServerStatus
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.storage import Backends


@dataclass(frozen=True)
class Drift:
    kind: str
    resource: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Doctor:
    def __init__(self, db: sessionmaker[Session], backends: Backends, hypervisor: HypervisorDriver) -> None:
        self.db = db
        self.backends = backends
        self.hv = hypervisor

    async def check(self, ctx: RequestContext) -> list[Drift]:
        policy.enforce(ctx, "doctor:run")
        return [*await self._servers(), *self._files()]

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
            if not await self.hv.is_running(srv.id):
                out.append(Drift("server-dead", srv.id, "ACTIVE in the database but its process is gone"))
                continue
            disks = {d.volume_id: d for d in await self.hv.disks(srv.id)}
            for vid, files in expected[srv.id].items():
                disk = disks.pop(vid, None)
                if disk is None:
                    out.append(
                        Drift("disk-missing", vid, f"attached to server {srv.id} but not plugged in QEMU")
                    )
                    continue
                if disk.serial != vid:
                    out.append(
                        Drift("serial-mismatch", vid, f"server {srv.id} disk serial is {disk.serial!r}")
                    )
                if list(disk.files) != files and vid not in migrating:
                    out.append(
                        Drift("chain-mismatch", vid, f"QEMU has {list(disk.files)}, database says {files}")
                    )
            for vid, disk in disks.items():
                out.append(
                    Drift(
                        "disk-unknown", vid, f"server {srv.id} has a disk {disk.files} the DB does not know"
                    )
                )
        return out

    def _files(self) -> list[Drift]:
        wanted: dict[str, set[tuple[str, str]]] = {name: set() for name in self.backends.drivers}
        in_flight: dict[str, set[str]] = {name: set() for name in self.backends.drivers}
        with self.db() as s:
            for vol in s.scalars(select(Volume)):
                loc = self.backends.location(s, vol)
                wanted.setdefault(loc.backend, set()).update((loc.name_id, lid) for lid in loc.layers)
            for m in s.scalars(active_migrations()):
                in_flight.setdefault(m.dst_backend, set()).add(m.dst_name_id)
                in_flight.setdefault(m.src_backend, set()).add(m.src_name_id)
        out: list[Drift] = []
        for name, driver in self.backends.drivers.items():
            present = {(lay.name_id, lay.layer_id): lay.path for lay in driver.stored_layers()}
            for key, path in present.items():
                if key not in wanted[name] and key[0] not in in_flight[name]:
                    out.append(Drift("orphan-file", str(path), f"on backend {name}, owned by no volume"))
            for name_id, layer in wanted[name] - present.keys():
                out.append(
                    Drift(
                        "missing-file",
                        str(driver.layer_path(name_id, layer)),
                        f"needed by a volume on backend {name}",
                    )
                )
        return out
