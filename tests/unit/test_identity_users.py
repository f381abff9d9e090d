"""Keystone v3 users, roles, grants, role assignments, unscoped and rescoped tokens, application
credentials, project update/delete and the catalog's services and endpoints, against a real
`ferry serve` over HTTP (with the fake hypervisor)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.server import Api, FerryServer
from tests.conftest import fake_hypervisor_server

pytestmark = pytest.mark.db

http = httpx.Client(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


@pytest.fixture(scope="module")
def admin(server: FerryServer) -> Api:
    return server.api("ferry-admin")


def v3(server: FerryServer) -> str:
    return f"{server.base}/identity/v3"


def call(server: FerryServer, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return http.request(method, f"{v3(server)}{path}", headers={"X-Auth-Token": token}, **kw)


def error(resp: httpx.Response, code: int) -> str:
    assert resp.status_code == code, resp.text
    (body,) = resp.json().values()
    assert body["code"] == code and body["message"]
    return str(body["message"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def password_login(
    server: FerryServer, user: dict[str, Any], password: str, scope: dict[str, Any] | None = None
) -> httpx.Response:
    auth: dict[str, Any] = {
        "identity": {"methods": ["password"], "password": {"user": {**user, "password": password}}}
    }
    if scope is not None:
        auth["scope"] = scope
    return http.post(f"{v3(server)}/auth/tokens", json={"auth": auth})


def make_user(server: FerryServer, admin: Api, password: str = "s3cret-pw", **extra: Any) -> dict[str, Any]:
    resp = call(
        server,
        admin.token,
        "POST",
        "/users",
        json={"user": {"name": unique("u"), "password": password, **extra}},
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["user"])


def grant(server: FerryServer, admin: Api, project: str, user: str, role: str) -> None:
    resp = call(server, admin.token, "PUT", f"/projects/{project}/users/{user}/roles/{role}")
    assert resp.status_code == 204, resp.text


def make_project(server: FerryServer, admin: Api) -> dict[str, Any]:
    resp = call(server, admin.token, "POST", "/projects", json={"project": {"name": unique("p")}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["project"])


# -- users -------------------------------------------------------------------------------------
def test_user_lifecycle(server: FerryServer, admin: Api) -> None:
    project = make_project(server, admin)
    user = make_user(server, admin, email="a@example.org", description="d", default_project_id=project["id"])
    assert (user["email"], user["description"], user["default_project_id"]) == (
        "a@example.org",
        "d",
        project["id"],
    )
    assert user["enabled"] is True and user["domain_id"] == "default" and "password" not in user
    shown = call(server, admin.token, "GET", f"/users/{user['id']}").json()["user"]
    assert shown == user
    listed = call(server, admin.token, "GET", "/users", params={"name": user["name"]}).json()["users"]
    assert [u["id"] for u in listed] == [user["id"]]
    assert call(server, admin.token, "GET", "/users", params={"domain_id": "nope"}).json()["users"] == []
    dup = call(server, admin.token, "POST", "/users", json={"user": {"name": user["name"]}})
    assert "already exists" in error(dup, 409)

    resp = call(server, admin.token, "PATCH", f"/users/{user['id']}", json={"user": {"enabled": False}})
    assert resp.status_code == 200 and resp.json()["user"]["enabled"] is False
    disabled = call(server, admin.token, "GET", "/users", params={"enabled": "false"}).json()["users"]
    assert user["id"] in [u["id"] for u in disabled]
    error(password_login(server, {"id": user["id"]}, "s3cret-pw"), 401)

    assert call(server, admin.token, "DELETE", f"/users/{user['id']}").status_code == 204
    error(call(server, admin.token, "GET", f"/users/{user['id']}"), 404)
    error(call(server, admin.token, "DELETE", f"/users/{user['id']}"), 404)


def test_extra_attributes_are_kept_merged_and_bounded(server: FerryServer, admin: Api) -> None:
    """Keystone keeps attributes it does not know (tempest updates a user's `project_id`)."""
    user = make_user(server, admin, project_id="p1", tier=3)
    assert (user["project_id"], user["tier"]) == ("p1", 3)
    patch = {"user": {"project_id": "p2", "note": None, "id": "ignored", "links": {}}}
    resp = call(server, admin.token, "PATCH", f"/users/{user['id']}", json=patch)
    assert resp.status_code == 200, resp.text
    shown = call(server, admin.token, "GET", f"/users/{user['id']}").json()["user"]
    assert (shown["project_id"], shown["tier"], shown["note"], shown["id"]) == ("p2", 3, None, user["id"])
    for bad in ({"nested": {"a": 1}}, {"x" * 65: "v"}, {"long": "v" * 256}, {f"k{i}": i for i in range(17)}):
        error(call(server, admin.token, "PATCH", f"/users/{user['id']}", json={"user": bad}), 400)


def test_only_admins_list_projects(server: FerryServer, admin: Api) -> None:
    """As Keystone: a member lists theirs with GET /auth/projects; GET /projects is 403, in
    Keystone's error shape."""
    member = server.api("ferry-demo")
    resp = call(server, member.token, "GET", "/projects")
    assert resp.status_code == 403 and set(resp.json()) == {"error"}, resp.text
    assert resp.json()["error"]["title"] == "Forbidden"
    mine = call(server, member.token, "GET", "/auth/projects").json()["projects"]
    assert [p["id"] for p in mine] == [member.project_id]


def test_login_by_id_and_name_unscoped_default_project_and_rescope(server: FerryServer, admin: Api) -> None:
    project, other = make_project(server, admin), make_project(server, admin)
    user = make_user(server, admin)
    grant(server, admin, project["id"], user["id"], "member")
    grant(server, admin, other["id"], user["id"], "reader")

    unscoped = password_login(server, {"id": user["id"]}, "s3cret-pw")
    assert unscoped.status_code == 201, unscoped.text
    body = unscoped.json()["token"]
    assert body["methods"] == ["password"] and body["user"]["id"] == user["id"]
    assert "project" not in body and "catalog" not in body and "roles" not in body
    token = unscoped.headers["X-Subject-Token"]
    projects = call(server, token, "GET", "/auth/projects").json()["projects"]
    assert sorted(p["id"] for p in projects) == sorted([project["id"], other["id"]])
    mine = call(server, token, "GET", f"/users/{user['id']}/projects").json()["projects"]
    assert sorted(p["id"] for p in mine) == sorted(p["id"] for p in projects)
    error(call(server, token, "GET", f"/users/{admin_user_id(server, admin)}/projects"), 403)
    error(http.get(f"{server.base}/volume/v3/{project['id']}/volumes", headers={"X-Auth-Token": token}), 403)
    error(call(server, token, "GET", "/auth/catalog"), 403)

    rescoped = http.post(
        f"{v3(server)}/auth/tokens",
        json={
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": token}},
                "scope": {"project": {"name": other["name"], "domain": {"id": "default"}}},
            }
        },
    )
    assert rescoped.status_code == 201, rescoped.text
    body2 = rescoped.json()["token"]
    assert body2["methods"] == ["password", "token"]
    assert body2["project"]["id"] == other["id"] and [r["name"] for r in body2["roles"]] == ["reader"]
    assert body2["expires_at"] == body["expires_at"]  # a rescoped token lives no longer than its parent
    assert body2["catalog"]

    by_name = password_login(
        server,
        {"name": user["name"], "domain": {"name": "Default"}},
        "s3cret-pw",
        {"project": {"id": project["id"]}},
    )
    assert sorted(r["name"] for r in by_name.json()["token"]["roles"]) == ["member", "reader"]
    error(password_login(server, {"name": user["name"], "domain": {"id": "elsewhere"}}, "s3cret-pw"), 401)
    error(password_login(server, {"id": user["id"]}, "wrong"), 401)

    # a default project scopes a login that names no scope
    call(
        server,
        admin.token,
        "PATCH",
        f"/users/{user['id']}",
        json={"user": {"default_project_id": project["id"]}},
    )
    scoped = password_login(server, {"id": user["id"]}, "s3cret-pw").json()["token"]
    assert scoped["project"]["id"] == project["id"]


