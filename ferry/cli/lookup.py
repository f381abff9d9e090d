"""Finding resources the user names (by id or by name) and waiting for them to settle, over the API.

Shared by the resource commands; holds no command of its own."""

from __future__ import annotations

import time
from typing import Any

from ferry.cli.client import Client, CliError


def find(c: Client, kind: str, ref: str) -> dict[str, Any]:
    """The volume, snapshot or server whose id or (unique) name is `ref`."""
    if kind == "volume":
        try:
            return dict(c.volume("GET", f"/volumes/{ref}")["volume"])
        except CliError:
            found = c.volume("GET", "/volumes/detail", name=ref)["volumes"]
    elif kind == "snapshot":
        try:
            return dict(c.volume("GET", f"/snapshots/{ref}")["snapshot"])
        except CliError:
            found = [s for s in c.volume("GET", "/snapshots/detail")["snapshots"] if s["name"] == ref]
    else:
        try:
            return dict(c.compute("GET", f"/servers/{ref}")["server"])
        except CliError:
            found = [s for s in c.compute("GET", "/servers/detail")["servers"] if s["name"] == ref]
    if len(found) != 1:
        raise CliError(f"{'No' if not found else 'More than one'} {kind} named or with id {ref!r}.")
    return dict(found[0])


def wait_volume(c: Client, vid: str, want: tuple[str, ...], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        vol = c.volume("GET", f"/volumes/{vid}")["volume"]
        if vol["status"] in want:
            return dict(vol)
        if vol["status"].startswith("error"):
            raise CliError(f"Volume {vid} went to status {vol['status']}.")
        if time.monotonic() > deadline:
            raise CliError(f"Volume {vid} is still {vol['status']} after {timeout:.0f} s.")
        time.sleep(0.3)


def wait_server(c: Client, sid: str, want: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        srv = c.compute("GET", f"/servers/{sid}")["server"]
        if srv["status"] == want and not srv["OS-EXT-STS:task_state"]:
            return dict(srv)
        if srv["status"] == "ERROR":
            raise CliError(f"server {sid} is in ERROR: {(srv.get('fault') or {}).get('message')}")
        if time.monotonic() > deadline:
            raise CliError(f"server {sid} is still {srv['status']}")
        time.sleep(0.3)
