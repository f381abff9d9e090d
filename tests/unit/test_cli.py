"""The `ferry` command line as a user runs it (`python -m ferry.cli.main`, credentials from the
clouds.yaml `ferry init` wrote) against a real `ferry serve`: round trips with `-f json`, and
failures that end with exit code 1 and one line on stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.server import FerryServer, free_port

pytestmark = pytest.mark.db


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


def cli(
    server: FerryServer,
    *args: str,
    cloud: str = "ferry",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *args],
        env=env or server.cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code 1 and exactly one line `error: …` on stderr; returns that line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def in_parallel(server: FerryServer, *calls: tuple[tuple[str, ...], dict[str, Any]]) -> list[Any]:
    """Run independent CLI calls side by side (each one is a fresh Python process)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda c: cli(server, *c[0], **c[1]), calls))


def test_volume_round_trip(server: FerryServer) -> None:
    vol = ok_json(cli(server, "volume", "create", "cli-vol", "--size", "1", "-f", "json"))
    assert (vol["name"], vol["size"], vol["status"]) == ("cli-vol", 1, "available")
    vid = vol["id"]
    shown = ok_json(cli(server, "volume", "show", vid, "-f", "json"))
    assert shown["id"] == vid and shown["os-vol-host-attr:host"] == "ferry@bulk#bulk"
    api = server.api("ferry-admin")
    assert vid in [v["id"] for v in api.ok(api.volume("GET", "/volumes"))["volumes"]]

    deleted = cli(server, "volume", "delete", "cli-vol")  # by name
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted volume {vid}"
    assert api.volume("GET", f"/volumes/{vid}").status_code == 404
    line = failed(cli(server, "volume", "show", vid, "-f", "json"))
    assert vid in line


def test_snapshot_round_trip(server: FerryServer) -> None:
    api = server.api("ferry-admin")
    body = {"volume": {"size": 1, "name": "cli-snapped"}}
    vid = api.ok(api.volume("POST", "/volumes", json=body), 202)["volume"]["id"]
    snap = ok_json(cli(server, "snapshot", "create", "cli-snapped", "--name", "cli-snap", "-f", "json"))
    assert (snap["volume_id"], snap["name"], snap["status"]) == (vid, "cli-snap", "available")
    listed = ok_json(cli(server, "snapshot", "list", "--volume", vid, "-f", "json"))
    assert [s["id"] for s in listed] == [snap["id"]]
    deleted = cli(server, "snapshot", "delete", "cli-snap")  # by name; waits until it is gone
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted snapshot {snap['id']}"
    assert api.volume("GET", f"/snapshots/{snap['id']}").status_code == 404
    assert api.ok(api.volume("GET", "/snapshots", params={"volume_id": vid}))["snapshots"] == []


def test_types_and_backends(server: FerryServer) -> None:
    created, backends = in_parallel(
        server,
        (("type", "create", "cli-fast", "--backend", "fast", "--description", "pinned", "-f", "json"), {}),
        (("backend", "list", "-f", "json"), {}),
    )
    vt = ok_json(created)
    assert (vt["name"], vt["description"], vt["extra_specs"]) == (
        "cli-fast",
        "pinned",
        {"volume_backend_name": "fast"},
    )
    pools = ok_json(backends)
    assert sorted(p["name"] for p in pools) == ["ferry@bulk#bulk", "ferry@fast#fast"]
    capacity = {
        p["capabilities"]["volume_backend_name"]: p["capabilities"]["total_capacity_gb"] for p in pools
    }
    assert capacity == {"fast": 100, "bulk": 500}

    types = ok_json(cli(server, "type", "list", "-f", "json"))
    assert [t["extra_specs"] for t in types if t["id"] == vt["id"]] == [{"volume_backend_name": "fast"}]


def write_clouds(tmp: Path, server: FerryServer, **auth: str) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    cloud = {"auth": {**server.cloud("ferry-admin"), **auth}, "region_name": "RegionOne"}
    path = tmp / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"custom": cloud}}))
    return {**server.cli_env(), "OS_CLIENT_CONFIG_FILE": str(path), "OS_CLOUD": "custom"}


def test_failures_are_one_line_and_names_are_data(server: FerryServer, tmp_path: Path) -> None:
    """Failures: exit code 1 and one `error:` line, whatever the message holds (long, or looking
    like Rich markup). Success: a name that looks like markup is printed as it is, in tables too."""
    no_creds = {k: v for k, v in server.cli_env().items() if k != "OS_CLOUD" and not k.startswith("OS_AUTH")}
    unreachable = write_clouds(tmp_path, server, auth_url=f"http://127.0.0.1:{free_port()}/identity/v3")
    cases: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
        (("volume", "create", "zero", "--size", "0"), {}, "Invalid size 0"),
        (("type", "create", "t" * 300), {}, "at most 255 characters (HTTP 400)"),  # longer than a terminal
        (
            ("volume", "create", "x", "--size", "1", "--type", "[red]nope[/red] " + "y" * 100),
            {"cloud": "ferry-demo"},
            "Volume type [red]nope[/red] " + "y" * 100 + " could not be found. (HTTP 404)",
        ),
        (("volume", "list"), {"env": no_creds}, "No credentials"),
        (("volume", "list"), {"env": unreachable}, "Cannot reach Ferry"),
    ]
    name = "[/b][bold]x"
    api = server.api("ferry-admin")
    vid = api.ok(api.volume("POST", "/volumes", json={"volume": {"size": 1, "name": name}}), 202)["volume"][
        "id"
    ]
    wide = {**server.cli_env(), "COLUMNS": "300"}
    shows = [(("volume", "list"), {"env": wide}), (("volume", "show", vid), {"env": wide})]
    *results, table, shown = in_parallel(server, *[c[:2] for c in cases], *shows)
    for (args, _, expected), result in zip(cases, results, strict=True):
        line = failed(result)
        assert expected in line, (args, line)
    for result in (table, shown):
        assert result.returncode == 0, result.stderr
        assert name in result.stdout
