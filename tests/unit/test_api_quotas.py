"""Cinder quotas against a real `ferry serve`: os-quota-sets (with usage), defaults, the `default`
quota class, limits, enforcement on create, snapshot, extend and retype, bad input and who may
read or set what."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.server import Api, FerryServer
from tests.conftest import make_server

GLOBAL_KEYS = {
    "volumes",
    "snapshots",
    "gigabytes",
    "per_volume_gigabytes",
    "backups",
    "backup_gigabytes",
    "groups",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    """A server with Cinder's default quotas (the shared fixture's are unlimited)."""
    srv = make_server(tmp_path_factory.mktemp("ferry"), quotas="")
    srv.start()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


@pytest.fixture(scope="module")
def other(server: FerryServer) -> Api:
    """A member of another project."""
    return server.api(server.add_user("outsider", "outsider-password", "elsewhere", "member"))


@pytest.fixture(autouse=True)
def fresh_quotas(admin: Api, demo: Api) -> Iterator[None]:
    """Every test starts from the configured defaults and leaves no volume behind."""
    yield
    admin.ok(admin.volume("DELETE", f"/os-quota-sets/{demo.project_id}"), 200)
    for vol in admin.ok(admin.volume("GET", "/volumes?all_tenants=1"))["volumes"]:
        admin.volume("DELETE", f"/volumes/{vol['id']}?cascade=true")
    deadline = time.monotonic() + 30
    while admin.ok(admin.volume("GET", "/volumes?all_tenants=1"))["volumes"]:
        assert time.monotonic() < deadline, "volumes left behind"
        time.sleep(0.05)


def error(resp: httpx.Response, code: int, kind: str) -> str:
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    body = resp.json()
    if resp.request.url.path.startswith("/identity"):
        kind = "error"  # Keystone's shape
    assert list(body) == [kind], body
    return str(body[kind]["message"])


def quota_set(api: Api, project: str, **params: Any) -> dict[str, Any]:
    qs: dict[str, Any] = api.ok(api.volume("GET", f"/os-quota-sets/{project}", params=params), 200)[
        "quota_set"
    ]
    return qs


def set_quotas(admin: Api, project: str, **limits: Any) -> httpx.Response:
    return admin.volume("PUT", f"/os-quota-sets/{project}", json={"quota_set": limits})


def create(api: Api, size: int = 1, **fields: Any) -> httpx.Response:
    return api.volume("POST", "/volumes", json={"volume": {"size": size, **fields}})


def wait_available(api: Api, vid: str) -> None:
    deadline = time.monotonic() + 30
    while (status := api.ok(api.volume("GET", f"/volumes/{vid}"))["volume"]["status"]) != "available":
        assert status not in ("error", "error_extending") and time.monotonic() < deadline, status
        time.sleep(0.05)


# -- reading ----------------------------------------------------------------------------------------
def test_show_has_cinder_keys_and_defaults(admin: Api, demo: Api) -> None:
    qs = quota_set(admin, demo.project_id)
    assert set(qs) >= GLOBAL_KEYS and qs["id"] == demo.project_id
    assert (qs["volumes"], qs["snapshots"], qs["gigabytes"], qs["per_volume_gigabytes"]) == (10, 10, 1000, -1)
    assert quota_set(demo, demo.project_id) == qs  # a member reads their own project's
    defaults = admin.ok(admin.volume("GET", f"/os-quota-sets/{demo.project_id}/defaults"))["quota_set"]
    assert defaults["volumes"] == 10 and defaults["id"] == demo.project_id


def test_usage_counts_volumes_snapshots_and_gigabytes(admin: Api, demo: Api) -> None:
    before = quota_set(admin, demo.project_id, usage="True")
    assert before["volumes"] == {"limit": 10, "in_use": 0, "reserved": 0}
    vol = demo.ok(create(demo, 2), 202)["volume"]
    wait_available(demo, vol["id"])
    demo.ok(demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"]}}), 202)
    after = quota_set(admin, demo.project_id, usage="true")
    assert after["volumes"]["in_use"] == 1 and after["snapshots"]["in_use"] == 1
    assert after["gigabytes"]["in_use"] == 4  # the volume's 2 and its snapshot's 2, as Cinder counts
    limits = demo.ok(demo.volume("GET", "/limits"))["limits"]
    assert limits["rate"] == []
    assert limits["absolute"]["totalVolumesUsed"] == 1 and limits["absolute"]["totalGigabytesUsed"] == 4
    assert limits["absolute"]["maxTotalVolumes"] == 10 and limits["absolute"]["totalBackupsUsed"] == 0


def test_usage_flag_must_be_a_boolean(admin: Api, demo: Api) -> None:
    error(
        admin.volume("GET", f"/os-quota-sets/{demo.project_id}", params={"usage": "maybe"}), 400, "badRequest"
    )


# -- who may ----------------------------------------------------------------------------------------
def test_member_may_not_read_or_set_another_projects_quota(demo: Api, other: Api, admin: Api) -> None:
    error(other.volume("GET", f"/os-quota-sets/{demo.project_id}"), 403, "forbidden")
    error(other.volume("GET", f"/os-quota-sets/{demo.project_id}/defaults"), 403, "forbidden")
    error(set_quotas(demo, demo.project_id, volumes=100), 403, "forbidden")
    error(demo.volume("DELETE", f"/os-quota-sets/{demo.project_id}"), 403, "forbidden")
    error(demo.volume("GET", "/os-quota-class-sets/default"), 403, "forbidden")
    error(
        demo.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"volumes": 1}}),
        403,
        "forbidden",
    )


def test_unknown_project_is_not_found(admin: Api) -> None:
    missing = "6e1f2a4c-0000-4000-8000-000000000000"
    error(admin.volume("GET", f"/os-quota-sets/{missing}"), 404, "itemNotFound")
    error(set_quotas(admin, missing, volumes=1), 404, "itemNotFound")
    error(admin.volume("DELETE", f"/os-quota-sets/{missing}"), 404, "itemNotFound")


# -- setting ----------------------------------------------------------------------------------------
def test_update_and_delete_project_quota(admin: Api, demo: Api) -> None:
    new = {"gigabytes": 1009, "volumes": 11, "snapshots": 11, "backups": 11, "backup_gigabytes": 1009,
           "per_volume_gigabytes": 1009}  # fmt: skip
    body = admin.ok(set_quotas(admin, demo.project_id, **new), 200)["quota_set"]
    assert new.items() <= body.items() and "groups" in body
    assert quota_set(admin, demo.project_id)["volumes"] == 11
    assert set_quotas(admin, demo.project_id, volumes="12", id=demo.project_id).status_code == 200
    assert quota_set(admin, demo.project_id)["volumes"] == 12
    admin.ok(admin.volume("DELETE", f"/os-quota-sets/{demo.project_id}"), 200)
    assert quota_set(admin, demo.project_id)["volumes"] == 10


@pytest.mark.parametrize(
    "body",
    [
        {"quota_set": {"bogus": 1}},
        {"quota_set": {"volumes": -2}},
        {"quota_set": {"volumes": "ten"}},
        {"quota_set": {"volumes": 1.5}},
        {"quota_set": {"volumes": True}},
        {"quota_set": {"volumes": None}},
        {"quota_set": {"volumes": 2**31}},
        {"quota_set": {"volumes": 2**70}},
        {"quota_set": {}},
        {"quota_set": []},
        {"quota_set": {"volumes": 1}, "extra": 1},
        {"nothing": {}},
    ],
)
def test_bad_quota_updates_are_400(admin: Api, demo: Api, body: dict[str, Any]) -> None:
    error(admin.volume("PUT", f"/os-quota-sets/{demo.project_id}", json=body), 400, "badRequest")
    assert quota_set(admin, demo.project_id)["volumes"] == 10  # nothing half-applied


def test_limit_below_usage_is_refused(admin: Api, demo: Api) -> None:
    """As Cinder: a limit the project already has of its own may not go below its usage; one it
    takes from the class is not checked (Cinder validates against `defaults=False` quotas)."""
    demo.ok(create(demo, 3), 202)
    demo.ok(create(demo, 3), 202)
    admin.ok(set_quotas(admin, demo.project_id, snapshots=0), 200)  # no snapshot override yet
    admin.ok(set_quotas(admin, demo.project_id, volumes=5, gigabytes=100), 200)
    message = error(set_quotas(admin, demo.project_id, volumes=1), 400, "badRequest")
    assert "Current usage is 2" in message
    error(set_quotas(admin, demo.project_id, gigabytes=5), 400, "badRequest")
    admin.ok(set_quotas(admin, demo.project_id, volumes=2, gigabytes=6, per_volume_gigabytes=1), 200)


def test_quota_class_default_sets_every_projects_defaults(admin: Api, demo: Api) -> None:
    cls = admin.ok(admin.volume("GET", "/os-quota-class-sets/default"))["quota_class_set"]
    assert cls["id"] == "default" and cls["volumes"] == 10
    name = f"qtype-{time.monotonic_ns()}"
    vtype = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": name}}))["volume_type"]
    try:
        update = {"volumes": 15, f"volumes_{name}": 3, f"gigabytes_{name}": 7}
        body = admin.ok(
            admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": update})
        )["quota_class_set"]
        assert update.items() <= body.items()
        for project in (demo.project_id, admin.project_id):
            defaults = admin.ok(admin.volume("GET", f"/os-quota-sets/{project}/defaults"))["quota_set"]
            assert update.items() <= defaults.items()
        assert quota_set(demo, demo.project_id)[f"volumes_{name}"] == 3
        error(
            admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"nope": 1}}),
            400,
            "badRequest",
        )
    finally:
        reset = {"volumes": 10, f"volumes_{name}": -1, f"gigabytes_{name}": -1}
        admin.ok(admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": reset}))
        admin.volume("DELETE", f"/types/{vtype['id']}")


# -- enforcement ------------------------------------------------------------------------------------
def over_limit(resp: httpx.Response) -> str:
    """Cinder's QuotaError: 413 overLimit, retry at once (`Retry-After: 0`, `retryAfter` "0")."""
    message = error(resp, 413, "overLimit")
    assert resp.headers["Retry-After"] == "0" and resp.json()["overLimit"]["retryAfter"] == "0"
    return message


