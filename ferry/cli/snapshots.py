"""`ferry snapshot …`: create, list, show and delete snapshots over the block-storage API."""

from __future__ import annotations

import time

import typer

from ferry.cli.client import Client, CliError
from ferry.cli.lookup import find
from ferry.cli.output import Fmt, console, show

app = typer.Typer(help="Snapshots.", no_args_is_help=True)


@app.command("create")
def snapshot_create(
    volume: str, name: str = typer.Option(None), description: str = typer.Option(None), fmt: str = Fmt
) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
    # force: an attached volume is snapshotted live (Cinder asks for it below microversion 3.66)
    body = {"snapshot": {"volume_id": vid, "name": name, "description": description, "force": True}}
    show(c.volume("POST", "/snapshots", body)["snapshot"], fmt)


@app.command("list")
def snapshot_list(volume: str = typer.Option(None), fmt: str = Fmt) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"] if volume else None
    show(
        c.volume("GET", "/snapshots/detail", volume_id=vid)["snapshots"],
        fmt,
        ["id", "name", "status", "size", "volume_id"],
    )


@app.command("show")
def snapshot_show(snapshot: str, fmt: str = Fmt) -> None:
    show(find(Client(), "snapshot", snapshot), fmt)


@app.command("delete")
def snapshot_delete(snapshot: str, wait: bool = typer.Option(True)) -> None:
    c = Client()
    sid = find(c, "snapshot", snapshot)["id"]
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
