"""A server's live migration over QMP (DESIGN §10): the destination's incoming side, the source's
outgoing side, progress from `query-migrate`, and waits driven by MIGRATION events.

Capabilities on both sides: `return-path` (without it a destination that fails leaves the guest
paused on both), `events` (MIGRATION status events: waits wake on them), and on the source
`pause-before-switchover` (the guest's RAM is across, its devices not yet: the caller verifies
the destination, then continues) and `auto-converge` (a guest dirtying memory faster than the
link is throttled until the copy converges).
Does not own when to continue, abort or give up (the conductor's machine decides).
"""

from __future__ import annotations

import asyncio

from ferry.domain.errors import DriverError
from ferry.domain.live import LiveProgress, LiveSettings, LiveState
from ferry.drivers.hypervisor.qemu.devices import PERIPHERAL, device_id, plugged_disks
from ferry.drivers.hypervisor.qmp import Json, QmpConnection, QmpEvent, Subscription

BOTH_SIDES = ("return-path", "events")
SOURCE_ONLY = ("pause-before-switchover", "auto-converge")
UNDER_WAY = (
    LiveState.SETUP,
    LiveState.ACTIVE,
    LiveState.PRE_SWITCHOVER,
    LiveState.DEVICE,
    LiveState.CANCELLING,
)
FORCED_DOWNTIME_MS = 60_000
"""The downtime allowed once a migration is forced to complete: the next pass switches over."""


def migration_events(event: QmpEvent) -> bool:
    return event.name in ("MIGRATION", "MIGRATION_PASS")


async def set_capabilities(conn: QmpConnection, names: tuple[str, ...]) -> None:
    caps = [{"capability": name, "state": True} for name in names]
    await conn.execute("migrate-set-capabilities", {"capabilities": caps})


async def set_limits(conn: QmpConnection, settings: LiveSettings) -> None:
    params: Json = {"downtime-limit": settings.downtime_ms, "max-bandwidth": settings.bandwidth or 2**53}
    await conn.execute("migrate-set-parameters", params)


async def listen(conn: QmpConnection, address: str) -> str:
    """Destination: accept the migration on `address` (a port the kernel picks); its URI. A
    destination already listening (a redelivered call) answers the URI it listens on."""
    uri = _listening(await conn.execute("query-migrate"))
    if uri is None:
        await set_capabilities(conn, BOTH_SIDES)
        await conn.execute("migrate-incoming", {"uri": f"tcp:{address}:0"})
        uri = _listening(await conn.execute("query-migrate"))
    if uri is None:
        raise DriverError(f"the incoming migration on {address} reported no listening port")
    return uri


def _listening(info: Json | None) -> str | None:
    for sock in (info or {}).get("socket-address", []):
        if sock.get("type") == "inet" and sock.get("port"):
            return f"tcp:{sock['host']}:{sock['port']}"
    return None


async def send(conn: QmpConnection, uri: str, settings: LiveSettings) -> None:
    """Source: start sending the guest to `uri`."""
    await set_capabilities(conn, BOTH_SIDES + SOURCE_ONLY)
    await set_limits(conn, settings)
    await conn.execute("migrate", {"uri": uri})


async def progress(conn: QmpConnection) -> LiveProgress:
    info = await conn.execute("query-migrate") or {}
    ram = info.get("ram", {})
    try:
        state = LiveState(str(info.get("status", "none")))
    except ValueError:
        state = LiveState.ACTIVE  # postcopy and colo states: still moving
    page = int(ram.get("page-size", 4096))
    return LiveProgress(
        state=state,
        memory_total=int(ram.get("total", 0)),
        memory_processed=int(ram.get("transferred", 0)),
        memory_remaining=int(ram.get("remaining", 0)),
        dirty_rate=int(ram.get("dirty-pages-rate", 0)) * page,
        expected_downtime_ms=int(info.get("expected-downtime", 0)),
        downtime_ms=int(info["downtime"]) if "downtime" in info else None,
        total_ms=int(info["total-time"]) if "total-time" in info else None,
        error=info.get("error-desc"),
    )


async def wait_state(
    conn: QmpConnection, sub: Subscription, until: tuple[LiveState, ...], timeout: float, tick: float
) -> LiveProgress:
    """Wait until the migration is in one of `until` or has ended (events wake it; `tick` bounds
    each wait so progress is re-read while RAM is copied)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        now = await progress(conn)
        if now.state in until or now.state.ended:
            return now
        remaining = deadline - loop.time()
        if remaining <= 0:
            return now
        await sub.wait(min(remaining, tick))


async def switch_over(conn: QmpConnection) -> None:
    """Source, paused before the switchover: send the devices' state; the destination runs."""
    await conn.execute("migrate-continue", {"state": "pre-switchover"})


async def cancel(conn: QmpConnection) -> None:
    await conn.execute("migrate_cancel")


async def force(conn: QmpConnection) -> None:
    """Copy at full speed and let the next pass switch over however much is left: a longer
    pause instead of no end."""
    await conn.execute(
        "migrate-set-parameters", {"downtime-limit": FORCED_DOWNTIME_MS, "max-bandwidth": 2**53}
    )


async def run_state(conn: QmpConnection) -> str:
    return str((await conn.execute("query-status") or {}).get("status", "unknown"))


async def disk_ports(conn: QmpConnection) -> dict[str, str]:
    """Volume id -> the root port its disk is plugged into."""
    out: dict[str, str] = {}
    for disk in await plugged_disks(conn):
        path = f"{PERIPHERAL}/{device_id(disk.volume_id)}"
        bus = await conn.execute("qom-get", {"path": path, "property": "parent_bus"})
        out[disk.volume_id] = str(bus).rstrip("/").split("/")[-1]
    return out
