"""`ferry type …`: create, list and set properties of volume types over the block-storage API."""

from __future__ import annotations

import typer

from ferry.cli.client import Client, CliError
from ferry.cli.output import Fmt, show

app = typer.Typer(help="Volume types.", no_args_is_help=True)


@app.command("create")
def type_create(
    name: str,
    backend: str = typer.Option(None, help="Pin volumes of this type to a backend"),
    description: str = typer.Option(None),
    fmt: str = Fmt,
) -> None:
    specs = {"volume_backend_name": backend} if backend else {}
    body = {"volume_type": {"name": name, "description": description, "extra_specs": specs}}
    show(Client().volume("POST", "/types", body)["volume_type"], fmt)


@app.command("list")
def type_list(fmt: str = Fmt) -> None:
    show(Client().volume("GET", "/types")["volume_types"], fmt, ["id", "name", "extra_specs"])


@app.command("set")
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
