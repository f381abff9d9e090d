"""Drift between the database and the backend directories, for `ferry doctor`: files no volume
owns, unfinished copies, files a volume needs that are missing, and sizes that disagree; and the
one safe repair of them, removing unowned files that nothing has written for a while.

Reads the database first and the directories second: a volume row is always committed before its
files are written, so a file found unowned is either garbage or younger than the read, which is
why removal only takes files older than a threshold. Settling statuses is `recovery.py`'s job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Snapshot, Volume
from ferry.db.statements import active_migrations
from ferry.domain.errors import FerryError
from ferry.domain.model import GiB
from ferry.domain.volumes import MIGRATION_BUSY, SnapshotStatus, VolumeStatus
from ferry.drivers.storage.base import StorageDriver, StoredLayer
from ferry.services.recovery import stuck_since
from ferry.services.storage import Backends

REPAIR = "ferry doctor --repair"
_NO_FILE_EXPECTED = (VolumeStatus.CREATING, VolumeStatus.DELETING, VolumeStatus.ERROR)
"""A volume in these statuses may rightly lack its files (being written, being removed, or an
error whose way out is delete)."""
_SIZED = (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)


@dataclass(frozen=True)
class Drift:
    kind: str
    resource: str
    detail: str
    repair: str
    """What to run to repair it."""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class _Owners:
    """What the database says one backend should hold."""

    needed: dict[tuple[str, str], str] = field(default_factory=dict)
    """(name_id, layer_id) -> the volume id that needs the file."""
    owned: set[tuple[str, str]] = field(default_factory=set)
    locations: set[str] = field(default_factory=set)
    """Name ids some volume or running migration owns."""
    writing: set[str] = field(default_factory=set)
    """Name ids where an unfinished copy may rightly exist (a create, snapshot or migration)."""
    sized: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """volume id -> (name_id, active layer, size in bytes) for volumes whose size must match."""


class FileDrift:
    def __init__(self, db: sessionmaker[Session], backends: Backends) -> None:
        self.db = db
        self.backends = backends

    def _owners(self) -> dict[str, _Owners]:
        owners: defaultdict[str, _Owners] = defaultdict(_Owners)
        with self.db() as s:
            snapping = set(
                s.scalars(select(Snapshot.volume_id).where(Snapshot.status == SnapshotStatus.CREATING))
            )
            for vol in s.scalars(select(Volume)):
                loc = self.backends.location(s, vol)
                o = owners[loc.backend]
                o.locations.add(loc.name_id)
                o.owned.update((loc.name_id, lid) for lid in loc.layers)
                if vol.status not in _NO_FILE_EXPECTED:
                    o.needed.update({(loc.name_id, lid): vol.id for lid in loc.layers})
                if vol.status is VolumeStatus.CREATING or vol.id in snapping:
                    o.writing.add(loc.name_id)
                if vol.status in _SIZED and vol.migration_status not in MIGRATION_BUSY:
                    o.sized[vol.id] = (loc.name_id, loc.active_layer, vol.size_gib * GiB)
            for m in s.scalars(active_migrations()):
                for backend, name_id in ((m.dst_backend, m.dst_name_id), (m.src_backend, m.src_name_id)):
                    owners[backend].locations.add(name_id)
                    owners[backend].writing.add(name_id)
        return owners

    async def find(self, stuck_after_s: float) -> list[Drift]:
        owners = self._owners()
        stale = stuck_since(stuck_after_s).timestamp()
        out: list[Drift] = []
        for name, driver in self.backends.drivers.items():
            o = owners[name]
            present = {(lay.name_id, lay.layer_id): lay for lay in await driver.scan_layers()}
            for key, lay in present.items():
                if key not in o.owned and key[0] not in o.writing:
                    out.append(
                        Drift("orphan-file", str(lay.path), f"on backend {name}, owned by no volume", REPAIR)
                    )
            for part in await driver.scan_partials():
                if part.name_id not in o.writing or part.modified < stale:
                    detail = f"unfinished copy on backend {name}, no copy in progress writes it"
                    out.append(Drift("partial-file", str(part.path), detail, REPAIR))
            with_layers = {name_id for name_id, _ in present}
            for name_id in set(await driver.scan_locations()) - o.locations - with_layers:
                detail = f"volume directory on backend {name} that no volume owns"
                out.append(Drift("orphan-dir", str(driver.volume_dir(name_id)), detail, REPAIR))
            for key, vid in o.needed.items():
                if key not in present:
                    path = str(driver.layer_path(*key))
                    detail = f"needed by volume {vid} on backend {name}"
                    fix = f"restore the file from a backup, or ferry volume delete {vid} (its data is gone)"
                    out.append(Drift("missing-file", path, detail, fix))
            out += await _sizes(driver, o, present)
        return out

    async def remove_orphans(self, older_than: datetime) -> list[str]:
        """Remove layer files and volume directories no volume owns, untouched since `older_than`."""
        owners = self._owners()
        cutoff = older_than.timestamp()
        done: list[str] = []
        for name, driver in self.backends.drivers.items():
            o = owners[name]
            files: defaultdict[str, list[StoredLayer]] = defaultdict(list)
            for lay in [*await driver.scan_layers(), *await driver.scan_partials()]:
                files[lay.name_id].append(lay)
            for name_id in set(await driver.scan_locations()) - o.locations:
                if all(lay.modified < cutoff for lay in files[name_id]):
                    await driver.retire_volume(name_id)
                    done.append(f"removed {driver.volume_dir(name_id)} (owned by no volume)")
            for lay in await driver.scan_layers():
                key = (lay.name_id, lay.layer_id)
                unowned = lay.name_id in o.locations and key not in o.owned and lay.name_id not in o.writing
                if unowned and lay.modified < cutoff:
                    await driver.drop_layer(lay.name_id, lay.layer_id)
                    done.append(f"removed {lay.path} (owned by no volume)")
        return done


async def _sizes(
    driver: StorageDriver, o: _Owners, present: dict[tuple[str, str], StoredLayer]
) -> list[Drift]:
    out: list[Drift] = []
    for vid, (name_id, layer, size) in o.sized.items():
        lay = present.get((name_id, layer))
        if lay is None:
            continue  # reported as missing-file
        try:
            actual = await driver.virtual_size(lay.path)
        except FerryError as e:
            out.append(
                Drift(
                    "size-mismatch", vid, f"cannot read {lay.path}: {e.message}", f"qemu-img check {lay.path}"
                )
            )
            continue
        if actual != size:
            detail = f"database says {size // GiB} GiB, {lay.path} has {actual} bytes"
            fix = (
                f"ferry volume extend {vid} {actual // GiB}"
                if actual > size and actual % GiB == 0
                else f"restore {lay.path} to {size} bytes, or ferry volume delete {vid}"
            )
            out.append(Drift("size-mismatch", vid, detail, fix))
    return out
