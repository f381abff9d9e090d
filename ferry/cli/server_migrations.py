"""`ferry server migrate SERVER [--to HOST] [--wait]`: live-migrate a server to another host over
the compute API (`os-migrateLive`), following it with a progress bar (memory copied, rate, dirty
rate, expected downtime) and a summary (time, downtime, serials checked)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ferry.cli.client import Client, CliError
from ferry.cli.lookup import find
from ferry.cli.output import console, err, human_bytes

IN_PROGRESS = ("queued", "preparing", "running", "post-migrating")


def register(app: typer.Typer) -> None:
    app.command("migrate")(server_migrate)


def server_migrate(
    server: str,
    to: str = typer.Option(None, "--to", help="Destination host (default: the scheduler picks one)."),
    wait: bool = typer.Option(False, "--wait", help="Follow it to its end."),
) -> None:
    """Live-migrate a running server to another host; its volumes stay where they are."""
    c = Client()
    sid = find(c, "server", server)["id"]
    before = {m["id"] for m in _migrations(c, sid)}
    c.compute("POST", f"/servers/{sid}/action", {"os-migrateLive": {"host": to, "block_migration": "auto"}})
    mine = next((m for m in _migrations(c, sid) if m["id"] not in before), None)
    if mine is None:  # it ended before we looked: read it from os-migrations
        mine = next(m for m in c.compute("GET", "/os-migrations")["migrations"] if m["instance_uuid"] == sid)
    console.print(
        f"live migration {mine['id']} of server {sid}: {mine['source_compute']} -> {mine['dest_compute']}"
    )
    if wait:
        follow(c, sid, str(mine["id"]))


def _migrations(c: Client, sid: str) -> list[dict[str, Any]]:
    return list(c.compute("GET", f"/servers/{sid}/migrations")["migrations"])


def follow(c: Client, sid: str, mid: str) -> None:
    columns = (
        TextColumn("{task.fields[step]:<11}"),
        BarColumn(),
        TextColumn("{task.fields[memory]}"),
        TextColumn("dirty {task.fields[dirty]}/s"),
        TextColumn("downtime ≈ {task.fields[downtime]} ms"),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("migrate", total=1, step="queued", memory="", dirty="0", downtime="0")
        while True:
            m = c.compute("GET", f"/servers/{sid}/migrations/{mid}")["migration"]
            total = max(m["memory_total_bytes"], 1)
            progress.update(
                task, total=total, completed=m["memory_processed_bytes"], step=m["ferry:step"],
                memory=f"{human_bytes(m['memory_processed_bytes'])}/{human_bytes(total)}",
                dirty=human_bytes(m["ferry:dirty_rate_bytes_per_sec"]),
                downtime=str(m["ferry:expected_downtime_ms"]),
            )  # fmt: skip
            if m["status"] not in IN_PROGRESS:
                if m["status"] == "completed":  # what was left went across in the switchover
                    progress.update(task, completed=total, step="done")
                break
            time.sleep(0.5)
    elapsed = time.monotonic() - started
    if m["status"] != "completed":
        raise CliError(f"live migration {m['status']}: {m['ferry:error'] or 'no reason given'}")
    console.print(
        f"[green]completed[/green] in {elapsed:.1f} s: server {sid} now runs on {m['dest_compute']}; "
        f"downtime {m['ferry:downtime_ms']} ms; {m['ferry:serials_checked']} disk serial(s) checked "
        f"against their volume ids on the destination (at {datetime.now():%H:%M:%S})"
    )
