"""`ferry volume …`: create, list, show, delete, extend, migrate and retype volumes over the
block-storage API (`ferry volume migration …` lives in migrations.py)."""

from __future__ import annotations

from typing import Any

import typer

from ferry.cli import migrations
from ferry.cli.client import Client
from ferry.cli.lookup import find, wait_volume
from ferry.cli.output import Fmt, console, parse_bytes, show

VOLUME_COLUMNS = ["id", "name", "status", "size", "volume_type", "os-vol-host-attr:host"]

app = typer.Typer(help="Volumes.", no_args_is_help=True)
app.add_typer(migrations.app, name="migration")


@app.command("create")
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
        body["snapshot_id"] = find(c, "snapshot", snapshot)["id"]
    if source:
        body["source_volid"] = find(c, "volume", source)["id"]
    vol = c.volume("POST", "/volumes", {"volume": {k: v for k, v in body.items() if v is not None}})["volume"]
    if wait:
        vol = wait_volume(c, vol["id"], ("available",))
    show(vol, fmt)


@app.command("list")
def volume_list(all_projects: bool = typer.Option(False, "--all-projects"), fmt: str = Fmt) -> None:
    c = Client()
    vols = c.volume("GET", "/volumes/detail", all_tenants=1 if all_projects else None)["volumes"]
    show(vols, fmt, VOLUME_COLUMNS)


@app.command("show")
def volume_show(volume: str, fmt: str = Fmt) -> None:
    show(find(Client(), "volume", volume), fmt)


@app.command("delete")
def volume_delete(volume: str, cascade: bool = typer.Option(False)) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
    c.volume("DELETE", f"/volumes/{vid}", cascade="true" if cascade else None)
    console.print(f"deleted volume {vid}")


@app.command("extend")
def volume_extend(
    volume: str, size: int = typer.Argument(..., help="New size in GiB"), fmt: str = Fmt
) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
    c.volume("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": size}})
    show(wait_volume(c, vid, ("available",)), fmt)


@app.command("migrate")
def volume_migrate(
    volume: str,
    to: str = typer.Option(..., "--to", help="Destination backend"),
    speed: str = typer.Option(None, help="Copy speed cap, e.g. 50M (bytes/s)"),
    wait: bool = typer.Option(False, help="Show progress until done"),
    fmt: str = Fmt,
) -> None:
    """Move a volume's data to another backend, attached or not, snapshots included."""
    c = Client()
    vid = find(c, "volume", volume)["id"]
    body: dict[str, Any] = {"host": to}
    if speed:
        body["bytes_per_sec"] = parse_bytes(speed)
    c.volume("POST", f"/volumes/{vid}/action", {"os-migrate_volume": body})
    if wait:
        migrations.follow(c, vid, fmt)
    else:
        console.print(
            f"migration of {vid} to {to} started; follow it with: ferry volume migration show {vid}"
        )


@app.command("retype")
def volume_retype(
    volume: str,
    new_type: str,
    migration_policy: str = typer.Option("never", help="never or on-demand"),
    wait: bool = typer.Option(False),
    fmt: str = Fmt,
) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
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
        migrations.follow(c, vid, fmt)
    else:
        show(after, fmt)