def test_volume_count_and_gigabytes_are_enforced(admin: Api, demo: Api) -> None:
    admin.ok(set_quotas(admin, demo.project_id, volumes=1, gigabytes=-1), 200)
    vol = demo.ok(create(demo), 202)["volume"]
    msg = over_limit(create(demo))
    assert msg == "Maximum number of volumes allowed (1) exceeded for quota 'volumes'."
    admin.ok(set_quotas(admin, demo.project_id, volumes=-1, gigabytes=1), 200)
    assert "exceeds allowed gigabytes quota" in over_limit(create(demo, 2))
    wait_available(demo, vol["id"])
    over_limit(demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 2}}))
    over_limit(create(demo, 1, source_volid=vol["id"]))  # a clone claims like any create
    admin.ok(set_quotas(admin, demo.project_id, gigabytes=-1, per_volume_gigabytes=2), 200)
    assert "larger than maximum allowed limit 2G" in over_limit(create(demo, 3))
    assert quota_set(admin, demo.project_id, usage="1")["volumes"]["in_use"] == 1


def test_snapshot_quotas_are_enforced(admin: Api, demo: Api) -> None:
    admin.ok(set_quotas(admin, demo.project_id, gigabytes=3, volumes=1, snapshots=1), 200)
    vol = demo.ok(create(demo), 202)["volume"]
    wait_available(demo, vol["id"])
    snap = {"snapshot": {"volume_id": vol["id"]}}
    demo.ok(demo.volume("POST", "/snapshots", json=snap), 202)
    assert over_limit(demo.volume("POST", "/snapshots", json=snap)).startswith("Maximum number of snapshots")
    admin.ok(set_quotas(admin, demo.project_id, gigabytes=2, snapshots=2), 200)
    assert "gigabytes quota" in over_limit(demo.volume("POST", "/snapshots", json=snap))


