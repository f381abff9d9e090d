"""`ferry server …`: servers (QEMU guests) over the compute API: create, list, show, delete, power
actions, volume attach/detach, and the console log (`os-getConsoleOutput`, or followed through
Ferry's `ferry-console` extension)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ferry.cli import server_migrations
from ferry.cli.client import Client, CliError
from ferry.cli.lookup import find, wait_server
from ferry.cli.output import Fmt, console, err, show

SERVER_COLUMNS = ["id", "name", "status", "os-extended-volumes:volumes_attached"]
CONSOLE_IDLE_S = 0.5  # the guest writes its console to a file: poll it, but only when it was idle
# `--config` used to locate the local run dir; the console now comes over the API. Accepted, ignored.
IgnoredConfig = typer.Option(None, "--config", hidden=True, help="Ignored: the API serves the console.")

app = typer.Typer(help="Servers (QEMU guests).", no_args_is_help=True)
add_app = typer.Typer(help="Attach things to a server.", no_args_is_help=True)
remove_app = typer.Typer(help="Detach things from a server.", no_args_is_help=True)
app.add_typer(add_app, name="add")
app.add_typer(remove_app, name="remove")
server_migrations.register(app)


@app.command("create")
def server_create(
    name: str,
    image: str = typer.Option("ferry-test-guest"),
    flavor: str = typer.Option("tiny"),
    fmt: str = Fmt,
) -> None:
    c = Client()
    srv = c.compute("POST", "/servers", {"server": {"name": name, "imageRef": image, "flavorRef": flavor}})
    show(wait_server(c, srv["server"]["id"], "ACTIVE"), fmt)


@app.command("list")
def server_list(fmt: str = Fmt) -> None:
    show(Client().compute("GET", "/servers/detail")["servers"], fmt, SERVER_COLUMNS)


@app.command("show")
def server_show(server: str, fmt: str = Fmt) -> None:
    show(find(Client(), "server", server), fmt)


@app.command("delete")
def server_delete(server: str) -> None:
    c = Client()
    sid = find(c, "server", server)["id"]
    c.compute("DELETE", f"/servers/{sid}")
    console.print(f"deleted server {sid}")


def _action(server: str, body: dict[str, Any], want: str) -> None:
    c = Client()
    sid = find(c, "server", server)["id"]
    c.compute("POST", f"/servers/{sid}/action", body)
    srv = wait_server(c, sid, want)
    console.print(f"server {sid} is {srv['status']}")


@app.command("stop")
def server_stop(server: str) -> None:
    _action(server, {"os-stop": None}, "SHUTOFF")


@app.command("start")
def server_start(server: str) -> None:
    _action(server, {"os-start": None}, "ACTIVE")


@app.command("reboot")
def server_reboot(server: str, hard: bool = typer.Option(True)) -> None:
    _action(server, {"reboot": {"type": "HARD" if hard else "SOFT"}}, "ACTIVE")


@add_app.command("volume")
def server_add_volume(server: str, volume: str, fmt: str = Fmt) -> None:
    c = Client()
    sid, vid = find(c, "server", server)["id"], find(c, "volume", volume)["id"]
    show(
        c.compute("POST", f"/servers/{sid}/os-volume_attachments", {"volumeAttachment": {"volumeId": vid}})[
            "volumeAttachment"
        ],
        fmt,
    )


@remove_app.command("volume")
def server_remove_volume(server: str, volume: str) -> None:
    c = Client()
    sid, vid = find(c, "server", server)["id"], find(c, "volume", volume)["id"]
    c.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    console.print(f"detached volume {vid} from server {sid}")


@app.command("console")
def server_console(
    server: str,
    follow: bool = typer.Option(False, "--follow/--no-follow", help="Keep printing until Ctrl-C."),
    lines: int = typer.Option(None, "--lines", help="Only the last N lines (without --follow)."),
    config: Path = IgnoredConfig,
) -> None:
    """Print the server's console log, or follow it until Ctrl-C or the server is deleted."""
    c = Client()
    sid = find(c, "server", server)["id"]
    if not follow:
        print_console(c, sid, lines)
        return
    with contextlib.suppress(KeyboardInterrupt):  # the usual way to stop following: not a failure
        follow_console(c, sid)


def print_console(c: Client, sid: str, lines: int | None) -> None:
    """The console log as Nova returns it (`length` null: all of it)."""
    body = {"os-getConsoleOutput": {"length": lines}}
    write(c.compute("POST", f"/servers/{sid}/action", body)["output"])


def follow_console(c: Client, sid: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """Print the console log from its first byte and keep printing what the guest adds; returns
    when the server is deleted (HTTP 404)."""
    offset = 0
    while True:
        try:
            got = c.compute("GET", f"/servers/{sid}/ferry-console", offset=offset)
        except CliError as e:
            if e.status != 404:
                raise
            err.print(f"server {sid} is gone: console closed")
            return
        write(got["output"])
        if got["offset"] == offset:
            sleep(CONSOLE_IDLE_S)
        offset = got["offset"]


def write(text: str) -> None:
    """Console text as the guest printed it (never Rich markup), at once."""
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
