"""`ferry host …`: the hypervisor hosts, their state and use, and taking one out of scheduling
(`disable`, with a reason) and back (`enable`), over the compute API's os-hypervisors and
os-services (admin)."""

from __future__ import annotations

from typing import Any

import typer

from ferry.cli.client import Client, CliError
from ferry.cli.output import Fmt, show

app = typer.Typer(help="Hypervisor hosts (admin).", no_args_is_help=True)
COLUMNS = ["name", "address", "state", "status", "disabled_reason", "vcpus", "ram_mb", "servers", "heartbeat"]


def _hosts(c: Client) -> list[dict[str, Any]]:
    """Each host: its hypervisor (capacity, use) joined with its compute service (heartbeat, reason)."""
    services = {s["host"]: s for s in c.compute("GET", "/os-services")["services"]}
    rows = []
    for h in c.compute("GET", "/os-hypervisors/detail")["hypervisors"]:
        service = services.get(h["hypervisor_hostname"], {})
        rows.append(
            {
                "name": h["hypervisor_hostname"],
                "address": h["host_ip"],
                "state": h["state"],
                "status": h["status"],
                "disabled_reason": service.get("disabled_reason"),
                "vcpus": f"{h['vcpus_used']}/{h['vcpus']}",
                "ram_mb": f"{h['memory_mb_used']}/{h['memory_mb']}",
                "servers": h["running_vms"],
                "heartbeat": service.get("updated_at"),
            }
        )
    return rows


def _host(c: Client, name: str) -> dict[str, Any]:
    found = next((h for h in _hosts(c) if h["name"] == name), None)
    if found is None:
        raise CliError(f"No host named {name!r}.")
    return found


@app.command("list")
def host_list(fmt: str = Fmt) -> None:
    show(_hosts(Client()), fmt, COLUMNS)


@app.command("show")
def host_show(name: str, fmt: str = Fmt) -> None:
    show(_host(Client(), name), fmt)


@app.command("disable")
def host_disable(
    name: str,
    reason: str = typer.Option(None, "--reason", help="Why (shown in host and service lists)"),
    fmt: str = Fmt,
) -> None:
    """Take a host out of scheduling: nothing new goes there; its servers keep running."""
    c = Client()
    body = {"host": name, "binary": "nova-compute"}
    if reason:
        c.compute("PUT", "/os-services/disable-log-reason", {**body, "disabled_reason": reason})
    else:
        c.compute("PUT", "/os-services/disable", body)
    show(_host(c, name), fmt)


@app.command("enable")
def host_enable(name: str, fmt: str = Fmt) -> None:
    c = Client()
    c.compute("PUT", "/os-services/enable", {"host": name, "binary": "nova-compute"})
    show(_host(c, name), fmt)