def test_per_type_quota_follows_retype(admin: Api, demo: Api) -> None:
    names = [f"qt-{i}-{time.monotonic_ns()}" for i in range(2)]
    types = [
        admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": n}}))["volume_type"]
        for n in names
    ]
    try:
        admin.ok(
            set_quotas(admin, demo.project_id, **{f"volumes_{names[0]}": 1, f"volumes_{names[1]}": 1}), 200
        )
        first = demo.ok(create(demo, volume_type=names[0]), 202)["volume"]
        assert f"'volumes_{names[0]}'" in over_limit(create(demo, volume_type=names[0]))
        second = demo.ok(create(demo, volume_type=names[1]), 202)["volume"]
        wait_available(demo, first["id"])
        retype = {"os-retype": {"new_type": names[1]}}
        over_limit(demo.volume("POST", f"/volumes/{first['id']}/action", json=retype))
        demo.volume("DELETE", f"/volumes/{second['id']}")
        deadline = time.monotonic() + 30
        while quota_set(admin, demo.project_id, usage="1")[f"volumes_{names[1]}"]["in_use"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert demo.volume("POST", f"/volumes/{first['id']}/action", json=retype).status_code == 202
        used = quota_set(admin, demo.project_id, usage="1")
        assert used[f"volumes_{names[0]}"]["in_use"] == 0 and used[f"volumes_{names[1]}"]["in_use"] == 1
        demo.ok(create(demo, volume_type=names[0]), 202)  # the old type's place is free again
    finally:
        for vol in admin.ok(admin.volume("GET", "/volumes?all_tenants=1"))["volumes"]:
            admin.volume("DELETE", f"/volumes/{vol['id']}")
        deadline = time.monotonic() + 30
        while (
            admin.ok(admin.volume("GET", "/volumes?all_tenants=1"))["volumes"] and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        for t in types:
            admin.volume("DELETE", f"/types/{t['id']}")


def test_deleting_frees_quota(admin: Api, demo: Api) -> None:
    admin.ok(set_quotas(admin, demo.project_id, volumes=1), 200)
    vol = demo.ok(create(demo), 202)["volume"]
    wait_available(demo, vol["id"])
    over_limit(create(demo))
    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202
    deadline = time.monotonic() + 30
    while (resp := create(demo)).status_code == 413:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert resp.status_code == 202


def test_concurrent_creates_never_overshoot(admin: Api, demo: Api) -> None:
    admin.ok(set_quotas(admin, demo.project_id, volumes=3), 200)
    barrier = threading.Barrier(12)
    codes: list[int] = []

    def send() -> None:
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            url = f"{demo.base}/volume/v3/{demo.project_id}/volumes"
            codes.append(
                c.post(url, headers={"X-Auth-Token": demo.token}, json={"volume": {"size": 1}}).status_code
            )

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202] * 3 + [413] * 9
    assert quota_set(admin, demo.project_id, usage="1")["volumes"]["in_use"] == 3


# -- Keystone projects (tempest makes throw-away ones to read their default quotas) ----------------
def identity(api: Api, method: str, path: str, **kw: Any) -> httpx.Response:
    return api.client.request(
        method, f"{api.base}/identity/v3{path}", headers={"X-Auth-Token": api.token}, **kw
    )


def test_a_new_project_gets_the_default_class(admin: Api, demo: Api) -> None:
    domains = admin.ok(identity(admin, "GET", "/domains", params={"name": "Default"}))["domains"]
    assert [d["id"] for d in domains] == ["default"]
    assert admin.ok(identity(admin, "GET", "/domains", params={"name": "Nope"}))["domains"] == []
    body = {"project": {"name": "quota-class-tenant", "description": "d", "domain_id": "default"}}
    project = admin.ok(identity(admin, "POST", "/projects", json=body), 201)["project"]
    assert project["name"] == "quota-class-tenant" and project["description"] == "d"
    error(identity(admin, "POST", "/projects", json=body), 409, "conflictingRequest")
    try:
        admin.ok(
            admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"snapshots": 4}})
        )
        defaults = admin.ok(admin.volume("GET", f"/os-quota-sets/{project['id']}/defaults"))["quota_set"]
        assert defaults["snapshots"] == 4 and defaults["id"] == project["id"]
        assert quota_set(admin, project["id"], usage="1")["snapshots"] == {
            "limit": 4,
            "in_use": 0,
            "reserved": 0,
        }
    finally:
        admin.ok(
            admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"snapshots": 10}})
        )
    assert identity(admin, "DELETE", f"/projects/{project['id']}").status_code == 204
    error(identity(admin, "DELETE", f"/projects/{project['id']}"), 404, "itemNotFound")
    error(admin.volume("GET", f"/os-quota-sets/{project['id']}"), 404, "itemNotFound")


