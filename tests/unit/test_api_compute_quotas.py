"""Nova quotas against a real `ferry serve` (fake hypervisor): os-quota-sets (detail, defaults,
update, delete), the `default` class, compute limits, the claim on server create and its release
on delete, a race of creates that must not overshoot, and that volume quotas stay apart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.server import Api, FerryServer
from tests.conftest import kernel_image, make_server

V257 = {"OpenStack-API-Version": "compute 2.57"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    """The fake hypervisor with Nova's and Cinder's default quotas."""
    srv = make_server(tmp_path_factory.mktemp("ferry"), quotas="")
    cfg = srv.config_path.read_text()
    srv.config_path.write_text(cfg.replace('driver = "qemu"', 'driver = "fake"', 1))
    srv.start()
    yield srv
    srv.shutdown()
    assert srv.log_problems() == []


@pytest.fixture(scope="module")
def image(server: FerryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return kernel_image(server, tmp_path_factory.mktemp("image"), "quota-img")


@pytest.fixture(autouse=True)
def fresh(admin: Api, demo: Api) -> Iterator[None]:
    yield
    admin.ok(admin.compute("DELETE", f"/os-quota-sets/{demo.project_id}"), 202)
    for srv in admin.ok(admin.compute("GET", "/servers?all_tenants=1"))["servers"]:
        admin.ok(admin.compute("DELETE", f"/servers/{srv['id']}"), 204)


def create(api: Api, image: str, flavor: str = "1") -> httpx.Response:
    return api.compute(
        "POST", "/servers", json={"server": {"name": "q", "imageRef": image, "flavorRef": flavor}}
    )


def quota_set(api: Api, project: str, suffix: str = "", **kw: Any) -> dict[str, Any]:
    return dict(api.ok(api.compute("GET", f"/os-quota-sets/{project}{suffix}", **kw))["quota_set"])


def error(resp: httpx.Response, code: int) -> str:
    assert resp.status_code == code, resp.text
    (body,) = resp.json().values()
    return str(body["message"])


def test_a_project_shows_novas_defaults_at_each_microversion(demo: Api) -> None:
    old = quota_set(demo, demo.project_id)
    assert old == {
        "id": demo.project_id,
        "instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100, "metadata_items": 128,
        "server_groups": 10, "server_group_members": 10, "injected_files": 5,
        "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
        "floating_ips": 10, "fixed_ips": -1, "security_groups": 10, "security_group_rules": 20,
    }  # fmt: skip
    new = quota_set(demo, demo.project_id, headers=V257)
    assert set(old) - set(new) == {
        "injected_files", "injected_file_content_bytes", "injected_file_path_bytes",
        "floating_ips", "fixed_ips", "security_groups", "security_group_rules",
    }  # fmt: skip
    assert quota_set(demo, demo.project_id, "/defaults", headers=V257) == new
    assert "volumes" not in old


def test_a_server_claims_instances_cores_and_ram_and_its_delete_frees_them(
    admin: Api, demo: Api, image: str
) -> None:
    sid = demo.ok(create(demo, image, "3"))["server"]["id"]  # medium: 2 vcpus, 1024 MB
    detail = quota_set(demo, demo.project_id, "/detail")
    assert detail["instances"] == {"limit": 10, "in_use": 1, "reserved": 0}
    assert (detail["cores"]["in_use"], detail["ram"]["in_use"]) == (2, 1024)
    absolute = demo.ok(demo.compute("GET", "/limits"))["limits"]["absolute"]
    assert (absolute["maxTotalInstances"], absolute["totalInstancesUsed"]) == (10, 1)
    assert (absolute["maxTotalCores"], absolute["totalCoresUsed"]) == (20, 2)
    assert (absolute["maxTotalRAMSize"], absolute["totalRAMUsed"]) == (51200, 1024)
    assert "maxPersonality" in absolute
    assert "maxPersonality" not in demo.ok(demo.compute("GET", "/limits", headers=V257))["limits"]["absolute"]

    admin.ok(admin.compute("PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"instances": 1}}))
    message = error(create(demo, image), 403)
    assert message == "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    demo.ok(demo.compute("DELETE", f"/servers/{sid}"), 204)
    assert quota_set(demo, demo.project_id, "/detail")["instances"]["in_use"] == 0
    demo.ok(create(demo, image))


def test_cores_and_ram_refuse_as_nova(admin: Api, demo: Api, image: str) -> None:
    body = {"quota_set": {"cores": "3", "ram": 1024}}
    shown = admin.ok(admin.compute("PUT", f"/os-quota-sets/{demo.project_id}", json=body))["quota_set"]
    assert (shown["cores"], shown["ram"], "id" in shown) == (3, 1024, False)
    demo.ok(create(demo, image, "3"))
    assert (
        error(create(demo, image, "3"), 403)
        == "Quota exceeded for cores: Requested 2, but already used 2 of 3 cores"
    )
    assert error(create(demo, image, "1"), 403).startswith(
        "Quota exceeded for ram: Requested 256, but already used 1024"
    )


def test_a_limit_below_usage_needs_force(admin: Api, demo: Api, image: str) -> None:
    demo.ok(create(demo, image))
    demo.ok(create(demo, image))
    path = f"/os-quota-sets/{demo.project_id}"
    message = error(admin.compute("PUT", path, json={"quota_set": {"instances": 1}}), 400)
    assert (
        message == "Quota limit 1 for instances must be greater than or equal to already used and reserved 2."
    )
    forced = admin.ok(admin.compute("PUT", path, json={"quota_set": {"instances": 1, "force": True}}))
    assert forced["quota_set"]["instances"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"quota_set": {"volumes": 3}},
        {"quota_set": {"instances": -2}},
        {"quota_set": {"instances": 2**31}},
        {"quota_set": {"instances": "many"}},
        {"quota_set": {"instances": True}},
        {"quota_set": {"instances": 1, "force": "maybe"}},
        {"quota_set": []},
        {"quota": {"instances": 1}},
    ],
)
def test_bad_updates_are_400(admin: Api, demo: Api, body: Any) -> None:
    error(admin.compute("PUT", f"/os-quota-sets/{demo.project_id}", json=body), 400)


def test_network_keys_are_refused_from_2_36(admin: Api, demo: Api) -> None:
    path = f"/os-quota-sets/{demo.project_id}"
    admin.ok(admin.compute("PUT", path, json={"quota_set": {"floating_ips": 3}}))
    v236 = {"OpenStack-API-Version": "compute 2.36"}
    assert "floating_ips" in error(
        admin.compute("PUT", path, json={"quota_set": {"floating_ips": 3}}, headers=v236), 400
    )


def test_members_read_their_own_and_only_admins_set(admin: Api, demo: Api) -> None:
    path = f"/os-quota-sets/{demo.project_id}"
    error(demo.compute("PUT", path, json={"quota_set": {"instances": 50}}), 403)
    error(demo.compute("GET", f"/os-quota-sets/{admin.project_id}"), 403)
    error(demo.compute("DELETE", path), 403)
    error(admin.compute("GET", "/os-quota-sets/no-such-project"), 404)


def test_compute_and_volume_quotas_are_apart(admin: Api, demo: Api) -> None:
    admin.ok(admin.compute("PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"instances": 4}}))
    admin.ok(admin.volume("PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"volumes": 4}}))
    admin.ok(admin.volume("DELETE", f"/os-quota-sets/{demo.project_id}"), 200)  # Cinder's reset…
    assert quota_set(demo, demo.project_id)["instances"] == 4  # …leaves Nova's alone
    admin.ok(admin.volume("PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"volumes": 4}}))
    admin.ok(admin.compute("DELETE", f"/os-quota-sets/{demo.project_id}"), 202)
    assert quota_set(demo, demo.project_id)["instances"] == 10
    volume_set = admin.ok(admin.volume("GET", f"/os-quota-sets/{demo.project_id}"))["quota_set"]
    assert (volume_set["volumes"], "instances" in volume_set) == (4, False)
    admin.ok(admin.volume("DELETE", f"/os-quota-sets/{demo.project_id}"), 200)


def test_the_default_class_moves_every_projects_default(admin: Api, demo: Api) -> None:
    path = "/os-quota-class-sets/default"
    try:
        shown = admin.ok(admin.compute("PUT", path, json={"quota_class_set": {"instances": 7}}))
        assert shown["quota_class_set"]["instances"] == 7
        assert admin.ok(admin.compute("GET", path))["quota_class_set"]["id"] == "default"
        assert quota_set(demo, demo.project_id)["instances"] == 7
        assert quota_set(demo, demo.project_id, "/defaults")["instances"] == 7
        error(demo.compute("PUT", path, json={"quota_class_set": {"instances": 70}}), 403)
    finally:
        admin.ok(admin.compute("PUT", path, json={"quota_class_set": {"instances": 10}}))


def test_parallel_creates_never_exceed_the_instances_quota(admin: Api, demo: Api, image: str) -> None:
    limit, tries = 3, 10
    admin.ok(
        admin.compute("PUT", f"/os-quota-sets/{demo.project_id}", json={"quota_set": {"instances": limit}})
    )
    codes: list[int] = []
    start = threading.Barrier(tries)

    def one() -> None:
        with httpx.Client(timeout=120) as client:
            caller = Api(demo.base, demo.token, demo.project_id, client)
            start.wait()
            codes.append(create(caller, image).status_code)

    threads = [threading.Thread(target=one) for _ in range(tries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202] * limit + [403] * (tries - limit)
    assert len(demo.ok(demo.compute("GET", "/servers"))["servers"]) == limit