def admin_user_id(server: FerryServer, admin: Api) -> str:
    resp = http.get(
        f"{v3(server)}/auth/tokens", headers={"X-Auth-Token": admin.token, "X-Subject-Token": admin.token}
    )
    return str(resp.json()["token"]["user"]["id"])


def test_password_changes_revoke_tokens(server: FerryServer, admin: Api) -> None:
    project = make_project(server, admin)
    user = make_user(server, admin)
    grant(server, admin, project["id"], user["id"], "member")
    scope = {"project": {"id": project["id"]}}
    token = password_login(server, {"id": user["id"]}, "s3cret-pw", scope).headers["X-Subject-Token"]
    assert call(server, token, "GET", f"/users/{user['id']}").status_code == 200  # a user reads themselves
    error(call(server, token, "GET", "/users"), 403)
    error(call(server, token, "GET", f"/users/{admin_user_id(server, admin)}"), 403)
    error(call(server, token, "PATCH", f"/users/{user['id']}", json={"user": {"enabled": False}}), 403)

    wrong = {"user": {"original_password": "nope", "password": "new-pw-1"}}
    error(call(server, token, "POST", f"/users/{user['id']}/password", json=wrong), 401)
    other = f"/users/{admin_user_id(server, admin)}/password"
    error(call(server, token, "POST", other, json=wrong), 403)  # only oneself (or an admin)
    right = {"user": {"original_password": "s3cret-pw", "password": "new-pw-1"}}
    assert call(server, token, "POST", f"/users/{user['id']}/password", json=right).status_code == 204
    error(call(server, token, "GET", f"/users/{user['id']}"), 401)  # revoked with the change
    error(password_login(server, {"id": user["id"]}, "s3cret-pw", scope), 401)
    token = password_login(server, {"id": user["id"]}, "new-pw-1", scope).headers["X-Subject-Token"]

    resp = call(server, admin.token, "PATCH", f"/users/{user['id']}", json={"user": {"password": "new-pw-2"}})
    assert resp.status_code == 200, resp.text
    error(call(server, token, "GET", f"/users/{user['id']}"), 401)
    assert password_login(server, {"id": user["id"]}, "new-pw-2", scope).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"user": {"name": ""}},
        {"user": {"name": "x" * 256}},
        {"user": {"name": 5}},
        {"user": {"name": "ok", "enabled": "yes"}},
        {"user": {"name": "ok", "password": "p" * 4097}},
        {"user": {"name": "ok", "default_project_id": "missing"}},
        {"user": {"name": "bad\u0000name"}},
        {"user": []},
        {"nope": {}},
    ],
)
def test_user_create_bad_input(server: FerryServer, admin: Api, body: Any) -> None:
    error(call(server, admin.token, "POST", "/users", json=body), 400)


