"""`ferry backend list`: the storage backends, from the block-storage scheduler's pool stats."""

from __future__ import annotations

import typer

from ferry.cli.client import Client
from ferry.cli.output import Fmt, human_bytes, show

app = typer.Typer(help="Storage backends.", no_args_is_help=True)


@app.command("list")
def backend_list(fmt: str = Fmt) -> None:
    pools = Client().volume("GET", "/scheduler-stats/get_pools", detail="true")["pools"]
    rows = [
        {
            "name": p["name"].split("@", 1)[-1].split("#", 1)[0],  # host@backend#pool
            "backend_name": p["capabilities"]["volume_backend_name"],  # what types ask for
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
        ["name", "backend_name", "host", "format", "capacity_gb", "provisioned_gb", "allocated"],
    )
