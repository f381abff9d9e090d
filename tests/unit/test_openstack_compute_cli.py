"""The unmodified `openstack` CLI on Ferry's compute quotas, limits, flavors and key pairs (a real
`ferry serve` with the fake hypervisor; no guest is needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.server import FerryServer
from tests.conftest import fake_hypervisor_server, kernel_image

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


def openstack(srv: FerryServer, *args: str, cloud: str = "ferry-admin") -> Any:
    done = subprocess.run(
        [OPENSTACK, *args], env=srv.cli_env(cloud), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if "json" in args else done.stdout


def test_quota_set_show_and_limits(server: FerryServer) -> None:
    openstack(
        server, "quota", "set", "--instances", "2", "--cores", "4", "--ram", "1024", "--volumes", "5", "demo"
    )
    rows = openstack(server, "quota", "show", "demo", "-f", "json")
    shown = {row["Resource"]: row["Limit"] for row in rows}
    assert (shown["instances"], shown["cores"], shown["ram"], shown["volumes"]) == (2, 4, 1024, 5)
    assert (shown["key-pairs"], shown["properties"], shown["server-groups"]) == (100, 128, 10)
    usage = openstack(server, "quota", "show", "--usage", "demo", "-f", "json")
    assert {row["Resource"]: row["In Use"] for row in usage}["instances"] == 0
    limits = openstack(server, "limits", "show", "--absolute", "-f", "json", cloud="ferry-demo")
    by = {row["Name"]: row["Value"] for row in limits}  # the SDK's names for Nova's and Cinder's
    assert (by["max_total_instances"], by["max_total_cores"], by["max_total_ram_size"]) == (2, 4, 1024)
    assert (by["total_instances_used"], by["max_total_volumes"]) == (0, 5)


def test_flavor_create_set_show_and_delete(server: FerryServer) -> None:
    made = openstack(
        server, "flavor", "create", "--ram", "128", "--vcpus", "1", "--disk", "0", "--private",
        "--project", "demo", "--property", "hw:a=b", "cli-flavor", "-f", "json",
    )  # fmt: skip
    assert (made["ram"], made["os-flavor-access:is_public"]) == (128, False)
    openstack(server, "flavor", "set", "--property", "c=d", "cli-flavor")
    shown = openstack(server, "flavor", "show", "cli-flavor", "-f", "json")
    assert shown["properties"] == {"hw:a": "b", "c": "d"}
    listed = openstack(server, "flavor", "list", "-f", "json", cloud="ferry-demo")
    assert "cli-flavor" in {f["Name"] for f in listed}  # granted to demo
    openstack(server, "flavor", "delete", "cli-flavor")
    assert "cli-flavor" not in {f["Name"] for f in openstack(server, "flavor", "list", "--all", "-f", "json")}


def test_keypair_create_list_show_and_delete(server: FerryServer, tmp_path: Path) -> None:
    private = openstack(server, "keypair", "create", "cli-key", cloud="ferry-demo")
    assert "PRIVATE KEY" in private
    listed = openstack(server, "keypair", "list", "-f", "json", cloud="ferry-demo")
    assert [k["Name"] for k in listed] == ["cli-key"]
    shown = openstack(server, "keypair", "show", "cli-key", "-f", "json", cloud="ferry-demo")
    assert shown["name"] == "cli-key" and shown["fingerprint"]
    openstack(server, "keypair", "delete", "cli-key", cloud="ferry-demo")
    assert openstack(server, "keypair", "list", "-f", "json", cloud="ferry-demo") == []


def test_server_create_with_a_key_then_set_and_show(server: FerryServer, tmp_path: Path) -> None:
    image = kernel_image(server, tmp_path, "cli-img")
    openstack(server, "keypair", "create", "boot-key", cloud="ferry-demo")
    made = openstack(
        server, "server", "create", "--image", image, "--flavor", "tiny", "--key-name", "boot-key",
        "--property", "role=db", "--nic", "none", "--wait", "cli-server", "-f", "json", cloud="ferry-demo",
    )  # fmt: skip
    try:
        openstack(
            server,
            "server",
            "set",
            "--name",
            "renamed",
            "--property",
            "tier=1",
            made["id"],
            cloud="ferry-demo",
        )
        shown = openstack(server, "server", "show", made["id"], "-f", "json", cloud="ferry-demo")
        assert (shown["name"], shown["key_name"]) == ("renamed", "boot-key")
        assert shown["properties"] == {"role": "db", "tier": "1"}
    finally:
        openstack(server, "server", "delete", "--wait", made["id"], cloud="ferry-demo")
        openstack(server, "keypair", "delete", "boot-key", cloud="ferry-demo")