def test_user_create_in_another_domain_is_404(server: FerryServer, admin: Api) -> None:
    body = {"user": {"name": unique("u"), "domain_id": "other"}}
    assert "domain" in error(call(server, admin.token, "POST", "/users", json=body), 404)


# -- roles and assignments ---------------------------------------------------------------------
def test_roles_grants_and_assignments(server: FerryServer, admin: Api) -> None:
    roles = call(server, admin.token, "GET", "/roles").json()["roles"]
    assert sorted(r["name"] for r in roles) == ["admin", "member", "reader", "service"]
    assert call(server, admin.token, "GET", "/roles/member").json()["role"]["id"] == "member"
    error(call(server, admin.token, "GET", "/roles/nope"), 404)
    assert [
        r["id"] for r in call(server, admin.token, "GET", "/roles", params={"name": "reader"}).json()["roles"]
    ] == ["reader"]

    project = make_project(server, admin)
    user = make_user(server, admin)
    path = f"/projects/{project['id']}/users/{user['id']}/roles"
    assert call(server, admin.token, "HEAD", f"{path}/member").status_code == 404
    grant(server, admin, project["id"], user["id"], "member")
    assert call(server, admin.token, "HEAD", f"{path}/member").status_code == 204
    assert [r["id"] for r in call(server, admin.token, "GET", path).json()["roles"]] == ["member"]
    error(call(server, admin.token, "PUT", f"{path}/nope"), 404)
    error(call(server, admin.token, "PUT", f"/projects/missing/users/{user['id']}/roles/member"), 404)

    q = {"user.id": user["id"]}
    direct = call(server, admin.token, "GET", "/role_assignments", params=q).json()["role_assignments"]
    assert [(a["role"]["id"], a["scope"]["project"]["id"]) for a in direct] == [("member", project["id"])]
    assert "name" not in direct[0]["user"]
    eff = call(
        server,
        admin.token,
        "GET",
        "/role_assignments",
        params={**q, "effective": "", "include_names": "True"},
    ).json()["role_assignments"]
    assert sorted(a["role"]["name"] for a in eff) == ["member", "reader"]
    implied = next(a for a in eff if a["role"]["id"] == "reader")
    assert implied["links"]["prior_role"].endswith("/roles/member")
    assert implied["user"]["name"] == user["name"] and implied["scope"]["project"]["name"] == project["name"]
    by_role = call(
        server,
        admin.token,
        "GET",
        "/role_assignments",
        params={"scope.project.id": project["id"], "role.id": "member"},
    ).json()["role_assignments"]
    assert [a["user"]["id"] for a in by_role] == [user["id"]]

    # a user lists their own assignments, not others'
    token = password_login(
        server, {"id": user["id"]}, "s3cret-pw", {"project": {"id": project["id"]}}
    ).headers["X-Subject-Token"]
    assert len(call(server, token, "GET", "/role_assignments", params=q).json()["role_assignments"]) == 1
    error(call(server, token, "GET", "/role_assignments"), 403)
    error(call(server, token, "PUT", f"{path}/admin"), 403)

    assert call(server, admin.token, "DELETE", f"{path}/member").status_code == 204
    error(call(server, token, "GET", f"/users/{user['id']}"), 401)  # the project's tokens go with the role
    error(call(server, admin.token, "DELETE", f"{path}/member"), 404)
    assert call(server, admin.token, "GET", "/role_assignments", params=q).json()["role_assignments"] == []


