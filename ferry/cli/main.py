"""`ferry`: set up and run the control plane, and drive it over its HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ferry.cli.client import Client, CliError
from ferry.cli.output import console, err, human_bytes, parse_bytes, print_error, show

app = typer.Typer(
    help="Ferry: live volume migration for QEMU/KVM clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
volume_app = typer.Typer(help="Volumes.", no_args_is_help=True)
migration_app = typer.Typer(help="A volume's migration.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Snapshots.", no_args_is_help=True)
type_app = typer.Typer(help="Volume types.", no_args_is_help=True)
backend_app = typer.Typer(help="Storage backends.", no_args_is_help=True)
server_app = typer.Typer(help="Servers (QEMU guests).", no_args_is_help=True)
server_add = typer.Typer(help="Attach things to a server.", no_args_is_help=True)
server_remove = typer.Typer(help="Detach things from a server.", no_args_is_help=True)
image_app = typer.Typer(help="Images servers boot from.", no_args_is_help=True)
app.add_typer(volume_app, name="volume")
volume_app.add_typer(migration_app, name="migration")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(type_app, name="type")
app.add_typer(backend_app, name="backend")
app.add_typer(server_app, name="server")
server_app.add_typer(server_add, name="add")
server_app.add_typer(server_remove, name="remove")
app.add_typer(image_app, name="image")

Fmt = typer.Option("table", "-f", "--format", help="table or json")


def main() -> None:
    try:
        app()
    except CliError as e:
        print_error(str(e))
        sys.exit(1)


# -- control plane -----------------------------------------------------------------------
@app.command()
def init(
    data_dir: Path = typer.Option(Path("data"), help="Where config, database and backends live."),
    port: int = typer.Option(8776),
    database_url: str = typer.Option(None, help="Default: SQLite file."),
    guest_dir: Path = typer.Option(None, help="Built test guest (vmlinuz, initrd.img) to register."),
) -> None:
    """Write ferry.toml, create the database and bootstrap users, projects and roles."""
    from ferry.services import bootstrap

    path, cfg = bootstrap.init(data_dir, port, database_url, guest_dir)
    if guest_dir and (guest_dir / "vmlinuz").is_file():
        _register_test_guest(cfg.database_url, guest_dir)
    console.print(f"wrote {path}\ncredentials in {cfg.data_dir / 'clouds.yaml'} (mode 0600)")
    console.print(
        f"next: ferry serve --config {path}\n      export OS_CLIENT_CONFIG_FILE="
        f"{cfg.data_dir / 'clouds.yaml'} OS_CLOUD=ferry"
    )


def _register_test_guest(database_url: str, guest_dir: Path) -> None:
    from ferry.db.engine import make_engine, session_factory
    from ferry.domain.errors import Conflict
    from ferry.services.images import TEST_GUEST, register_image
    from testkit.guest import GUEST_CMDLINE, guest_paths

    kernel, initrd = guest_paths(guest_dir)
    engine = make_engine(database_url)
    with contextlib.suppress(Conflict):  # `ferry init` run again on the same database
        register_image(
            session_factory(engine),
            TEST_GUEST,
            kernel=str(kernel),
            initrd=str(initrd),
            cmdline=GUEST_CMDLINE(),
        )
    engine.dispose()


@app.command()
def serve(
    config: Path = typer.Option(None, "--config", help="Default: $FERRY_CONFIG or ./ferry.toml"),
    log_level: str = typer.Option("info"),
) -> None:
    """Run the API, the workers and the drivers in one process."""
    import logging

    import uvicorn

    from ferry import config as cfgmod
    from ferry.api.app import create_app
    from ferry.domain.errors import FerryError
    from ferry.services.app import Ferry

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ferry = Ferry.from_file(cfgmod.config_path(config))
    except FerryError as e:
        raise CliError(e.message) from None
    cfg = ferry.config
    uvicorn.run(
        create_app(ferry),
        host=cfg.listen_host,
        port=cfg.listen_port,
        log_level=log_level,
        access_log=log_level == "debug",
    )


# -- resolution helpers ------------------------------------------------------------------
def _find(c: Client, kind: str, ref: str) -> dict[str, Any]:
    if kind == "volume":
        try:
            return dict(c.volume("GET", f"/volumes/{ref}")["volume"])
        except CliError:
            found = c.volume("GET", "/volumes/detail", name=ref)["volumes"]
    elif kind == "snapshot":
        try:
            return dict(c.volume("GET", f"/snapshots/{ref}")["snapshot"])
        except CliError:
            found = [s for s in c.volume("GET", "/snapshots/detail")["snapshots"] if s["name"] == ref]
    else:
        try:
            return dict(c.compute("GET", f"/servers/{ref}")["server"])
        except CliError:
            found = [s for s in c.compute("GET", "/servers/detail")["servers"] if s["name"] == ref]
    if len(found) != 1:
        raise CliError(f"{'No' if not found else 'More than one'} {kind} named or with id {ref!r}.")
    return dict(found[0])


def _wait_volume(c: Client, vid: str, want: tuple[str, ...], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        vol = c.volume("GET", f"/volumes/{vid}")["volume"]
        if vol["status"] in want:
            return dict(vol)
        if vol["status"].startswith("error"):
            raise CliError(f"Volume {vid} went to status {vol['status']}.")
        if time.monotonic() > deadline:
            raise CliError(f"Volume {vid} is still {vol['status']} after {timeout:.0f} s.")
        time.sleep(0.3)


# -- volumes -------------------------------------------------------------------------------
VOLUME_COLUMNS = ["id", "name", "status", "size", "volume_type", "os-vol-host-attr:host"]


@volume_app.command("create")
def volume_create(
    name: str,
    size: int = typer.Option(None, help="GiB"),
    type: str = typer.Option(None),
    snapshot: str = typer.Option(None),
    source: str = typer.Option(None),
    description: str = typer.Option(None),
    wait: bool = typer.Option(True),
    fmt: str = Fmt,
) -> None:
    """Create a volume (empty, from a snapshot, or a clone)."""
    c = Client()
    body: dict[str, Any] = {"name": name, "size": size, "volume_type": type, "description": description}
    if snapshot:
        body["snapshot_id"] = _find(c, "snapshot", snapshot)["id"]
    if source:
        body["source_volid"] = _find(c, "volume", source)["id"]
    vol = c.volume("POST", "/volumes", {"volume": {k: v for k, v in body.items() if v is not None}})["volume"]
    if wait:
        vol = _wait_volume(c, vol["id"], ("available",))
    show(vol, fmt)


@volume_app.command("list")
def volume_list(all_projects: bool = typer.Option(False, "--all-projects"), fmt: str = Fmt) -> None:
    c = Client()
    vols = c.volume("GET", "/volumes/detail", all_tenants=1 if all_projects else None)["volumes"]
    show(vols, fmt, VOLUME_COLUMNS)


@volume_app.command("show")
def volume_show(volume: str, fmt: str = Fmt) -> None:
    show(_find(Client(), "volume", volume), fmt)


@volume_app.command("delete")
def volume_delete(volume: str, cascade: bool = typer.Option(False)) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    c.volume("DELETE", f"/volumes/{vid}", cascade="true" if cascade else None)
    console.print(f"deleted volume {vid}")


@volume_app.command("extend")
def volume_extend(
    volume: str, size: int = typer.Argument(..., help="New size in GiB"), fmt: str = Fmt
) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    c.volume("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": size}})
    show(_wait_volume(c, vid, ("available",)), fmt)


@volume_app.command("migrate")
def volume_migrate(
    volume: str,
    to: str = typer.Option(..., "--to", help="Destination backend"),
    speed: str = typer.Option(None, help="Copy speed cap, e.g. 50M (bytes/s)"),
    wait: bool = typer.Option(False, help="Show progress until done"),
    fmt: str = Fmt,
) -> None:
    """Move a volume's data to another backend, attached or not, snapshots included."""
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    body: dict[str, Any] = {"host": to}
    if speed:
        body["bytes_per_sec"] = parse_bytes(speed)
    c.volume("POST", f"/volumes/{vid}/action", {"os-migrate_volume": body})
    if wait:
        _follow(c, vid, fmt)
    else:
        console.print(
            f"migration of {vid} to {to} started; follow it with: ferry volume migration show {vid}"
        )


