"""`ferry volume migration show|cancel|set-speed`, and following a migration or retype to its end
(progress bar, then a summary read from the migration's typed step log).

Reads the step log by event kind and detail keys, never by message text: the kinds it relies on
are the constants below, the strings the migration service writes in each event's `event` field.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ferry.cli.client import Client, CliError
from ferry.cli.lookup import find
from ferry.cli.output import Fmt, console, err, human_bytes, parse_bytes, show

# Step-log event kinds the summary reads.
LAYER_COPIED = "layer-copied"  # one per layer copied and compared
COPY_MODE_SWITCHED = "copy-mode-switched"  # background -> write-blocking (detail: remaining)
SERIAL_CHECKED = "serial-checked"  # QEMU confirmed the serial after the pivot (detail: serial, file)

ACTIVE = ("queued", "running")  # migration statuses that are not final yet

app = typer.Typer(help="A volume's migration.", no_args_is_help=True)


def follow(c: Client, vid: str, fmt: str) -> None:
    """Show the migration of `vid` until it ends, then its summary; CliError unless it succeeded."""
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
            if m["status"] not in ACTIVE:
                progress.update(task, completed=100 if m["status"] == "success" else m["percent"])
                break
            time.sleep(0.5)
    summary(m, fmt)
    if m["status"] != "success":
        raise CliError(f"migration {m['status']}: {m['error'] or 'cancelled'}")


def summary(m: dict[str, Any], fmt: str) -> None:
    """What a finished migration did, from its record and its step log."""
    if fmt == "json":
        print(json.dumps(m, indent=2))
        return
    events = m["steps"]
    switched = any(e["event"] == COPY_MODE_SWITCHED for e in events)
    serial = next((e["detail"].get("serial") for e in events if e["event"] == SERIAL_CHECKED), None)
    copied = sum(1 for e in events if e["event"] == LAYER_COPIED)
    started, finished = m["started_at"], m["finished_at"]
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


@app.command("show")
def migration_show(volume: str, fmt: str = Fmt) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
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


@app.command("cancel")
def migration_cancel(volume: str) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
    c.volume("POST", f"/volumes/{vid}/action", {"ferry-migrate_cancel": {}})
    console.print(f"cancel requested for the migration of {vid}")


@app.command("set-speed")
def migration_set_speed(
    volume: str, speed: str = typer.Argument(..., help="bytes/s, e.g. 50M; 0 = unlimited")
) -> None:
    c = Client()
    vid = find(c, "volume", volume)["id"]
    c.volume(
        "POST", f"/volumes/{vid}/action", {"ferry-migrate_set_speed": {"bytes_per_sec": parse_bytes(speed)}}
    )
    console.print(f"speed of the migration of {vid} set to {speed}/s")
