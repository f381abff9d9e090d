"""Steps shared by the end-to-end tests, the demo and the benchmarks, over the real HTTP API:
volumes, servers, attachments, migrations, and reading the guest's console."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferry.config import load
from ferry.db.engine import make_engine, session_factory
from ferry.drivers.hypervisor.qemu import RunDir, servers_root
from ferry.services.images import register_image
from testkit.guest import GUEST_CMDLINE, DiskStatus, console_offset, guest_paths, wait_for_status
from testkit.server import Api, FerryServer


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.1) -> Any:
    """Return probe()'s first truthy result; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def register_guest(
    srv: FerryServer, guest_dir: Path, name: str, *, rate: int = 200, span_mb: int = 64, sync_every: int = 16
) -> str:
    kernel, initrd = guest_paths(guest_dir)
    engine = make_engine(load(srv.config_path).database_url)
    try:
        img = register_image(
            session_factory(engine),
            name,
            kernel=str(kernel),
            initrd=str(initrd),
            cmdline=GUEST_CMDLINE(rate, span_mb, sync_every),
        )
        return img.id
    finally:
        engine.dispose()


def create_volume(api: Api, size: int = 1, name: str = "vol", **extra: Any) -> str:
    vol = api.ok(api.volume("POST", "/volumes", json={"volume": {"size": size, "name": name, **extra}}))[
        "volume"
    ]
    wait_until(f"volume {vol['id']} available", lambda: volume(api, vol["id"])["status"] == "available")
    return str(vol["id"])


def volume(api: Api, vid: str) -> dict[str, Any]:
    return dict(api.ok(api.volume("GET", f"/volumes/{vid}"))["volume"])


def location(api: Api, vid: str) -> dict[str, Any]:
    return dict(api.ok(api.volume("GET", f"/volumes/{vid}/location"))["location"])


def other_backend(backend: str) -> str:
    """The other of the two default backends (`fast`, `bulk`): where a test moves a volume."""
    if backend not in ("fast", "bulk"):
        raise ValueError(f"{backend!r} is not one of the two default backends")
    return "bulk" if backend == "fast" else "fast"


def snapshot(api: Api, vid: str, name: str) -> str:
    snap = api.ok(
        api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, "name": name, "force": True}})
    )
    return str(snap["snapshot"]["id"])


def delete_snapshot(api: Api, sid: str, timeout: float = 120) -> None:
    api.ok(api.volume("DELETE", f"/snapshots/{sid}"), 202)
    wait_until(
        f"snapshot {sid} deleted", lambda: api.volume("GET", f"/snapshots/{sid}").status_code == 404, timeout
    )


def boot(api: Api, image: str, name: str = "guest", flavor: str = "tiny") -> str:
    body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor}}
    sid = str(api.ok(api.compute("POST", "/servers", json=body), 202)["server"]["id"])
    wait_until(f"server {sid} ACTIVE", lambda: server(api, sid)["status"] == "ACTIVE")
    return sid


def server(api: Api, sid: str) -> dict[str, Any]:
    return dict(api.ok(api.compute("GET", f"/servers/{sid}"))["server"])


def attach(api: Api, sid: str, vid: str) -> dict[str, Any]:
    body = {"volumeAttachment": {"volumeId": vid}}
    return dict(
        api.ok(api.compute("POST", f"/servers/{sid}/os-volume_attachments", json=body))["volumeAttachment"]
    )


def detach(api: Api, sid: str, vid: str, timeout: float = 300) -> None:
    """Detach and wait until the volume is available: as in Nova, the guest may take its time
    (the 202 can come while the volume is still `detaching`)."""
    api.ok(api.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}"), 202)
    wait_until(f"volume {vid} detached", lambda: volume(api, vid)["status"] == "available", timeout)


def server_dir(srv: FerryServer, sid: str) -> Path:
    """The server's QEMU run dir (console.log, qemu.pid, qmp.sock)."""
    return _run_dir(srv, sid).path


def console_path(srv: FerryServer, sid: str) -> Path:
    return _run_dir(srv, sid).console


def _run_dir(srv: FerryServer, sid: str) -> RunDir:
    """The server's run dir: the all-in-one's, or that of the agent whose host runs it."""
    run = load(srv.config_path).run_dir
    here = RunDir.of(servers_root(run), sid)
    if here.path.exists():
        return here
    for host in sorted(run.glob("hosts/*")):
        on_host = RunDir.of(servers_root(host), sid)
        if on_host.path.exists():
            return on_host
    return here


def wait_writing(
    srv: FerryServer, sid: str, vid: str, writes: int = 50, timeout: float = 90, since: int | None = None
) -> DiskStatus:
    """Wait until the guest has written `writes` more blocks to the volume, healthy."""
    path = console_path(srv, sid)
    start = wait_for_status(
        path,
        lambda s: vid.startswith(s.serial),
        timeout,
        since=console_offset(path) if since is None else since,
    )
    return wait_for_status(
        path,
        lambda s: vid.startswith(s.serial) and s.seq >= start.seq + writes,
        timeout,
        since=console_offset(path),
    )


def latest(srv: FerryServer, sid: str, vid: str, timeout: float = 30) -> DiskStatus:
    path = console_path(srv, sid)
    return wait_for_status(path, lambda s: vid.startswith(s.serial), timeout, since=console_offset(path))


def migrate(api: Api, vid: str, backend: str, speed: int | None = None) -> None:
    body: dict[str, Any] = {"host": backend}
    if speed is not None:
        body["bytes_per_sec"] = speed
    api.ok(api.volume("POST", f"/volumes/{vid}/action", json={"os-migrate_volume": body}), 202)


def migration(api: Api, vid: str) -> dict[str, Any]:
    return dict(api.ok(api.volume("GET", f"/volumes/{vid}/migration"))["migration"])


def wait_migration(api: Api, vid: str, timeout: float = 300) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        m = migration(api, vid)
        return m if m["status"] not in ("queued", "running") else None

    return dict(wait_until(f"migration of {vid} to finish", finished, timeout, 0.2))