@volume_app.command("retype")
def volume_retype(
    volume: str,
    new_type: str,
    migration_policy: str = typer.Option("never", help="never or on-demand"),
    wait: bool = typer.Option(False),
    fmt: str = Fmt,
) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    before = c.volume("GET", f"/volumes/{vid}")["volume"]
    c.volume(
        "POST",
        f"/volumes/{vid}/action",
        {"os-retype": {"new_type": new_type, "migration_policy": migration_policy}},
    )
    after = c.volume("GET", f"/volumes/{vid}")["volume"]
    if (
        wait
        and after.get("migration_status") in ("starting", "migrating")
        and after.get("migration_status") != before.get("migration_status")
    ):
        _follow(c, vid, fmt)
    else:
        show(after, fmt)


def _follow(c: Client, vid: str, fmt: str) -> None:
    columns = (
        TextColumn("{task.fields[phase]:<13}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[bytes]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=fmt == "json") as progress:
        task = progress.add_task("migrate", total=100, phase="queued", bytes="", rate="")
        while True:
            m = c.volume("GET", f"/volumes/{vid}/migration")["migration"]
            progress.update(
                task,
                completed=m["percent"],
                phase=m["phase"],
                bytes=f"{human_bytes(m['bytes_done'])}/{human_bytes(m['bytes_total'])}",
                rate=f"{human_bytes(m['rate_bytes_per_sec'])}/s",
            )
            if m["status"] not in ("queued", "running"):
                progress.update(task, completed=100 if m["status"] == "success" else m["percent"])
                break
            time.sleep(0.5)
    _summary(m, fmt)
    if m["status"] != "success":
        raise CliError(f"migration {m['status']}: {m['error'] or 'cancelled'}")


def _summary(m: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(m, indent=2))
        return
    events = m["steps"]
    switched = any("write-blocking" in str(e["detail"].get("message", "")) for e in events)
    serial = next(
        (e["detail"].get("serial") for e in events if e["detail"].get("message") == "serial checked"), None
    )
    copied = sum(1 for e in events if "copied and compared" in str(e["detail"].get("message", "")))
    started, finished = m["started_at"], m["finished_at"]
    from datetime import datetime

    took = (
        (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        if started and finished
        else 0.0
    )
    show(
        {
            "status": m["status"],
            "from": m["source_backend"],
            "to": m["destination_backend"],
            "time": f"{took:.2f} s",
            "mirrored bytes": human_bytes(m["bytes_total"]),
            "layers copied": copied,
            "copy mode": "background → write-blocking" if switched else m["copy_mode"],
            "pivot": f"{m['pivot_ms']:.1f} ms" if m["pivot_ms"] is not None else "(detached: no pivot)",
            "serial check": f"ok ({serial})"
            if serial
            else ("n/a (detached)" if not m["attached"] else "missing"),
            "error": m["error"],
        },
        "table",
    )


@migration_app.command("show")
def migration_show(volume: str, fmt: str = Fmt) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    m = c.volume("GET", f"/volumes/{vid}/migration")["migration"]
    if fmt == "json":
        show(m, fmt)
    else:
        show({k: v for k, v in m.items() if k != "steps"}, fmt)
        show(
            [
                {"at": e["at"], "step": e["step"], "event": e["event"], "detail": e["detail"]}
                for e in m["steps"]
            ],
            fmt,
            ["at", "step", "event", "detail"],
        )


@migration_app.command("cancel")
def migration_cancel(volume: str) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    c.volume("POST", f"/volumes/{vid}/action", {"ferry-migrate_cancel": {}})
    console.print(f"cancel requested for the migration of {vid}")


@migration_app.command("set-speed")
def migration_set_speed(
    volume: str, speed: str = typer.Argument(..., help="bytes/s, e.g. 50M; 0 = unlimited")
) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    c.volume(
        "POST", f"/volumes/{vid}/action", {"ferry-migrate_set_speed": {"bytes_per_sec": parse_bytes(speed)}}
    )
    console.print(f"speed of the migration of {vid} set to {speed}/s")


# -- snapshots -----------------------------------------------------------------------------
@snapshot_app.command("create")
def snapshot_create(
    volume: str, name: str = typer.Option(None), description: str = typer.Option(None), fmt: str = Fmt
) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"]
    body = {"snapshot": {"volume_id": vid, "name": name, "description": description}}
    show(c.volume("POST", "/snapshots", body)["snapshot"], fmt)


@snapshot_app.command("list")
def snapshot_list(volume: str = typer.Option(None), fmt: str = Fmt) -> None:
    c = Client()
    vid = _find(c, "volume", volume)["id"] if volume else None
    show(
        c.volume("GET", "/snapshots/detail", volume_id=vid)["snapshots"],
        fmt,
        ["id", "name", "status", "size", "volume_id"],
    )


@snapshot_app.command("show")
def snapshot_show(snapshot: str, fmt: str = Fmt) -> None:
    show(_find(Client(), "snapshot", snapshot), fmt)


@snapshot_app.command("delete")
def snapshot_delete(snapshot: str, wait: bool = typer.Option(True)) -> None:
    c = Client()
    sid = _find(c, "snapshot", snapshot)["id"]
    c.volume("DELETE", f"/snapshots/{sid}")
    while wait:
        try:
            snap = c.volume("GET", f"/snapshots/{sid}")["snapshot"]
        except CliError:
            break
        if snap["status"].startswith("error"):
            raise CliError(f"snapshot {sid} went to {snap['status']}")
        time.sleep(0.3)
    console.print(f"deleted snapshot {sid}")


# -- types and backends --------------------------------------------------------------------
@type_app.command("create")
def type_create(
    name: str,
    backend: str = typer.Option(None, help="Pin volumes of this type to a backend"),
    description: str = typer.Option(None),
    fmt: str = Fmt,
) -> None:
    specs = {"volume_backend_name": backend} if backend else {}
    body = {"volume_type": {"name": name, "description": description, "extra_specs": specs}}
    show(Client().volume("POST", "/types", body)["volume_type"], fmt)


@type_app.command("list")
def type_list(fmt: str = Fmt) -> None:
    show(Client().volume("GET", "/types")["volume_types"], fmt, ["id", "name", "extra_specs"])


@type_app.command("set")
def type_set(
    type_ref: str, property: list[str] = typer.Option([], "--property", help="KEY=VALUE"), fmt: str = Fmt
) -> None:
    specs = {}
    for p in property:
        key, sep, value = p.partition("=")
        if not sep:
            raise CliError(f"--property {p!r} is not KEY=VALUE")
        specs[key] = value
    c = Client()
    c.volume("POST", f"/types/{type_ref}/extra_specs", {"extra_specs": specs})
    show(c.volume("GET", f"/types/{type_ref}")["volume_type"], fmt)


@backend_app.command("list")
def backend_list(fmt: str = Fmt) -> None:
    pools = Client().volume("GET", "/scheduler-stats/get_pools", detail="true")["pools"]
    rows = [
        {
            "name": p["capabilities"]["volume_backend_name"],
            "host": p["name"],
            "format": p["capabilities"]["disk_format"],
            "capacity_gb": p["capabilities"]["total_capacity_gb"],
            "provisioned_gb": p["capabilities"]["provisioned_capacity_gb"],
            "allocated": human_bytes(p["capabilities"]["allocated_bytes"]),
        }
        for p in pools
    ]
    show(
        rows if fmt != "json" else pools,
        fmt,
        ["name", "host", "format", "capacity_gb", "provisioned_gb", "allocated"],
    )


# -- servers -------------------------------------------------------------------------------
def _wait_server(c: Client, sid: str, want: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        srv = c.compute("GET", f"/servers/{sid}")["server"]
        if srv["status"] == want and not srv["OS-EXT-STS:task_state"]:
            return dict(srv)
        if srv["status"] == "ERROR":
            raise CliError(f"server {sid} is in ERROR: {(srv.get('fault') or {}).get('message')}")
        if time.monotonic() > deadline:
            raise CliError(f"server {sid} is still {srv['status']}")
        time.sleep(0.3)


SERVER_COLUMNS = ["id", "name", "status", "os-extended-volumes:volumes_attached"]


@server_app.command("create")
def server_create(
    name: str,
    image: str = typer.Option("ferry-test-guest"),
    flavor: str = typer.Option("tiny"),
    fmt: str = Fmt,
) -> None:
    c = Client()
    srv = c.compute("POST", "/servers", {"server": {"name": name, "imageRef": image, "flavorRef": flavor}})
    show(_wait_server(c, srv["server"]["id"], "ACTIVE"), fmt)


@server_app.command("list")
def server_list(fmt: str = Fmt) -> None:
    show(Client().compute("GET", "/servers/detail")["servers"], fmt, SERVER_COLUMNS)


@server_app.command("show")
def server_show(server: str, fmt: str = Fmt) -> None:
    show(_find(Client(), "server", server), fmt)


@server_app.command("delete")
def server_delete(server: str) -> None:
    c = Client()
    sid = _find(c, "server", server)["id"]
    c.compute("DELETE", f"/servers/{sid}")
    console.print(f"deleted server {sid}")


def _action(server: str, body: dict[str, Any], want: str) -> None:
    c = Client()
    sid = _find(c, "server", server)["id"]
    c.compute("POST", f"/servers/{sid}/action", body)
    srv = _wait_server(c, sid, want)
    console.print(f"server {sid} is {srv['status']}")


@server_app.command("stop")
def server_stop(server: str) -> None:
    _action(server, {"os-stop": None}, "SHUTOFF")


@server_app.command("start")
def server_start(server: str) -> None:
    _action(server, {"os-start": None}, "ACTIVE")


@server_app.command("reboot")
def server_reboot(server: str, hard: bool = typer.Option(True)) -> None:
    _action(server, {"reboot": {"type": "HARD" if hard else "SOFT"}}, "ACTIVE")


@server_add.command("volume")
def server_add_volume(server: str, volume: str, fmt: str = Fmt) -> None:
    c = Client()
    sid, vid = _find(c, "server", server)["id"], _find(c, "volume", volume)["id"]
    show(
        c.compute("POST", f"/servers/{sid}/os-volume_attachments", {"volumeAttachment": {"volumeId": vid}})[
            "volumeAttachment"
        ],
        fmt,
    )


@server_remove.command("volume")
def server_remove_volume(server: str, volume: str) -> None:
    c = Client()
    sid, vid = _find(c, "server", server)["id"], _find(c, "volume", volume)["id"]
    c.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    console.print(f"detached volume {vid} from server {sid}")


@server_app.command("console")
def server_console(
    server: str, follow: bool = typer.Option(True), config: Path = typer.Option(None, "--config")
) -> None:
    """Print the server's console log (local control plane only), following it."""
    from ferry import config as cfgmod

    sid = _find(Client(), "server", server)["id"]
    path = cfgmod.load(cfgmod.config_path(config)).run_dir / "servers" / sid / "console.log"
    if not path.is_file():
        raise CliError(f"no console log at {path}")
    with path.open("rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            elif not follow:
                return
            else:
                time.sleep(0.2)


@app.command()
def doctor(json_out: bool = typer.Option(False, "--json", help="Machine-readable report")) -> None:
    """Compare the database with every running QEMU and every backend; exit 1 on drift."""
    report = Client().volume("GET", "/ferry-doctor")
    if json_out:
        print(json.dumps(report, indent=2))
    elif report["healthy"]:
        console.print("[green]no drift[/green]: database, QEMU and backends agree")
    else:
        show(report["drift"], "table", ["kind", "resource", "detail"])
    if not report["healthy"]:
        raise typer.Exit(1)


# -- images --------------------------------------------------------------------------------
@image_app.command("list")
def image_list(fmt: str = Fmt) -> None:
    show(Client().compute("GET", "/images/detail")["images"], fmt, ["id", "name", "status"])


@image_app.command("register")
def image_register(
    name: str,
    kernel: Path = typer.Option(None),
    initrd: Path = typer.Option(None),
    cmdline: str = typer.Option("console=ttyS0 quiet panic=-1"),
    disk: Path = typer.Option(None),
    disk_format: str = typer.Option("qcow2"),
    config: Path = typer.Option(None, "--config"),
) -> None:
    """Register a kernel+initrd or a bootable disk (writes the local database directly)."""
    from ferry import config as cfgmod
    from ferry.db.engine import make_engine, session_factory
    from ferry.domain.errors import FerryError
    from ferry.services.images import register_image

    cfg = cfgmod.load(cfgmod.config_path(config))
    engine = make_engine(cfg.database_url)
    try:
        img = register_image(
            session_factory(engine),
            name,
            kernel=str(kernel) if kernel else None,
            initrd=str(initrd) if initrd else None,
            cmdline=cmdline,
            disk=str(disk) if disk else None,
            disk_format=disk_format if disk else None,
        )
    except FerryError as e:
        raise CliError(e.message) from None
    finally:
        engine.dispose()
    console.print(f"registered image {img.name} ({img.id})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
