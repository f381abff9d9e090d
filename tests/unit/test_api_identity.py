"""Keystone v3 subset against a real `ferry serve`: version documents, password tokens, catalog,
token check/revoke (by whom), what a missing, garbage, revoked or expired token gets (401), and
failed-login throttling (429)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import httpx
import pytest

from ferry.domain.clock import utcnow
from testkit.server import Api, FerryServer
from tests.conftest import make_server

pytestmark = pytest.mark.db


LIFETIME_S = 900


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    """The shared fixture's server, with a token lifetime that is not the default."""
    srv = make_server(tmp_path_factory.mktemp("ferry"))
    cfg = srv.config_path.read_text()
    assert re.search(r"^token_lifetime_s = 3600$", cfg, re.M)
    srv.config_path.write_text(
        re.sub(r"^token_lifetime_s = \d+$", f"token_lifetime_s = {LIFETIME_S}", cfg, flags=re.M)
    )
    srv.start()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


http = httpx.Client(timeout=30)


@pytest.fixture(scope="module")
def admin(server: FerryServer) -> Api:
    return server.api("ferry-admin")


def error(resp: httpx.Response, code: int, kind: str) -> str:
    """Assert an OpenStack-shaped error body and return its message: Keystone's `{"error":
    {code, message, title}}` under /identity, `{kind: {code, message}}` elsewhere."""
    assert resp.status_code == code, resp.text
    body = resp.json()
    if resp.request.url.path.startswith("/identity"):
        kind = "error"
        assert body[kind]["title"] == HTTPStatus(code).phrase, body
    assert list(body) == [kind], body
    assert body[kind]["code"] == code
    assert isinstance(body[kind]["message"], str) and body[kind]["message"]
    return str(body[kind]["message"])


def password_body(user: str, password: str, project: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
            },
            "scope": {"project": project},
        }
    }


def issue(server: FerryServer, body: Any = None, **kw: Any) -> httpx.Response:
    return http.post(f"{server.base}/identity/v3/auth/tokens", json=body, timeout=30, **kw)


def login(server: FerryServer, cloud: str) -> httpx.Response:
    auth = server.cloud(cloud)
    return issue(
        server,
        password_body(
            auth["username"], auth["password"], {"name": auth["project_name"], "domain": {"name": "Default"}}
        ),
    )


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


