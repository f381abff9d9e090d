"""Cinder's volume types against a real `ferry serve`: extra specs by key, the type views per
request, private types shared with projects (type access), the default type, encryption (none),
and QoS specs with their associations. Bad input is a clear 4xx; another project's private type
is not found."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.server import Api, FerryServer

pytestmark = pytest.mark.db


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


@pytest.fixture(scope="module")
def other(server: FerryServer) -> Api:
    """A member of another project."""
    return server.api(server.add_user("otto", "otto-password", "other", "member"))


def error(resp: httpx.Response, code: int) -> str:
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    body = resp.json()
    (kind,) = body
    assert body[kind]["code"] == code
    return str(body[kind]["message"])


def new_type(admin: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": f"t-{uuid.uuid4().hex[:8]}", **fields}
    vt: dict[str, Any] = admin.ok(admin.volume("POST", "/types", json={"volume_type": body}))["volume_type"]
    return vt


# -- views ---------------------------------------------------------------------------------------
def test_views_follow_cinders_schemas(admin: Api) -> None:
    vt = new_type(admin, description="d", extra_specs={"a": "b"})
    assert set(vt) == {
        "id",
        "name",
        "description",
        "is_public",
        "os-volume-type-access:is_public",
        "extra_specs",
    }
    shown = admin.ok(admin.volume("GET", f"/types/{vt['id']}"))["volume_type"]
    assert shown["qos_specs_id"] is None and shown["extra_specs"] == {"a": "b"}
    changed = admin.ok(
        admin.volume(
            "PUT", f"/types/{vt['id']}", json={"volume_type": {"name": vt["name"] + "x", "is_public": False}}
        )
    )["volume_type"]
    assert set(changed) == {"id", "name", "description", "is_public", "extra_specs"}
    assert changed["is_public"] is False and changed["name"] == vt["name"] + "x"
    shown = admin.ok(admin.volume("GET", f"/types/{vt['id']}"))["volume_type"]
    assert shown["os-volume-type-access:is_public"] is False


def test_update_and_create_refusals(admin: Api) -> None:
    vt, other_type = new_type(admin), new_type(admin)
    error(admin.volume("PUT", f"/types/{vt['id']}", json={"volume_type": {}}), 400)
    error(admin.volume("PUT", f"/types/{vt['id']}", json={"volume_type": {"description": None}}), 400)
    error(admin.volume("PUT", f"/types/{vt['id']}", json={"volume_type": {"name": "  "}}), 400)
    error(admin.volume("PUT", f"/types/{vt['id']}", json={"volume_type": {"name": other_type["name"]}}), 409)
    error(admin.volume("POST", "/types", json={"volume_type": {"name": vt["name"]}}), 409)
    error(admin.volume("POST", "/types", json={"volume_type": {"name": ""}}), 400)
    error(admin.volume("PUT", f"/types/{uuid.uuid4()}", json={"volume_type": {"name": "n"}}), 404)


def test_non_admins_see_only_user_visible_specs(admin: Api, demo: Api) -> None:
    vt = new_type(admin, extra_specs={"multiattach": "<is> True", "volume_backend_name": "fast"})
    for api, expected in (
        (admin, {"multiattach": "<is> True", "volume_backend_name": "fast"}),
        (demo, {"multiattach": "<is> True"}),
    ):
        shown = api.ok(api.volume("GET", f"/types/{vt['id']}"))["volume_type"]
        assert shown["extra_specs"] == expected
        assert api.ok(api.volume("GET", f"/types/{vt['id']}/extra_specs"))["extra_specs"] == expected
    assert "qos_specs_id" not in demo.ok(demo.volume("GET", f"/types/{vt['id']}"))["volume_type"]
    error(demo.volume("GET", f"/types/{vt['id']}/extra_specs/volume_backend_name"), 404)
    assert demo.ok(demo.volume("GET", f"/types/{vt['id']}/extra_specs/multiattach")) == {
        "multiattach": "<is> True"
    }


# -- extra specs ---------------------------------------------------------------------------------
def test_extra_specs_merge_show_update_delete(admin: Api) -> None:
    vt = new_type(admin, extra_specs={"keep": "1"})
    base = f"/types/{vt['id']}/extra_specs"
    assert admin.ok(admin.volume("POST", base, json={"extra_specs": {"a": "x"}}))["extra_specs"] == {"a": "x"}
    assert admin.ok(admin.volume("GET", base))["extra_specs"] == {"keep": "1", "a": "x"}
    assert admin.ok(admin.volume("PUT", f"{base}/a", json={"a": "y"})) == {"a": "y"}
    assert admin.ok(admin.volume("GET", f"{base}/a")) == {"a": "y"}
    assert admin.volume("DELETE", f"{base}/a").status_code == 202
    error(admin.volume("GET", f"{base}/a"), 404)
    error(admin.volume("DELETE", f"{base}/a"), 404)
    assert admin.ok(admin.volume("GET", base))["extra_specs"] == {"keep": "1"}


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("a", None),
        ("a", {"a": "1", "b": "2"}),
        ("a", {"b": "1"}),
        ("None", {"a": "1"}),
        ("a", ["a"]),
        ("a", {"a": 1}),
        ("a", {"a": "x" * 256}),
    ],
)
def test_extra_spec_update_refusals(admin: Api, key: str, body: Any) -> None:
    vt = new_type(admin)
    error(admin.volume("PUT", f"/types/{vt['id']}/extra_specs/{key}", json=body), 400)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"extra_specs": None},
        {"extra_specs": ["x"]},
        {"extra_specs": {"": "v"}},
        {"extra_specs": {"k" * 256: "v"}},
        {"extra_specs": {"bad key!": "v"}},
        {"extra_specs": {"k": "v" * 256}},
    ],
)
def test_extra_spec_create_refusals(admin: Api, body: Any) -> None:
    vt = new_type(admin)
    error(admin.volume("POST", f"/types/{vt['id']}/extra_specs", json=body), 400)


def test_extra_specs_of_missing_types(admin: Api) -> None:
    missing = str(uuid.uuid4())
    error(admin.volume("GET", f"/types/{missing}/extra_specs"), 404)
    error(admin.volume("GET", f"/types/{missing}/extra_specs/a"), 404)
    error(admin.volume("PUT", f"/types/{missing}/extra_specs/a", json={"a": "1"}), 404)
    error(admin.volume("POST", f"/types/{missing}/extra_specs", json={"extra_specs": {"a": "1"}}), 404)
    error(admin.volume("DELETE", f"/types/{missing}/extra_specs/a"), 404)


def test_members_may_not_change_specs(admin: Api, demo: Api) -> None:
    vt = new_type(admin)
    error(demo.volume("PUT", f"/types/{vt['id']}/extra_specs/a", json={"a": "1"}), 403)
    error(demo.volume("POST", f"/types/{vt['id']}/extra_specs", json={"extra_specs": {"a": "1"}}), 403)


# -- type access ---------------------------------------------------------------------------------
def test_private_type_shared_with_a_project(admin: Api, demo: Api, other: Api) -> None:
    vt = new_type(admin, **{"os-volume-type-access:is_public": False})
    action = f"/types/{vt['id']}/action"

    def names(api: Api, query: str = "") -> list[str]:
        return [t["name"] for t in api.ok(api.volume("GET", f"/types{query}"))["volume_types"]]

    error(demo.volume("GET", f"/types/{vt['id']}"), 404)
    error(demo.volume("POST", "/volumes", json={"volume": {"size": 1, "volume_type": vt["id"]}}), 404)
    assert vt["name"] not in names(demo) and vt["name"] not in names(admin)
    assert vt["name"] in names(admin, "?is_public=None") and vt["name"] in names(admin, "?is_public=false")
    assert vt["name"] not in names(admin, "?is_public=true")
    error(admin.volume("GET", "/types?is_public=maybe"), 400)

    assert (
        admin.volume("POST", action, json={"addProjectAccess": {"project": demo.project_id}}).status_code
        == 202
    )
    error(admin.volume("POST", action, json={"addProjectAccess": {"project": demo.project_id}}), 409)
    access = admin.ok(admin.volume("GET", f"/types/{vt['id']}/os-volume-type-access"))["volume_type_access"]
    assert access == [{"volume_type_id": vt["id"], "project_id": demo.project_id}]
    assert demo.ok(demo.volume("GET", f"/types/{vt['id']}"))["volume_type"]["name"] == vt["name"]
    assert vt["name"] in names(demo)
    vol = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1, "volume_type": vt["id"]}}), 202)
    assert vol["volume"]["volume_type"] == vt["name"]
    # and retype to it: the other project is told it does not exist
    mine = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1}}), 202)["volume"]
    retype = {"os-retype": {"new_type": vt["id"], "migration_policy": "never"}}
    error(other.volume("POST", f"/volumes/{mine['id']}/action", json=retype), 404)  # not its volume either
    theirs = other.ok(other.volume("POST", "/volumes", json={"volume": {"size": 1}}), 202)["volume"]
    assert other.volume("GET", f"/volumes/{theirs['id']}").status_code == 200
    error(other.volume("POST", f"/volumes/{theirs['id']}/action", json=retype), 404)
    # another project still does not see it
    error(other.volume("GET", f"/types/{vt['id']}"), 404)
    error(other.volume("GET", f"/types/{vt['id']}/extra_specs"), 404)
    assert vt["name"] not in names(other)

    assert (
        admin.volume("POST", action, json={"removeProjectAccess": {"project": demo.project_id}}).status_code
        == 202
    )
    error(admin.volume("POST", action, json={"removeProjectAccess": {"project": demo.project_id}}), 404)
    error(demo.volume("GET", f"/types/{vt['id']}"), 404)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"addProjectAccess": None},
        {"addProjectAccess": {}},
        {"addProjectAccess": {"project": 5}},
        {"addProjectAccess": {"project": ""}},
        {"bogus": {"project": "x"}},
        {"addProjectAccess": {"project": "x"}, "removeProjectAccess": {"project": "x"}},
    ],
)
def test_type_access_refusals(admin: Api, body: Any) -> None:
    vt = new_type(admin, is_public=False)
    error(admin.volume("POST", f"/types/{vt['id']}/action", json=body), 400)


def test_type_access_rules(admin: Api, demo: Api) -> None:
    public, private = new_type(admin), new_type(admin, is_public=False)
    error(
        admin.volume(
            "POST", f"/types/{public['id']}/action", json={"addProjectAccess": {"project": demo.project_id}}
        ),
        400,
    )
    error(admin.volume("GET", f"/types/{public['id']}/os-volume-type-access"), 404)
    error(
        admin.volume(
            "POST", f"/types/{private['id']}/action", json={"addProjectAccess": {"project": "nope"}}
        ),
        404,
    )
    error(
        admin.volume(
            "POST", f"/types/{uuid.uuid4()}/action", json={"addProjectAccess": {"project": demo.project_id}}
        ),
        404,
    )
    error(
        demo.volume(
            "POST", f"/types/{public['id']}/action", json={"addProjectAccess": {"project": demo.project_id}}
        ),
        403,
    )
    error(demo.volume("GET", f"/types/{private['id']}/os-volume-type-access"), 403)


# -- default type, encryption --------------------------------------------------------------------
def test_default_type(admin: Api, demo: Api) -> None:
    default = demo.ok(demo.volume("GET", "/types/default"))["volume_type"]
    assert default["name"] == "__DEFAULT__"
    vol = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1}}), 202)["volume"]
    assert vol["volume_type"] == "__DEFAULT__"
    error(admin.volume("DELETE", f"/types/{default['id']}"), 400)


def test_encryption_is_none(admin: Api, demo: Api) -> None:
    vt = new_type(admin)
    assert admin.ok(admin.volume("GET", f"/types/{vt['id']}/encryption")) == {}
    error(admin.volume("GET", f"/types/{vt['id']}/encryption/cipher"), 404)
    spec = {"encryption": {"provider": "luks", "control_location": "front-end"}}
    assert "encrypted" in error(admin.volume("POST", f"/types/{vt['id']}/encryption", json=spec), 400)
    error(admin.volume("POST", f"/types/{uuid.uuid4()}/encryption", json=spec), 404)
    error(demo.volume("POST", f"/types/{vt['id']}/encryption", json=spec), 403)
    error(admin.volume("GET", f"/types/{uuid.uuid4()}/encryption"), 404)


# -- QoS specs -----------------------------------------------------------------------------------
def new_qos(admin: Api, **specs: str) -> dict[str, Any]:
    body = {"name": f"q-{uuid.uuid4().hex[:8]}", **specs}
    answer = admin.ok(admin.volume("POST", "/qos-specs", json={"qos_specs": body}))
    assert answer["links"][0]["href"].endswith(answer["qos_specs"]["id"])
    q: dict[str, Any] = answer["qos_specs"]
    return q


def test_qos_specs_life_cycle(admin: Api) -> None:
    q = new_qos(admin, consumer="front-end", read_iops_sec="2000")
    assert q["consumer"] == "front-end" and q["specs"] == {"read_iops_sec": "2000"}
    assert q in admin.ok(admin.volume("GET", "/qos-specs"))["qos_specs"]
    assert new_qos(admin)["consumer"] == "back-end"
    base = f"/qos-specs/{q['id']}"
    assert admin.ok(admin.volume("PUT", base, json={"qos_specs": {"iops_bytes": "500"}})) == {
        "qos_specs": {"iops_bytes": "500"}
    }
    assert admin.ok(admin.volume("GET", base))["qos_specs"]["specs"] == {
        "read_iops_sec": "2000",
        "iops_bytes": "500",
    }
    assert admin.volume("PUT", f"{base}/delete_keys", json={"keys": ["iops_bytes"]}).status_code == 202
    assert admin.ok(admin.volume("GET", base))["qos_specs"]["specs"] == {"read_iops_sec": "2000"}
    error(admin.volume("PUT", f"{base}/delete_keys", json={"keys": ["iops_bytes"]}), 404)
    error(admin.volume("POST", "/qos-specs", json={"qos_specs": {"name": q["name"]}}), 409)
    assert admin.volume("DELETE", base).status_code == 202
    error(admin.volume("GET", base), 404)


def test_qos_associations(admin: Api) -> None:
    q, q2 = new_qos(admin, consumer="both", total_bytes_sec="1048576"), new_qos(admin)
    types = [new_type(admin) for _ in range(3)]
    base = f"/qos-specs/{q['id']}"
    for t in types:
        assert admin.volume("GET", f"{base}/associate?vol_type_id={t['id']}").status_code == 202
    got = admin.ok(admin.volume("GET", f"{base}/associations"))["qos_associations"]
    assert sorted(a["id"] for a in got) == sorted(t["id"] for t in types)
    assert {a["association_type"] for a in got} == {"volume_type"}
    assert admin.ok(admin.volume("GET", f"/types/{types[0]['id']}"))["volume_type"]["qos_specs_id"] == q["id"]
    error(admin.volume("GET", f"/qos-specs/{q2['id']}/associate?vol_type_id={types[0]['id']}"), 400)
    error(admin.volume("GET", f"{base}/associate"), 400)
    error(admin.volume("GET", f"{base}/associate?vol_type_id={uuid.uuid4()}"), 404)
    assert admin.volume("GET", f"{base}/disassociate?vol_type_id={types[0]['id']}").status_code == 202
    error(admin.volume("GET", f"{base}/disassociate?vol_type_id={types[0]['id']}"), 400)
    error(admin.volume("DELETE", base), 400)  # still associated with two types
    assert admin.volume("GET", f"{base}/disassociate_all").status_code == 202
    assert admin.ok(admin.volume("GET", f"{base}/associations"))["qos_associations"] == []
    assert (
        admin.volume("GET", f"/qos-specs/{q2['id']}/associate?vol_type_id={types[1]['id']}").status_code
        == 202
    )
    assert admin.volume("DELETE", f"/qos-specs/{q2['id']}?force=true").status_code == 202
    assert admin.ok(admin.volume("GET", f"/types/{types[1]['id']}"))["volume_type"]["qos_specs_id"] is None


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"qos_specs": None},
        {"qos_specs": {}},
        {"qos_specs": {"consumer": "front-end"}},
        {"qos_specs": {"name": 5}},
        {"qos_specs": {"name": ""}},
        {"qos_specs": {"name": "x" * 256}},
        {"qos_specs": {"name": "q", "consumer": "sideways"}},
        {"qos_specs": {"name": "q", "k": 1}},
        {"qos_specs": {"name": "q", "k": "v" * 256}},
        {"qos_specs": {"name": "q", "bad key!": "v"}},
    ],
)
def test_qos_create_refusals(admin: Api, body: Any) -> None:
    error(admin.volume("POST", "/qos-specs", json=body), 400)


def test_qos_refusals(admin: Api, demo: Api) -> None:
    q = new_qos(admin)
    missing = f"/qos-specs/{uuid.uuid4()}"
    for method, path, body in [
        ("GET", missing, None),
        ("DELETE", missing, None),
        ("PUT", missing, {"qos_specs": {"a": "b"}}),
        ("GET", f"{missing}/associations", None),
        ("GET", f"{missing}/disassociate_all", None),
        ("GET", "/qos-specs/not-a-uuid", None),
    ]:
        error(admin.volume(method, path, json=body), 404)
    for body in (None, {"keys": []}, {"keys": "a"}, {"keys": [1]}):
        error(admin.volume("PUT", f"/qos-specs/{q['id']}/delete_keys", json=body), 400)
    error(admin.volume("PUT", f"/qos-specs/{q['id']}", json={"qos_specs": {"consumer": "nowhere"}}), 400)
    for method, path in [
        ("GET", "/qos-specs"),
        ("GET", f"/qos-specs/{q['id']}"),
        ("DELETE", f"/qos-specs/{q['id']}"),
    ]:
        error(demo.volume(method, path), 403)
    error(demo.volume("POST", "/qos-specs", json={"qos_specs": {"name": "mine"}}), 403)


# -- the stock client ----------------------------------------------------------------------------
OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def osc(server: FerryServer, *args: str, json_out: bool = True) -> Any:
    argv = [OPENSTACK, *args, *(("-f", "json") if json_out else ())]
    result = subprocess.run(
        argv, env=server.cli_env("ferry-admin"), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout) if json_out else result.stdout


def test_the_openstack_cli_manages_types_access_and_qos(server: FerryServer, demo: Api) -> None:
    osc(server, "volume", "type", "create", "--private", "--property", "tier=1", "cli-private")
    osc(server, "volume", "type", "set", "--project", demo.project_id, "cli-private", json_out=False)
    shown = osc(server, "volume", "type", "show", "cli-private")
    assert shown["is_public"] is False and shown["properties"] == {"tier": "1"}
    assert "cli-private" in [t["name"] for t in demo.ok(demo.volume("GET", "/types"))["volume_types"]]
    osc(
        server,
        "volume",
        "qos",
        "create",
        "--consumer",
        "front-end",
        "--property",
        "read_iops_sec=100",
        "cli-qos",
    )
    osc(server, "volume", "qos", "associate", "cli-qos", "cli-private", json_out=False)
    osc(server, "volume", "qos", "set", "--property", "write_iops_sec=50", "cli-qos", json_out=False)
    qos = osc(server, "volume", "qos", "show", "cli-qos")
    assert qos["consumer"] == "front-end" and qos["associations"] == ["cli-private"]
    assert qos["properties"] == {"read_iops_sec": "100", "write_iops_sec": "50"}
    listed = osc(server, "volume", "qos", "list")
    assert [q["Associations"] for q in listed if q["Name"] == "cli-qos"] == [["cli-private"]]
    osc(server, "volume", "qos", "disassociate", "--all", "cli-qos", json_out=False)
    osc(server, "volume", "qos", "delete", "cli-qos", json_out=False)
    osc(server, "volume", "type", "unset", "--project", demo.project_id, "cli-private", json_out=False)
    error(demo.volume("GET", "/types/cli-private"), 404)
    osc(server, "volume", "type", "delete", "cli-private", json_out=False)


def test_projects_are_shown_to_admins_and_their_members(server: FerryServer, admin: Api, demo: Api) -> None:
    """Keystone's project show/list, which clients use to resolve `--project NAME`."""

    def get(api: Api, path: str) -> httpx.Response:
        return httpx.get(f"{server.base}/identity/v3{path}", headers={"X-Auth-Token": api.token}, timeout=30)

    shown = get(admin, f"/projects/{demo.project_id}").json()["project"]
    assert (shown["id"], shown["name"], shown["domain_id"]) == (demo.project_id, "demo", "default")
    assert [p["id"] for p in get(admin, "/projects?name=demo").json()["projects"]] == [demo.project_id]
    assert {"admin", "demo"} <= {p["name"] for p in get(admin, "/projects").json()["projects"]}
    assert get(demo, f"/projects/{demo.project_id}").status_code == 200
    assert get(demo, f"/projects/{admin.project_id}").status_code == 404
    assert get(demo, "/projects").status_code == 403  # as Keystone: a member lists GET /auth/projects
    assert [p["name"] for p in get(demo, "/auth/projects").json()["projects"]] == ["demo"]
    assert get(demo, "/projects?name=admin").status_code == 403
    assert get(admin, "/projects/nope").status_code == 404
    assert httpx.get(f"{server.base}/identity/v3/projects", timeout=30).status_code == 401
