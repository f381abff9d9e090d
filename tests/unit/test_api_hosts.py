"""The hosts' APIs on a real `ferry serve` (fake hypervisor): Nova's os-services and os-hypervisors,
Cinder's os-services, the servers' extended attributes; admin only, bad input a 4xx that changes
nothing; and the unmodified `openstack` CLI and `ferry host` driving them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.domain.hosts import hypervisor_id, service_id
from testkit.server import Api, FerryServer
from tests.conftest import fake_hypervisor_server, kernel_image
from tests.unit.test_api_errors import error

pytestmark = pytest.mark.db
SERVICE = service_id("ferry")
HYPERVISOR = hypervisor_id("ferry")
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


@pytest.fixture(scope="module")
def image(server: FerryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return kernel_image(server, tmp_path_factory.mktemp("image"), "hosts-img")


def services(api: Api) -> list[dict[str, Any]]:
    return list(api.ok(api.compute("GET", "/os-services"))["services"])


def the_service(api: Api) -> dict[str, Any]:
    (service,) = services(api)
    return service


def create_server(api: Api, image: str, **extra: str) -> httpx.Response:
    body = {"server": {"name": "s", "imageRef": image, "flavorRef": "1", **extra}}
    return api.compute("POST", "/servers", json=body)


# -- Nova os-services ------------------------------------------------------------------------
def test_the_all_in_one_shows_its_host_as_an_up_compute_service(admin: Api) -> None:
    service = the_service(admin)
    assert service | {"updated_at": None} == {
        "id": SERVICE,
        "binary": "nova-compute",
        "host": "ferry",
        "zone": "nova",
        "status": "enabled",
        "state": "up",
        "updated_at": None,
        "disabled_reason": None,
        "forced_down": False,
    }
    assert service["updated_at"]
    for query, count in (({"host": "ferry"}, 1), ({"host": "other"}, 0), ({"binary": "nova-scheduler"}, 0)):
        assert len(admin.ok(admin.compute("GET", "/os-services", params=query))["services"]) == count


def test_a_disabled_host_gets_no_new_server_and_enabling_it_brings_it_back(admin: Api, image: str) -> None:
    body = {"status": "disabled", "disabled_reason": "disk swap"}
    shown = admin.ok(admin.compute("PUT", f"/os-services/{SERVICE}", json=body))["service"]
    assert (shown["status"], shown["disabled_reason"], shown["state"]) == ("disabled", "disk swap", "up")
    assert "No valid host" in error(create_server(admin, image), 400)
    shown = admin.ok(admin.compute("PUT", f"/os-services/{SERVICE}", json={"status": "enabled"}))["service"]
    assert (shown["status"], shown["disabled_reason"]) == ("enabled", None)
    sid = admin.ok(create_server(admin, image))["server"]["id"]
    assert admin.compute("DELETE", f"/servers/{sid}").status_code == 204


def test_the_legacy_updates_by_host_and_binary(admin: Api) -> None:
    ident = {"host": "ferry", "binary": "nova-compute"}
    answer = admin.ok(admin.compute("PUT", "/os-services/disable", json=ident))
    assert answer == {"service": {**ident, "status": "disabled", "disabled_reason": ""}}
    answer = admin.ok(
        admin.compute("PUT", "/os-services/disable-log-reason", json={**ident, "disabled_reason": "r"})
    )
    assert answer == {"service": {**ident, "status": "disabled", "disabled_reason": "r"}}
    assert the_service(admin)["disabled_reason"] == "r"
    assert admin.ok(admin.compute("PUT", "/os-services/enable", json=ident)) == {
        "service": {**ident, "status": "enabled"}
    }
    assert the_service(admin)["status"] == "enabled"


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (f"/os-services/{SERVICE}", {}, 400),
        (f"/os-services/{SERVICE}", {"status": "paused"}, 400),
        (f"/os-services/{SERVICE}", {"status": "enabled", "disabled_reason": "x"}, 400),
        (f"/os-services/{SERVICE}", {"status": "disabled", "disabled_reason": "x" * 256}, 400),
        (f"/os-services/{SERVICE}", {"status": "disabled", "disabled_reason": ""}, 400),
        (f"/os-services/{SERVICE}", {"forced_down": True}, 400),
        (f"/os-services/{SERVICE}", {"forced_down": "yes"}, 400),
        (f"/os-services/{SERVICE}", {"status": 5}, 400),
        (f"/os-services/{UNKNOWN}", {"status": "disabled"}, 404),
        (f"/os-services/{HYPERVISOR}", {"status": "disabled"}, 404),  # a hypervisor's id is not a service's
        ("/os-services/disable", {"host": "ferry"}, 400),
        ("/os-services/disable", {"binary": "nova-compute"}, 400),
        ("/os-services/disable", {"host": "ferry", "binary": "nova-compute", "disabled_reason": "r"}, 400),
        ("/os-services/disable", {"host": "ferry", "binary": "nova-scheduler"}, 404),
        ("/os-services/disable", {"host": "nowhere", "binary": "nova-compute"}, 404),
        ("/os-services/disable", {"host": 5, "binary": "nova-compute"}, 400),
        ("/os-services/disable-log-reason", {"host": "ferry", "binary": "nova-compute"}, 400),
        ("/os-services/enable", {"host": "ferry", "binary": "nova-compute", "disabled_reason": "r"}, 400),
        ("/os-services/enable", {"host": "nowhere", "binary": "nova-compute"}, 404),
    ],
)
def test_bad_service_updates_are_refused_and_change_nothing(
    admin: Api, path: str, body: dict[str, Any], code: int
) -> None:
    before = the_service(admin)
    error(admin.compute("PUT", path, json=body), code, body)
    assert the_service(admin) == before


# -- Nova os-hypervisors ---------------------------------------------------------------------
def test_hypervisors_show_capacity_and_use(admin: Api, image: str) -> None:
    (summary,) = admin.ok(admin.compute("GET", "/os-hypervisors"))["hypervisors"]
    assert summary == {"id": HYPERVISOR, "hypervisor_hostname": "ferry", "state": "up", "status": "enabled"}
    sid = admin.ok(create_server(admin, image))["server"]["id"]
    try:
        (detail,) = admin.ok(admin.compute("GET", "/os-hypervisors/detail"))["hypervisors"]
        assert admin.ok(admin.compute("GET", f"/os-hypervisors/{HYPERVISOR}"))["hypervisor"] == detail
        assert {k: detail[k] for k in ("hypervisor_type", "host_ip", "vcpus_used", "memory_mb_used")} == {
            "hypervisor_type": "QEMU",
            "host_ip": "127.0.0.1",
            "vcpus_used": 1,
            "memory_mb_used": 256,
        }
        assert detail["running_vms"] == 1 and detail["vcpus"] > 0 and detail["memory_mb"] > 256
        assert detail["free_ram_mb"] == detail["memory_mb"] - 256
    finally:
        admin.compute("DELETE", f"/servers/{sid}")
    for ident in (UNKNOWN, "ferry", SERVICE):
        error(admin.compute("GET", f"/os-hypervisors/{ident}"), 404, ident)


# -- servers ---------------------------------------------------------------------------------
def test_only_admins_see_where_a_server_runs_and_may_choose_it(admin: Api, demo: Api, image: str) -> None:
    sid = demo.ok(create_server(demo, image))["server"]["id"]
    try:
        as_admin = admin.ok(admin.compute("GET", f"/servers/{sid}"))["server"]
        assert as_admin["OS-EXT-SRV-ATTR:host"] == as_admin["OS-EXT-SRV-ATTR:hypervisor_hostname"] == "ferry"
        (listed,) = [
            s
            for s in admin.ok(admin.compute("GET", "/servers/detail", params={"all_tenants": "1"}))["servers"]
            if s["id"] == sid
        ]
        assert listed["OS-EXT-SRV-ATTR:host"] == "ferry"
        as_demo = demo.ok(demo.compute("GET", f"/servers/{sid}"))["server"]
        assert not any(k.startswith("OS-EXT-SRV-ATTR") for k in as_demo)
    finally:
        demo.compute("DELETE", f"/servers/{sid}")
    error(create_server(demo, image, host="ferry"), 403)
    assert "Compute host nowhere could not be found" in error(
        create_server(admin, image, host="nowhere"), 400
    )
    error(create_server(admin, image, host=""), 400)
    picked = admin.ok(create_server(admin, image, host="ferry"))["server"]
    shown = admin.ok(admin.compute("GET", f"/servers/{picked['id']}"))["server"]
    assert shown["OS-EXT-SRV-ATTR:host"] == "ferry"  # Nova's create answer is only the reservation
    admin.compute("DELETE", f"/servers/{picked['id']}")
    assert demo.ok(demo.compute("GET", "/servers"))["servers"] == []


# -- Cinder os-services ----------------------------------------------------------------------
def test_volume_services_one_per_backend_and_host_and_the_scheduler(admin: Api) -> None:
    listed = admin.ok(admin.volume("GET", "/os-services"))["services"]
    assert [(s["binary"], s["host"], s["state"], s["status"]) for s in listed] == [
        ("cinder-volume", "ferry@fast", "up", "enabled"),
        ("cinder-volume", "ferry@bulk", "up", "enabled"),
        ("cinder-scheduler", "ferry", "up", "enabled"),
    ]
    only = admin.ok(admin.volume("GET", "/os-services", params={"binary": "cinder-scheduler"}))["services"]
    assert [s["host"] for s in only] == ["ferry"]
    by_host = admin.ok(admin.volume("GET", "/os-services", params={"host": "ferry@bulk"}))["services"]
    assert [s["binary"] for s in by_host] == ["cinder-volume"]


# -- admin only ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "method", "path", "body"),
    [
        ("compute", "GET", "/os-services", None),
        ("compute", "PUT", f"/os-services/{SERVICE}", {"status": "disabled"}),
        ("compute", "PUT", "/os-services/disable", {"host": "ferry", "binary": "nova-compute"}),
        ("compute", "PUT", "/os-services/disable", {"host": "ferry", "binary": "nova-scheduler"}),
        (
            "compute",
            "PUT",
            "/os-services/disable-log-reason",
            {"host": "ferry", "binary": "nova-compute", "disabled_reason": "r"},
        ),
        ("compute", "PUT", "/os-services/enable", {"host": "ferry", "binary": "nova-compute"}),
        ("compute", "GET", "/os-hypervisors", None),
        ("compute", "GET", "/os-hypervisors/detail", None),
        ("compute", "GET", f"/os-hypervisors/{HYPERVISOR}", None),
        ("volume", "GET", "/os-services", None),
    ],
)
def test_members_are_refused(
    admin: Api, demo: Api, service: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    call = demo.compute if service == "compute" else demo.volume
    assert "Policy does not allow host:" in error(call(method, path, json=body), 403, path)
    assert the_service(admin)["status"] == "enabled"


# -- the clients -----------------------------------------------------------------------------
def run(server: FerryServer, *args: str) -> str:
    env = server.cli_env("ferry-admin")
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def openstack(server: FerryServer, *args: str) -> Any:
    """The unmodified `openstack` CLI listing as JSON (it negotiates compute 2.1, volume 3.27)."""
    return json.loads(run(server, OPENSTACK, *args, "-f", "json"))


def test_the_openstack_cli(server: FerryServer) -> None:
    (service,) = openstack(server, "compute", "service", "list")
    assert (service["Binary"], service["Host"], service["Status"], service["State"]) == (
        "nova-compute",
        "ferry",
        "enabled",
        "up",
    )
    # At 2.1 this is PUT /os-services/disable-log-reason {"host", "binary", "disabled_reason"}.
    run(
        server,
        OPENSTACK,
        "compute",
        "service",
        "set",
        "--disable",
        "--disable-reason",
        "R",
        "ferry",
        "nova-compute",
    )
    (service,) = openstack(server, "compute", "service", "list", "--long")
    assert (service["Status"], service["Disabled Reason"]) == ("disabled", "R")
    run(server, OPENSTACK, "compute", "service", "set", "--enable", "ferry", "nova-compute")
    (hypervisor,) = openstack(server, "hypervisor", "list", "--long")
    assert (hypervisor["Hypervisor Hostname"], hypervisor["Hypervisor Type"], hypervisor["State"]) == (
        "ferry",
        "QEMU",
        "up",
    )
    assert hypervisor["Host IP"] == "127.0.0.1" and hypervisor["vCPUs"] > 0
    volume_services = openstack(server, "volume", "service", "list")
    assert {(s["Binary"], s["Host"], s["State"]) for s in volume_services} == {
        ("cinder-volume", "ferry@fast", "up"),
        ("cinder-volume", "ferry@bulk", "up"),
        ("cinder-scheduler", "ferry", "up"),
    }


def test_the_ferry_host_commands(server: FerryServer) -> None:
    ferry = [sys.executable, "-m", "ferry.cli.main", "host"]
    (listed,) = json.loads(run(server, *ferry, "list", "-f", "json"))
    assert (listed["name"], listed["state"], listed["status"], listed["address"]) == (
        "ferry",
        "up",
        "enabled",
        "127.0.0.1",
    )
    shown = json.loads(run(server, *ferry, "disable", "ferry", "--reason", "swap disks", "-f", "json"))
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "swap disks")
    assert json.loads(run(server, *ferry, "show", "ferry", "-f", "json"))["status"] == "disabled"
    assert json.loads(run(server, *ferry, "disable", "ferry", "-f", "json"))["disabled_reason"] in ("", None)
    assert json.loads(run(server, *ferry, "enable", "ferry", "-f", "json"))["status"] == "enabled"
    missing = subprocess.run(
        [*ferry, "show", "nowhere"],
        env=server.cli_env("ferry-admin"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "No host named 'nowhere'" in missing.stderr
    as_member = subprocess.run(
        [*ferry, "list"], env=server.cli_env("ferry-demo"), capture_output=True, text=True, check=False
    )
    assert as_member.returncode == 1 and "HTTP 403" in as_member.stderr