# -- application credentials -------------------------------------------------------------------
def app_login(server: FerryServer, cred: dict[str, Any]) -> httpx.Response:
    identity = {"methods": ["application_credential"], "application_credential": cred}
    return http.post(f"{v3(server)}/auth/tokens", json={"auth": {"identity": identity}})


def test_application_credentials(server: FerryServer, admin: Api) -> None:
    project = make_project(server, admin)
    user = make_user(server, admin)
    grant(server, admin, project["id"], user["id"], "member")
    token = password_login(
        server, {"id": user["id"]}, "s3cret-pw", {"project": {"id": project["id"]}}
    ).headers["X-Subject-Token"]
    base = f"/users/{user['id']}/application_credentials"
    resp = call(
        server,
        token,
        "POST",
        base,
        json={"application_credential": {"name": "ci", "roles": [{"name": "reader"}]}},
    )
    assert resp.status_code == 201, resp.text
    cred = resp.json()["application_credential"]
    assert len(cred["secret"]) > 40 and cred["project_id"] == project["id"] and cred["unrestricted"] is False
    assert [r["id"] for r in cred["roles"]] == ["reader"]
    shown = call(server, token, "GET", f"{base}/{cred['id']}").json()["application_credential"]
    assert "secret" not in shown and shown["name"] == "ci"
    assert [
        c["id"]
        for c in call(server, token, "GET", base, params={"name": "ci"}).json()["application_credentials"]
    ] == [cred["id"]]
    error(call(server, token, "POST", base, json={"application_credential": {"name": "ci"}}), 409)
    error(
        call(
            server,
            token,
            "POST",
            base,
            json={"application_credential": {"name": "x", "roles": [{"id": "admin"}]}},
        ),
        400,
    )
    other = make_user(server, admin)
    error(call(server, token, "GET", f"/users/{other['id']}/application_credentials"), 403)

    by_id = app_login(server, {"id": cred["id"], "secret": cred["secret"]})
    assert by_id.status_code == 201, by_id.text
    body = by_id.json()["token"]
    assert body["methods"] == ["application_credential"] and body["project"]["id"] == project["id"]
    assert [r["name"] for r in body["roles"]] == ["reader"]
    assert body["application_credential"] == {"id": cred["id"], "name": "ci", "restricted": True}
    cred_token = by_id.headers["X-Subject-Token"]
    vols = http.get(f"{server.base}/volume/v3/{project['id']}/volumes", headers={"X-Auth-Token": cred_token})
    assert vols.status_code == 200, vols.text
    error(call(server, cred_token, "POST", base, json={"application_credential": {"name": "more"}}), 403)
    by_name = app_login(
        server,
        {"name": "ci", "user": {"name": user["name"], "domain": {"id": "default"}}, "secret": cred["secret"]},
    )
    assert by_name.status_code == 201, by_name.text
    error(app_login(server, {"id": cred["id"], "secret": "wrong"}), 401)
    error(app_login(server, {"name": "ci", "secret": cred["secret"]}), 400)

    assert call(server, token, "DELETE", f"{base}/{cred['id']}").status_code == 204
    error(call(server, cred_token, "GET", f"/users/{user['id']}"), 401)  # its tokens go with it
    error(app_login(server, {"id": cred["id"], "secret": cred["secret"]}), 401)
    error(call(server, token, "GET", f"{base}/{cred['id']}"), 404)


