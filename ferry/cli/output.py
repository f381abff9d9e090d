"""Printing results: Rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()
err = Console(stderr=True)

Fmt = typer.Option("table", "-f", "--format", help="table or json")


def show(data: Any, fmt: str, columns: list[str] | None = None) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    if isinstance(data, list):
        cols = columns or (sorted(data[0]) if data else [])
        table = Table(*cols)
        for row in data:
            table.add_row(*(_cell(row.get(c)) for c in cols))
        console.print(table)
        return
    table = Table("Field", "Value")
    for key in sorted(data):
        table.add_row(Text(str(key)), _cell(data[key]))
    console.print(table)


def print_error(message: str) -> None:
    """`error: <message>` as one line on stderr: never wrapped, never read as Rich markup."""
    err.print(Text.assemble(("error:", "red"), " ", " ".join(message.split())), soft_wrap=True)


def _cell(value: Any) -> Text:
    """Values are data, not Rich markup (a volume may be named "[/b]")."""
    if value is None:
        return Text("")
    if isinstance(value, dict | list):
        return Text(json.dumps(value, default=str))
    return Text(str(value))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_bytes(text: str) -> int:
    """'50M' → 52428800; plain digits are bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)