# -- version discovery -----------------------------------------------------------------------
def test_identity_version_documents(server: FerryServer) -> None:
    for path in ("/identity", "/identity/"):
        doc = http.get(server.base + path).json()
        (v,) = doc["versions"]["values"]
        assert v["id"].startswith("v3.") and v["status"] == "stable"
        assert v["links"][0]["href"] == f"{server.base}/identity/v3/"
    for path in ("/identity/v3", "/identity/v3/"):
        v = http.get(server.base + path).json()["version"]
        assert v["id"].startswith("v3.")
        assert v["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"


def test_volume_version_documents(server: FerryServer) -> None:
    for path in ("/volume", "/volume/", "/volume/v3", "/volume/v3/"):
        resp = http.get(server.base + path)
        assert resp.status_code == (200 if path.startswith("/volume/v3") else 300), path  # as Cinder
        (v,) = resp.json()["versions"]
        assert (v["id"], v["status"], v["min_version"], v["version"]) == ("v3.0", "CURRENT", "3.0", "3.49")
        assert v["links"][0]["href"] == f"{server.base}/volume/v3/"


def test_compute_version_documents(server: FerryServer) -> None:
    for path in ("/compute", "/compute/"):
        (v,) = http.get(server.base + path).json()["versions"]
        assert (v["id"], v["min_version"], v["version"]) == ("v2.1", "2.1", "2.80")  # issue 12
    for path in ("/compute/v2.1", "/compute/v2.1/"):
        v = http.get(server.base + path).json()["version"]
        assert v["id"] == "v2.1" and v["links"][0]["href"] == f"{server.base}/compute/v2.1/"


def test_version_documents_need_no_token(server: FerryServer) -> None:
    for path in ("/identity", "/identity/v3", "/volume", "/volume/v3", "/compute", "/compute/v2.1"):
        assert http.get(server.base + path).status_code == (
            300 if path in ("/volume", "/identity") else 200
        ), path


# -- tokens ----------------------------------------------------------------------------------
def test_password_token_with_catalog(server: FerryServer) -> None:
    resp = login(server, "ferry-admin")
    assert resp.status_code == 201, resp.text
    token = resp.headers["X-Subject-Token"]
    assert len(token) >= 32
    t = resp.json()["token"]
    assert t["methods"] == ["password"]
    assert t["user"]["name"] == "admin" and t["project"]["name"] == "admin"
    assert {r["name"] for r in t["roles"]} == {"admin", "member", "reader"}
    assert (parse_time(t["expires_at"]) - parse_time(t["issued_at"])).total_seconds() == LIFETIME_S
    pid = t["project"]["id"]
    urls = {s["type"]: {e["interface"]: e["url"] for e in s["endpoints"]} for s in t["catalog"]}
    assert set(urls) == {"identity", "block-storage", "volumev3", "compute", "image"}
    assert urls["block-storage"]["public"] == f"{server.base}/volume/v3/{pid}"
    assert urls["volumev3"]["internal"] == f"{server.base}/volume/v3/{pid}"
    assert urls["compute"]["public"] == f"{server.base}/compute/v2.1"
    assert urls["identity"]["admin"] == f"{server.base}/identity"
    assert urls["image"]["public"] == f"{server.base}/image"
    ids = [e["id"] for s in t["catalog"] for e in s["endpoints"]]
    assert len(set(ids)) == len(ids)


def test_member_token_has_member_roles_only(server: FerryServer) -> None:
    t = login(server, "ferry-demo").json()["token"]
    assert t["project"]["name"] == "demo"
    assert {r["name"] for r in t["roles"]} == {"member", "reader"}


def test_token_scoped_by_project_id(server: FerryServer, admin: Api) -> None:
    auth = server.cloud("ferry-admin")
    resp = issue(server, password_body(auth["username"], auth["password"], {"id": admin.project_id}))
    assert resp.status_code == 201, resp.text
    assert resp.json()["token"]["project"]["id"] == admin.project_id


@pytest.mark.parametrize(
    "case",
    [
        "bad password",
        "unknown user",
        "unknown project",
        "no role on project",
        "unknown project id",
        "project name as id",
    ],
)
def test_token_refused(server: FerryServer, case: str) -> None:
    admin = server.cloud("ferry-admin")
    user, password, project = admin["username"], admin["password"], {"name": "admin"}
    if case == "bad password":
        password += "x"
    elif case == "unknown user":
        user = "nobody"
    elif case == "unknown project":
        project = {"name": "nowhere"}
    elif case == "no role on project":
        demo = server.cloud("ferry-demo")
        user, password = demo["username"], demo["password"]
    elif case == "unknown project id":
        project = {"id": "0" * 32}
    else:
        project = {"id": "admin"}  # an id is never matched against names
    resp = issue(server, password_body(user, password, project))
    error(resp, 401, "unauthorized")
    assert "X-Subject-Token" not in resp.headers
    assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")


GOOD = {"name": "admin", "password": "x"}
PW = {"methods": ["password"], "password": {"user": GOOD}}
SCOPE = {"project": {"name": "admin"}}


def auth(identity: Any = PW, scope: Any = SCOPE) -> dict[str, Any]:
    return {"auth": {"identity": identity, "scope": scope}}


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        ["auth"],
        "auth",
        5,
        {},
        {"auth": None},
        {"auth": []},
        {"auth": "x"},
        auth(None),
        auth([]),
        auth({"methods": ["token"]}),
        auth({"methods": 5, "password": {"user": GOOD}}),
        auth({"methods": "password", "password": {"user": GOOD}}),
        auth({"methods": ["password"], "password": "x"}),
        auth({"methods": ["password"], "password": []}),
        auth({"methods": ["password"], "password": {"user": "admin"}}),
        auth({"methods": ["password"], "password": {"user": {"name": 5, "password": "x"}}}),
        auth({"methods": ["password"], "password": {"user": {"name": "admin", "password": ""}}}),
        auth({"methods": ["password"], "password": {"user": {"name": "admin", "password": 5}}}),
        auth({"methods": ["password"], "password": {"user": {"password": "x"}}}),
        auth(scope="admin"),
        auth(scope={"project": "admin"}),
        auth(scope={"project": {}}),
        auth(scope={"project": {"name": 5}}),
        auth(scope={"project": {"id": ["x"]}}),
    ],
)
def test_token_request_bad_input(server: FerryServer, body: Any) -> None:
    error(issue(server, body), 400, "badRequest")


