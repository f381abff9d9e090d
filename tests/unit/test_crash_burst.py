"""Issue 10 acceptance, reproduction 1: a real `ferry serve` (fake hypervisor: no QEMU needed) is
SIGKILLed at random moments during a burst of 50 creates, clones, extends, deletes and snapshots
of 1 GiB volumes, restarted each time; within 60 s of the last restart no volume or snapshot is
in a transitional state, no `.part` or unowned file is left, every database size equals its
file's size, and `ferry doctor` is clean. Seeded, so a failure replays."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.server import Api, FerryServer
from tests.conftest import make_server

pytestmark = pytest.mark.db

SEED = 10
OPERATIONS = 50
KILLS = 4
TRANSITIONAL = {"creating", "extending", "deleting", "attaching", "detaching"}


@pytest.fixture()
def fake_serve(tmp_path: Path) -> Iterator[FerryServer]:
    srv = make_server(tmp_path / "ferry")
    cfg = srv.config_path.read_text()
    srv.config_path.write_text(cfg.replace('driver = "qemu"', 'driver = "fake"', 1))
    srv.start()
    yield srv
    srv.stop()


def statuses(api: Api, kind: str) -> dict[str, dict[str, Any]]:
    body = api.ok(api.volume("GET", f"/{kind}/detail", params={"all_tenants": "1"}))
    return {item["id"]: item for item in body[kind]}


def operate(api: Api, rng: random.Random) -> None:
    """One operation chosen by the seeded generator; refusals (4xx) are part of the burst."""
    volumes = [v for v in statuses(api, "volumes").values() if v["status"] == "available"]
    pick = rng.choice(["create", "create", "clone", "extend", "delete", "snapshot", "snapshot-delete"])
    if pick == "create" or not volumes:
        api.volume("POST", "/volumes", json={"volume": {"size": 1}})
        return
    vol = rng.choice(volumes)
    if pick == "clone":
        api.volume("POST", "/volumes", json={"volume": {"source_volid": vol["id"]}})
    elif pick == "extend":
        api.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": vol["size"] + 1}})
    elif pick == "delete":
        api.volume("DELETE", f"/volumes/{vol['id']}", params={"cascade": "true"})
    elif pick == "snapshot":
        api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"]}})
    else:
        snaps = [s for s in statuses(api, "snapshots").values() if s["status"] == "available"]
        if snaps:
            api.volume("DELETE", f"/snapshots/{rng.choice(snaps)['id']}")


def burst(srv: FerryServer, rng: random.Random) -> int:
    """Run the operations, SIGKILLing the server `KILLS` times at seeded random moments and
    restarting it; returns how many kills landed."""
    kill_after = sorted(rng.sample(range(5, OPERATIONS), KILLS))
    kills = 0
    api = srv.api("ferry-admin")
    for i in range(OPERATIONS):
        timer = None
        if kill_after and i == kill_after[0]:
            kill_after.pop(0)
            timer = threading.Timer(rng.uniform(0.0, 0.05), srv.kill)
            timer.start()
        with contextlib.suppress(httpx.TransportError):  # killed mid-request
            operate(api, rng)
        if timer is not None:
            timer.join()
            kills += 1
            srv.start()
            api = srv.api("ferry-admin")
    return kills


def unsettled(srv: FerryServer, api: Api) -> list[str]:
    """Everything that still breaks the acceptance conditions (empty once settled)."""
    problems = [
        f"volume {v['id']} {v['status']}"
        for v in statuses(api, "volumes").values()
        if v["status"] in TRANSITIONAL
    ]
    problems += [
        f"snapshot {s['id']} {s['status']}"
        for s in statuses(api, "snapshots").values()
        if s["status"] in ("creating", "deleting")
    ]
    problems += [f"partial file {p}" for p in (srv.data_dir / "backends").glob("*/volume-*/.*.part")]
    report = api.ok(api.volume("GET", "/ferry-doctor"))
    problems += [f"doctor: {d['kind']} {d['resource']} {d['detail']}" for d in report["drift"]]
    return problems


def file_size(path: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", path], check=True, capture_output=True, text=True
    ).stdout
    return int(json.loads(out)["virtual-size"])


def test_sigkill_during_a_burst_leaves_everything_settled(fake_serve: FerryServer) -> None:
    rng = random.Random(SEED)
    assert burst(fake_serve, rng) == KILLS
    fake_serve.kill()  # and once more after the burst, whatever is still running
    fake_serve.start()
    api = fake_serve.api("ferry-admin")
    deadline = time.monotonic() + 60
    while problems := unsettled(fake_serve, api):
        assert time.monotonic() < deadline, problems
        time.sleep(0.5)
    vols = statuses(api, "volumes")
    assert vols, "the burst created nothing"
    for vid, vol in vols.items():
        if vol["status"] in ("available", "in-use"):
            loc = api.ok(api.volume("GET", f"/volumes/{vid}/location"))["location"]
            assert file_size(loc["layers"][-1]["path"]) == vol["size"] << 30, vol
        elif vol["status"] == "error":
            api.ok(api.volume("DELETE", f"/volumes/{vid}", params={"cascade": "true"}), 202)  # the way out
    repaired = api.ok(api.volume("POST", "/ferry-doctor"))
    assert repaired["healthy"] and repaired["repaired"] == [], repaired
    member = fake_serve.api("ferry-demo")
    assert member.volume("POST", "/ferry-doctor").status_code == 403
