"""Nova key pairs, flavor administration (create, access, extra specs, description, delete) and a
server's own fields (update, metadata, tags, key_name) against a real `ferry serve` with the fake
hypervisor."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit.server import Api, FerryServer
from tests.conftest import fake_hypervisor_server, kernel_image

V22 = {"OpenStack-API-Version": "compute 2.2"}
V235 = {"OpenStack-API-Version": "compute 2.35"}
V255 = {"OpenStack-API-Version": "compute 2.55"}
V261 = {"OpenStack-API-Version": "compute 2.61"}
V226 = {"OpenStack-API-Version": "compute 2.26"}
SSH_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
    + " test@ferry"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


@pytest.fixture(scope="module")
def image(server: FerryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return kernel_image(server, tmp_path_factory.mktemp("image"), "admin-img")


def error(resp: httpx.Response, code: int) -> str:
    assert resp.status_code == code, resp.text
    (body,) = resp.json().values()
    return str(body["message"])


def create_server(
    api: Api, image: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {"server": {"name": "s", "imageRef": image, "flavorRef": "1", **extra}}
    return api.compute("POST", "/servers", json=body, headers=headers)


# -- key pairs -------------------------------------------------------------------------------------
def test_a_key_pair_is_imported_listed_shown_and_deleted(demo: Api) -> None:
    made = demo.compute("POST", "/os-keypairs", json={"keypair": {"name": "imp", "public_key": SSH_KEY}})
    assert made.status_code == 200  # 201 from 2.2
    pair = made.json()["keypair"]
    blob = base64.b64decode(SSH_KEY.split()[1])
    assert pair["fingerprint"] == ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())
    assert "private_key" not in pair and pair["public_key"] == SSH_KEY
    listed = demo.ok(demo.compute("GET", "/os-keypairs", headers=V22))["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["imp"] and listed[0]["keypair"]["type"] == "ssh"
    shown = demo.ok(demo.compute("GET", "/os-keypairs/imp"))["keypair"]
    assert (shown["deleted"], isinstance(shown["id"], int), shown["fingerprint"]) == (
        False,
        True,
        pair["fingerprint"],
    )
    assert error(
        demo.compute("POST", "/os-keypairs", json={"keypair": {"name": "imp", "public_key": SSH_KEY}}), 409
    )
    assert demo.compute("DELETE", "/os-keypairs/imp", headers=V22).status_code == 204
    assert "not found" in error(demo.compute("GET", "/os-keypairs/imp"), 404)


def test_a_generated_pair_returns_its_private_key_once(demo: Api) -> None:
    for kind in ("ssh", "x509"):
        made = demo.compute(
            "POST", "/os-keypairs", json={"keypair": {"name": f"gen-{kind}", "type": kind}}, headers=V22
        )
        assert made.status_code == 201, made.text
        pair = made.json()["keypair"]
        assert pair["type"] == kind and "PRIVATE KEY" in pair["private_key"]
        assert "private_key" not in demo.ok(demo.compute("GET", f"/os-keypairs/gen-{kind}"))["keypair"]
        demo.ok(demo.compute("DELETE", f"/os-keypairs/gen-{kind}"), 202)


@pytest.mark.parametrize(
    "pair",
    [
        {"name": "bad", "public_key": "ssh-rsa not-base64"},
        {"name": "bad", "public_key": "ssh-foo AAAA"},
        {"name": "bad", "public_key": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
        {"name": "bad", "type": "x509", "public_key": "ssh-rsa AAAA"},
        {"name": " edge", "public_key": SSH_KEY},
        {"name": "bad/char"},
        {"name": ""},
        {"name": "x", "type": "pgp"},
    ],
)
def test_bad_key_pairs_are_400(demo: Api, pair: dict[str, Any]) -> None:
    error(demo.compute("POST", "/os-keypairs", json={"keypair": pair}, headers=V22), 400)


def test_key_pairs_are_per_user_and_count_against_key_pairs(admin: Api, demo: Api) -> None:
    admin.ok(admin.compute("PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"key_pairs": 2}}))
    try:
        for i in range(2):
            demo.ok(demo.compute("POST", "/os-keypairs", json={"keypair": {"name": f"k{i}"}}))
        message = error(demo.compute("POST", "/os-keypairs", json={"keypair": {"name": "k2"}}), 403)
        assert message == "Quota exceeded, too many key pairs."
        assert admin.ok(admin.compute("GET", "/os-keypairs"))["keypairs"] == []
        page = demo.ok(demo.compute("GET", "/os-keypairs?limit=1", headers=V235))
        assert [k["keypair"]["name"] for k in page["keypairs"]] == ["k0"] and page["keypairs_links"]
        rest = demo.ok(demo.compute("GET", "/os-keypairs?limit=1&marker=k0", headers=V235))["keypairs"]
        assert [k["keypair"]["name"] for k in rest] == ["k1"]
    finally:
        for i in range(2):
            demo.compute("DELETE", f"/os-keypairs/k{i}")
        admin.ok(admin.compute("DELETE", f"/os-quota-sets/{demo.project_id}"), 202)


def test_a_server_keeps_its_key_name_and_an_unknown_one_is_400(demo: Api, image: str) -> None:
    demo.ok(demo.compute("POST", "/os-keypairs", json={"keypair": {"name": "boot", "public_key": SSH_KEY}}))
    try:
        assert "key_name" in error(create_server(demo, image, key_name="nope"), 400)
        made = demo.ok(create_server(demo, image, key_name="boot", adminPass="given"))["server"]
        assert made["adminPass"] == "given"  # echoed as Nova does; the guest takes none
        sid = made["id"]
        assert demo.ok(demo.compute("GET", f"/servers/{sid}"))["server"]["key_name"] == "boot"
        demo.ok(demo.compute("DELETE", f"/servers/{sid}"), 204)
    finally:
        demo.compute("DELETE", "/os-keypairs/boot")


# -- flavors ---------------------------------------------------------------------------------------
def test_an_admin_creates_describes_and_deletes_a_flavor(admin: Api, demo: Api) -> None:
    body = {
        "flavor": {"name": "big", "ram": "2048", "vcpus": 2, "disk": 5, "id": "big-1", "description": "d"}
    }
    made = admin.ok(admin.compute("POST", "/flavors", json=body, headers=V255))["flavor"]
    assert (made["id"], made["ram"], made["description"], made["os-flavor-access:is_public"]) == (
        "big-1",
        2048,
        "d",
        True,
    )
    assert "already exists" in error(admin.compute("POST", "/flavors", json=body, headers=V255), 409)
    renamed = {**body["flavor"], "id": "other"}
    assert "big already exists" in error(
        admin.compute("POST", "/flavors", json={"flavor": renamed}, headers=V255), 409
    )
    error(
        demo.compute("POST", "/flavors", json={"flavor": {**renamed, "id": "x", "name": "x"}}, headers=V255),
        403,
    )
    updated = admin.ok(
        admin.compute("PUT", "/flavors/big-1", json={"flavor": {"description": "new"}}, headers=V255)
    )
    assert updated["flavor"]["description"] == "new"
    assert demo.ok(demo.compute("GET", "/flavors/big-1"))["flavor"]["name"] == "big"
    listed = demo.ok(demo.compute("GET", "/flavors", headers=V255))["flavors"]
    assert {f["id"]: f["description"] for f in listed}["big-1"] == "new"
    assert admin.compute("DELETE", "/flavors/big-1").status_code == 202
    error(demo.compute("GET", "/flavors/big-1"), 404)


@pytest.mark.parametrize(
    "flavor",
    [
        {"name": "n", "ram": 0, "vcpus": 1, "disk": 0},
        {"name": "n", "ram": 1, "vcpus": -1, "disk": 0},
        {"name": "n", "ram": 1, "vcpus": 1, "disk": 2**31},
        {"name": " n", "ram": 1, "vcpus": 1, "disk": 0},
        {"name": "n", "ram": 1, "vcpus": 1},
        {"name": "n", "ram": 1, "vcpus": 1, "disk": 0, "id": "a/b"},
        {"name": "n", "ram": 1, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": "maybe"},
        {"name": "n", "ram": 1, "vcpus": 1, "disk": 0, "description": "needs 2.55"},
    ],
)
def test_bad_flavors_are_400(admin: Api, flavor: dict[str, Any]) -> None:
    error(admin.compute("POST", "/flavors", json={"flavor": flavor}), 400)


def test_a_private_flavor_is_seen_and_booted_only_where_granted(admin: Api, demo: Api, image: str) -> None:
    body = {
        "flavor": {"name": "secret", "ram": 128, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": False}
    }
    fid = admin.ok(admin.compute("POST", "/flavors", json=body))["flavor"]["id"]
    try:
        names = {f["name"] for f in demo.ok(demo.compute("GET", "/flavors"))["flavors"]}
        assert "secret" not in names and "tiny" in names
        error(demo.compute("GET", f"/flavors/{fid}"), 404)
        assert "could not be found" in error(create_server(demo, image, flavorRef=fid), 400)
        admin_all = admin.ok(admin.compute("GET", "/flavors?is_public=none"))["flavors"]
        assert "secret" in {f["name"] for f in admin_all}
        grant = {"addTenantAccess": {"tenant": demo.project_id}}
        access = admin.ok(admin.compute("POST", f"/flavors/{fid}/action", json=grant))["flavor_access"]
        assert access == [{"flavor_id": fid, "tenant_id": demo.project_id}]
        error(admin.compute("POST", f"/flavors/{fid}/action", json=grant), 409)
        assert "secret" in {f["name"] for f in demo.ok(demo.compute("GET", "/flavors/detail"))["flavors"]}
        sid = demo.ok(create_server(demo, image, flavorRef=fid))["server"]["id"]
        assert "used by 1 server" in error(admin.compute("DELETE", f"/flavors/{fid}"), 409)
        demo.ok(demo.compute("DELETE", f"/servers/{sid}"), 204)
        revoke = {"removeTenantAccess": {"tenant": demo.project_id}}
        assert admin.ok(admin.compute("POST", f"/flavors/{fid}/action", json=revoke))["flavor_access"] == []
        error(admin.compute("POST", f"/flavors/{fid}/action", json=revoke), 404)
        error(admin.compute("GET", "/flavors/1/os-flavor-access"), 404)
        error(admin.compute("POST", "/flavors/1/action", json=grant), 409)
    finally:
        admin.compute("DELETE", f"/flavors/{fid}")


def test_extra_specs_are_set_shown_and_unset(admin: Api, demo: Api) -> None:
    path = "/flavors/2/os-extra_specs"
    assert admin.ok(
        admin.compute("POST", path, json={"extra_specs": {"hw:cpu_policy": "dedicated", "n": 1}})
    ) == {"extra_specs": {"hw:cpu_policy": "dedicated", "n": "1"}}
    assert demo.ok(demo.compute("GET", path))["extra_specs"] == {"hw:cpu_policy": "dedicated", "n": "1"}
    assert demo.ok(demo.compute("GET", f"{path}/n")) == {"n": "1"}
    assert admin.ok(admin.compute("PUT", f"{path}/n", json={"n": "2"})) == {"n": "2"}
    error(admin.compute("PUT", f"{path}/n", json={"m": "2"}), 400)
    error(demo.compute("POST", path, json={"extra_specs": {"a": "b"}}), 403)
    assert demo.ok(demo.compute("GET", "/flavors/2", headers=V261))["flavor"]["extra_specs"]["n"] == "2"
    admin.ok(admin.compute("DELETE", f"{path}/n"), 200)
    admin.ok(admin.compute("DELETE", f"{path}/hw:cpu_policy"), 200)
    error(admin.compute("DELETE", f"{path}/n"), 404)
    assert demo.ok(demo.compute("GET", path))["extra_specs"] == {}


# -- a server's own fields -------------------------------------------------------------------------
def test_a_server_is_renamed_described_and_given_access_ips(demo: Api, image: str) -> None:
    v219 = {"OpenStack-API-Version": "compute 2.19"}
    sid = demo.ok(create_server(demo, image, v219, description="first", metadata={"a": "1"}))["server"]["id"]
    try:
        body = {
            "server": {"name": "renamed", "description": None, "accessIPv4": "10.0.0.1", "accessIPv6": "::1"}
        }
        shown = demo.ok(demo.compute("PUT", f"/servers/{sid}", json=body, headers=v219))["server"]
        assert (shown["name"], shown["description"], shown["accessIPv4"], shown["accessIPv6"]) == (
            "renamed", None, "10.0.0.1", "::1",
        )  # fmt: skip
        assert shown["metadata"] == {"a": "1"}
        assert not {k for k in shown if k.startswith("OS-EXT-") or k == "key_name"}  # as Nova's update
        error(demo.compute("PUT", f"/servers/{sid}", json={"server": {"accessIPv4": "nope"}}), 400)
        error(
            demo.compute("PUT", f"/servers/{sid}", json={"server": {"description": "x"}}), 400
        )  # below 2.19
    finally:
        demo.ok(demo.compute("DELETE", f"/servers/{sid}"), 204)


def test_server_metadata_and_its_limit(admin: Api, demo: Api, image: str) -> None:
    sid = demo.ok(create_server(demo, image, metadata={"a": "1"}))["server"]["id"]
    path = f"/servers/{sid}/metadata"
    try:
        assert demo.ok(demo.compute("POST", path, json={"metadata": {"b": "2"}}))["metadata"] == {
            "a": "1",
            "b": "2",
        }
        assert demo.ok(demo.compute("PUT", path, json={"metadata": {"c": "3"}}))["metadata"] == {"c": "3"}
        assert demo.ok(demo.compute("PUT", f"{path}/d", json={"meta": {"d": "4"}})) == {"meta": {"d": "4"}}
        assert demo.ok(demo.compute("GET", f"{path}/d")) == {"meta": {"d": "4"}}
        error(demo.compute("PUT", f"{path}/d", json={"meta": {"e": "4"}}), 400)
        assert demo.compute("DELETE", f"{path}/d").status_code == 204
        error(demo.compute("GET", f"{path}/d"), 404)
        admin.ok(
            admin.compute(
                "PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"metadata_items": 1}}
            )
        )
        assert "metadata" in error(demo.compute("POST", path, json={"metadata": {"x": "y"}}), 403)
        error(create_server(demo, image, metadata={"x": "1", "y": "2"}), 403)
    finally:
        admin.ok(admin.compute("DELETE", f"/os-quota-sets/{demo.project_id}"), 202)
        demo.ok(demo.compute("DELETE", f"/servers/{sid}"), 204)


def test_server_tags_from_2_26(demo: Api, image: str) -> None:
    sid = demo.ok(create_server(demo, image))["server"]["id"]
    path = f"/servers/{sid}/tags"
    try:
        error(demo.compute("GET", path), 404)
        assert demo.ok(demo.compute("PUT", path, json={"tags": ["a", "b", "a"]}, headers=V226)) == {
            "tags": ["a", "b"]
        }
        assert demo.compute("PUT", f"{path}/c", headers=V226).status_code == 201
        assert demo.compute("PUT", f"{path}/c", headers=V226).status_code == 204
        assert demo.compute("GET", f"{path}/c", headers=V226).status_code == 204
        assert demo.ok(demo.compute("GET", f"/servers/{sid}", headers=V226))["server"]["tags"] == [
            "a",
            "b",
            "c",
        ]
        assert demo.compute("DELETE", f"{path}/a", headers=V226).status_code == 204
        error(demo.compute("GET", f"{path}/a", headers=V226), 404)
        error(demo.compute("PUT", path, json={"tags": ["x/y"]}, headers=V226), 400)
        assert demo.compute("DELETE", path, headers=V226).status_code == 204
        assert demo.ok(demo.compute("GET", path, headers=V226)) == {"tags": []}
    finally:
        demo.ok(demo.compute("DELETE", f"/servers/{sid}"), 204)


def test_the_compute_zone_is_listed_and_its_hosts_shown_to_admins(admin: Api, demo: Api) -> None:
    (zone,) = demo.ok(demo.compute("GET", "/os-availability-zone"))["availabilityZoneInfo"]
    assert zone == {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}
    (detail,) = admin.ok(admin.compute("GET", "/os-availability-zone/detail"))["availabilityZoneInfo"]
    assert detail["hosts"]["ferry"]["nova-compute"]["available"] is True
    error(demo.compute("GET", "/os-availability-zone/detail"), 403)


def test_flavor_lists_filter_and_page_as_nova(admin: Api, demo: Api) -> None:
    ids = [f["id"] for f in demo.ok(demo.compute("GET", "/flavors/detail"))["flavors"]]
    assert ids[:3] == ["1", "2", "3"]
    assert [f["id"] for f in demo.ok(demo.compute("GET", "/flavors?minRam=512"))["flavors"]] == ["2", "3"]
    assert demo.ok(demo.compute("GET", "/flavors/detail?minDisk=1"))["flavors"] == []
    page = demo.ok(demo.compute("GET", "/flavors?limit=1"))
    assert [f["id"] for f in page["flavors"]] == ["1"] and "marker=1" in page["flavors_links"][0]["href"]
    assert [f["id"] for f in demo.ok(demo.compute("GET", "/flavors?marker=2"))["flavors"]] == ["3"]
    error(demo.compute("GET", "/flavors?marker=nope"), 400)
    error(demo.compute("GET", "/flavors?minRam=lots"), 400)


def test_a_numeric_id_and_a_string_is_public_are_taken(admin: Api) -> None:
    body = {
        "flavor": {
            "name": "num",
            "ram": 64,
            "vcpus": 1,
            "disk": 0,
            "id": 4242,
            "os-flavor-access:is_public": "False",
        }
    }
    made = admin.ok(admin.compute("POST", "/flavors", json=body))["flavor"]
    assert (made["id"], made["os-flavor-access:is_public"]) == ("4242", False)
    admin.ok(admin.compute("DELETE", "/flavors/4242"), 202)


PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def set_min_ram(api: Api, image: str, mb: int) -> None:
    change = [{"op": "replace", "path": "/min_ram", "value": mb}]
    api.ok(api.image("PATCH", f"/v2/images/{image}", json=change, headers=PATCH))


def test_a_flavor_below_the_images_min_ram_is_400(admin: Api, image: str) -> None:
    set_min_ram(admin, image, 512)
    try:
        assert error(create_server(admin, image), 400) == "Flavor's memory is too small for requested image."
    finally:
        set_min_ram(admin, image, 0)
