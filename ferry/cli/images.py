"""`ferry image …`: list the images servers boot from, and register one (admin only) through
Ferry's `ferry-images` compute extension."""

from __future__ import annotations

from pathlib import Path

import typer

from ferry.cli.client import Client
from ferry.cli.output import Fmt, console, show

app = typer.Typer(help="Images servers boot from.", no_args_is_help=True)


@app.command("list")
def image_list(fmt: str = Fmt) -> None:
    show(Client().compute("GET", "/images/detail")["images"], fmt, ["id", "name", "status"])


@app.command("register")
def image_register(
    name: str,
    kernel: Path = typer.Option(None),
    initrd: Path = typer.Option(None),
    cmdline: str = typer.Option("console=ttyS0 quiet panic=-1"),
    disk: Path = typer.Option(None),
    disk_format: str = typer.Option("qcow2"),
    config: Path = typer.Option(None, "--config", hidden=True, help="Ignored: registers over the API."),
) -> None:
    """Register a kernel+initrd or a bootable disk: files on the control plane's host (a relative
    path is taken from the current directory)."""
    body = {
        "name": name,
        "kernel": _absolute(kernel),
        "initrd": _absolute(initrd),
        "cmdline": cmdline,
        "disk": _absolute(disk),
        "disk_format": disk_format if disk else None,
    }
    img = Client().compute("POST", "/ferry-images", {"image": body})["image"]
    console.print(f"registered image {img['name']} ({img['id']})")


def _absolute(path: Path | None) -> str | None:
    return str(path.absolute()) if path else None