@pytest.mark.parametrize(
    "body",
    [
        {"project": {"name": ""}},
        {"project": {"name": "x" * 65}},
        {"project": {"name": 5}},
        {"project": []},
        {},
        {"project": {"name": "p", "domain_id": "elsewhere"}},
    ],
)
def test_bad_project_creates_are_400(admin: Api, body: dict[str, Any]) -> None:
    error(identity(admin, "POST", "/projects", json=body), 400, "badRequest")


def test_members_may_not_manage_projects(demo: Api, admin: Api) -> None:
    error(identity(demo, "POST", "/projects", json={"project": {"name": "mine"}}), 403, "forbidden")
    error(identity(demo, "DELETE", f"/projects/{admin.project_id}"), 403, "forbidden")
    error(identity(demo, "GET", "/domains"), 403, "forbidden")
    assert demo.ok(identity(demo, "GET", f"/projects/{demo.project_id}"))["project"]["id"] == demo.project_id
    error(identity(demo, "GET", f"/projects/{admin.project_id}"), 404, "itemNotFound")


def test_retype_that_migrates_claims_the_new_type_at_the_request(admin: Api, demo: Api) -> None:
    names = {backend: f"pin-{backend}-{time.monotonic_ns()}" for backend in ("fast", "bulk")}
    types = [
        admin.ok(
            admin.volume(
                "POST", "/types", json={"volume_type": {"name": n, "extra_specs": {"volume_backend_name": b}}}
            )
        )["volume_type"]
        for b, n in names.items()
    ]
    try:
        vol = demo.ok(create(demo, volume_type=names["fast"]), 202)["volume"]
        wait_available(demo, vol["id"])
        admin.ok(set_quotas(admin, demo.project_id, **{f"gigabytes_{names['bulk']}": 0}), 200)
        retype = {"os-retype": {"new_type": names["bulk"], "migration_policy": "on-demand"}}
        msg = over_limit(demo.volume("POST", f"/volumes/{vol['id']}/action", json=retype))
        assert f"gigabytes_{names['bulk']} quota" in msg
        assert admin.ok(admin.volume("GET", f"/volumes/{vol['id']}"))["volume"][
            "os-vol-host-attr:host"
        ].startswith("ferry@fast")  # refused before anything moved
    finally:
        for v in admin.ok(admin.volume("GET", "/volumes?all_tenants=1"))["volumes"]:
            admin.volume("DELETE", f"/volumes/{v['id']}")
        deadline = time.monotonic() + 30
        while (
            admin.ok(admin.volume("GET", "/volumes?all_tenants=1"))["volumes"] and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        for t in types:
            admin.volume("DELETE", f"/types/{t['id']}")


def test_per_type_limits_follow_a_rename_and_go_with_the_type(admin: Api, demo: Api) -> None:
    old, new = f"ren-{time.monotonic_ns()}", f"ren2-{time.monotonic_ns()}"
    vtype = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": old}}))["volume_type"]
    admin.ok(set_quotas(admin, demo.project_id, **{f"volumes_{old}": 2}), 200)
    admin.ok(admin.volume("PUT", f"/types/{vtype['id']}", json={"volume_type": {"name": new}}))
    qs = quota_set(admin, demo.project_id)
    assert qs[f"volumes_{new}"] == 2 and f"volumes_{old}" not in qs
    assert admin.volume("DELETE", f"/types/{vtype['id']}").status_code == 202
    again = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": new}}))["volume_type"]
    assert quota_set(admin, demo.project_id)[f"volumes_{new}"] == -1
    admin.volume("DELETE", f"/types/{again['id']}")