# -- projects, domains, catalog ----------------------------------------------------------------
def test_project_update_and_delete_refused_while_it_owns_volumes(server: FerryServer, admin: Api) -> None:
    project = make_project(server, admin)
    resp = call(
        server,
        admin.token,
        "PATCH",
        f"/projects/{project['id']}",
        json={"project": {"description": "team x"}},
    )
    assert resp.status_code == 200 and resp.json()["project"]["description"] == "team x"
    shown = call(server, admin.token, "GET", f"/projects/{project['id']}").json()["project"]
    assert shown["description"] == "team x" and shown["enabled"] is True
    error(
        call(server, admin.token, "PATCH", f"/projects/{project['id']}", json={"project": {"enabled": "no"}}),
        400,
    )

    scoped = Api(admin.base, admin.token, project["id"])
    vol = scoped.volume("POST", "/volumes", json={"volume": {"size": 1}})
    assert vol.status_code == 202, vol.text
    message = error(call(server, admin.token, "DELETE", f"/projects/{project['id']}"), 409)
    assert "1 volume" in message
    vid = vol.json()["volume"]["id"]
    wait_gone = scoped.volume("DELETE", f"/volumes/{vid}")
    assert wait_gone.status_code in (202, 400), wait_gone.text  # 400 while still creating


def test_domains_services_and_endpoints(server: FerryServer, admin: Api) -> None:
    assert call(server, admin.token, "GET", "/domains/default").json()["domain"]["name"] == "Default"
    error(call(server, admin.token, "GET", "/domains/other"), 404)
    services = call(server, admin.token, "GET", "/services").json()["services"]
    assert {"identity", "compute", "volumev3", "block-storage", "image"} <= {s["type"] for s in services}
    token = http.get(
        f"{v3(server)}/auth/tokens", headers={"X-Auth-Token": admin.token, "X-Subject-Token": admin.token}
    )
    catalog = token.json()["token"]["catalog"]
    assert sorted(s["id"] for s in services) == sorted(s["id"] for s in catalog)
    endpoints = call(server, admin.token, "GET", "/endpoints").json()["endpoints"]
    assert sorted(e["id"] for e in endpoints) == sorted(e["id"] for s in catalog for e in s["endpoints"])
    one = call(server, admin.token, "GET", f"/endpoints/{endpoints[0]['id']}").json()["endpoint"]
    assert one["service_id"] in {s["id"] for s in services}
    assert call(server, admin.token, "GET", f"/services/{services[0]['id']}").json()["service"] == services[0]
    error(call(server, admin.token, "GET", "/services/nope"), 404)
    error(call(server, admin.token, "POST", "/services", json={"service": {"type": "x"}}), 403)


def test_system_grants_and_tokens_grant_nothing(server: FerryServer, admin: Api) -> None:
    user = make_user(server, admin)
    path = f"/system/users/{user['id']}/roles"
    assert call(server, admin.token, "HEAD", f"{path}/reader").status_code == 404
    assert call(server, admin.token, "PUT", f"{path}/reader").status_code == 204
    assert call(server, admin.token, "HEAD", f"{path}/reader").status_code == 204
    assert [r["id"] for r in call(server, admin.token, "GET", path).json()["roles"]] == ["reader"]
    listed = call(
        server, admin.token, "GET", "/role_assignments", params={"user.id": user["id"], "scope.system": "all"}
    ).json()["role_assignments"]
    assert [(a["role"]["id"], a["scope"]) for a in listed] == [("reader", {"system": {"all": True}})]
    system = password_login(server, {"id": user["id"]}, "s3cret-pw", {"system": {"all": True}})
    assert system.status_code == 201, system.text
    body = system.json()["token"]
    assert body["system"] == {"all": True} and [r["id"] for r in body["roles"]] == ["reader"]
    token = system.headers["X-Subject-Token"]  # it shows the grant, but grants nothing in Ferry
    error(call(server, token, "GET", "/users"), 403)
    error(call(server, token, "GET", f"/projects/{admin.project_id}"), 403)
    assert call(server, token, "GET", f"/users/{user['id']}").status_code == 200
    assert call(server, admin.token, "DELETE", f"{path}/reader").status_code == 204
    error(call(server, admin.token, "DELETE", f"{path}/reader"), 404)
    error(password_login(server, {"id": user["id"]}, "s3cret-pw", {"system": {"all": True}}), 401)