@pytest.mark.parametrize("raw", [b"", b"{", b"{'auth': 1}", b"\xff\xfe", b"[" * 100_000, b"nul"])
def test_token_request_malformed_json(server: FerryServer, raw: bytes) -> None:
    resp = http.post(
        f"{server.base}/identity/v3/auth/tokens", content=raw, headers={"Content-Type": "application/json"}
    )
    error(resp, 400, "badRequest")


def test_check_token_and_catalog(server: FerryServer, admin: Api) -> None:
    demo = login(server, "ferry-demo")
    subject = demo.headers["X-Subject-Token"]
    hdrs = {"X-Auth-Token": admin.token, "X-Subject-Token": subject}
    resp = http.get(f"{server.base}/identity/v3/auth/tokens", headers=hdrs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Subject-Token"] == subject
    assert resp.json()["token"]["project"]["id"] == demo.json()["token"]["project"]["id"]
    assert resp.json()["token"]["expires_at"] == demo.json()["token"]["expires_at"]
    assert http.head(f"{server.base}/identity/v3/auth/tokens", headers=hdrs).status_code == 200
    cat = http.get(f"{server.base}/identity/v3/auth/catalog", headers={"X-Auth-Token": subject})
    assert cat.status_code == 200
    assert {s["type"] for s in cat.json()["catalog"]} == {
        "identity", "block-storage", "volumev3", "compute", "image"
    }  # fmt: skip


def test_check_token_refused(server: FerryServer, admin: Api) -> None:
    url = f"{server.base}/identity/v3/auth/tokens"
    error(http.get(url, headers={"X-Auth-Token": admin.token}), 401, "unauthorized")  # no subject
    error(  # an invalid subject is not found, as in Keystone (the caller's token is good)
        http.get(url, headers={"X-Auth-Token": admin.token, "X-Subject-Token": "garbage"}),
        404,
        "itemNotFound",
    )
    error(http.get(url, headers={"X-Subject-Token": admin.token}), 401, "unauthorized")  # no caller token
    garbage = {"X-Auth-Token": admin.token, "X-Subject-Token": "garbage"}
    assert http.head(url, headers=garbage).status_code == 404
    error(http.get(f"{server.base}/identity/v3/auth/catalog"), 401, "unauthorized")


def test_revoked_token_is_refused(server: FerryServer, admin: Api) -> None:
    token = login(server, "ferry-demo").headers["X-Subject-Token"]
    me = {"X-Auth-Token": token}
    demo_pid = http.get(
        f"{server.base}/identity/v3/auth/tokens", headers={**me, "X-Subject-Token": token}
    ).json()["token"]["project"]["id"]
    volumes = f"{server.base}/volume/v3/{demo_pid}/volumes"
    assert http.get(volumes, headers=me).status_code == 200
    resp = http.delete(
        f"{server.base}/identity/v3/auth/tokens",
        headers={"X-Auth-Token": admin.token, "X-Subject-Token": token},
    )
    assert resp.status_code == 204
    error(http.get(volumes, headers=me), 401, "unauthorized")
    assert (
        http.get(
            volumes.replace(demo_pid, admin.project_id), headers={"X-Auth-Token": admin.token}
        ).status_code
        == 200
    )  # only that token went


@pytest.mark.parametrize("token", [None, "", "garbage", "x" * 257, "x" * 10_000, "\u00e9t\u00e9"])
def test_missing_or_garbage_token_is_401(server: FerryServer, admin: Api, token: str | None) -> None:
    headers: dict[str, Any] = {} if token is None else {"X-Auth-Token": token.encode()}
    pid = admin.project_id
    for method, path in [
        ("GET", f"/volume/v3/{pid}/volumes"),
        ("POST", f"/volume/v3/{pid}/volumes"),
        ("GET", f"/volume/v3/{pid}/types"),
        ("GET", "/compute/v2.1/servers"),
        ("GET", "/compute/v2.1/flavors"),
        ("GET", "/identity/v3/auth/catalog"),
    ]:
        resp = http.request(method, server.base + path, headers=headers, json={"volume": {"size": 1}})
        error(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"] == 'Keystone uri="/identity/v3"'


# -- who may look at or revoke a token (Keystone's identity:check/validate/revoke_token) -------
def test_a_member_may_not_validate_or_revoke_another_users_token(server: FerryServer, admin: Api) -> None:
    url = f"{server.base}/identity/v3/auth/tokens"
    member = login(server, "ferry-demo").headers["X-Subject-Token"]
    other = {"X-Auth-Token": member, "X-Subject-Token": admin.token}
    assert "token:validate" in error(http.get(url, headers=other), 403, "forbidden")
    assert http.head(url, headers=other).status_code == 403
    assert "token:revoke" in error(http.delete(url, headers=other), 403, "forbidden")
    assert admin.volume("GET", "/volumes").status_code == 200  # still valid
    own = {"X-Auth-Token": member, "X-Subject-Token": member}
    assert http.get(url, headers=own).status_code == 200
    assert http.head(url, headers=own).status_code == 200


def test_the_service_role_may_validate_but_not_check_or_revoke(server: FerryServer) -> None:
    """Keystone's defaults: validate (GET) admits the service role, check (HEAD) and revoke do not."""
    url = f"{server.base}/identity/v3/auth/tokens"
    service = login(server, "ferry-service").headers["X-Subject-Token"]
    member = login(server, "ferry-demo").headers["X-Subject-Token"]
    hdrs = {"X-Auth-Token": service, "X-Subject-Token": member}
    assert http.get(url, headers=hdrs).json()["token"]["user"]["name"] == "demo"
    assert http.head(url, headers=hdrs).status_code == 403
    error(http.delete(url, headers=hdrs), 403, "forbidden")


def test_a_user_may_revoke_its_own_token(server: FerryServer) -> None:
    url = f"{server.base}/identity/v3/auth/tokens"
    member = login(server, "ferry-demo").headers["X-Subject-Token"]
    second = login(server, "ferry-demo").headers["X-Subject-Token"]
    assert http.delete(url, headers={"X-Auth-Token": second, "X-Subject-Token": member}).status_code == 204
    error(http.get(url, headers={"X-Auth-Token": member, "X-Subject-Token": member}), 401, "unauthorized")


# -- failed-login throttling ------------------------------------------------------------------
def test_wrong_passwords_are_throttled_with_retry_after(server: FerryServer) -> None:
    """Five wrong passwords for one user name in a minute (the default): the next login, right
    password or not, is 429 with Retry-After, and other users still log in."""
    name = server.add_user("hammered", "right", "demo", "member")
    for _ in range(5):
        error(issue(server, password_body(name, "wrong", {"name": "demo"})), 401, "unauthorized")
    for password in ("wrong", "right"):
        resp = issue(server, password_body(name, password, {"name": "demo"}))
        assert "retry in" in error(resp, 429, "overLimit")
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert "X-Subject-Token" not in resp.headers
    assert login(server, "ferry-demo").status_code == 201


# -- expiry ----------------------------------------------------------------------------------
def expire(server: FerryServer, token: str) -> None:
    """Move a token's expiry into the past, straight in the server's database."""
    from sqlalchemy import update

    from ferry import config as cfgmod
    from ferry.db.engine import make_engine, session_factory
    from ferry.db.models import Token

    engine = make_engine(cfgmod.load(server.config_path).database_url)
    try:
        with session_factory(engine).begin() as s:
            res = s.execute(
                update(Token)
                .where(Token.id_hash == hashlib.sha256(token.encode()).hexdigest())
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            assert res.rowcount == 1
    finally:
        engine.dispose()


def test_expired_token_is_refused(server: FerryServer) -> None:
    api = server.api("ferry-demo")
    assert api.volume("GET", "/volumes").status_code == 200
    expire(server, api.token)
    resp = api.volume("GET", "/volumes")
    assert "expired" in error(resp, 401, "unauthorized")
    error(api.compute("GET", "/servers"), 401, "unauthorized")
    check = http.get(
        f"{server.base}/identity/v3/auth/tokens",
        headers={"X-Auth-Token": server.api().token, "X-Subject-Token": api.token},
    )
    error(check, 404, "itemNotFound")  # an expired subject is not found, as in Keystone
