"""Issue #10's reproductions at the HTTP edge, against a real `ferry serve`: text that cannot be
stored (a lone surrogate, valid JSON) is refused with a 400 naming the field, and rows that hold
such text from an older version still render (2); a 200 MB body is refused with 413 while the
server's memory stays flat (5); each input that used to answer 500 is a 4xx (6). Plus what every
answer carries: a request id, `Allow` on a 405, HEAD wherever GET is served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from ferry import config as cfgmod
from ferry.db.engine import make_engine, session_factory
from ferry.db.models import Snapshot, Volume, VolumeType
from testkit.server import Api, FerryServer

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("no_server_errors")]
LONE = '"\\ud800"'  # a JSON string holding a lone surrogate: valid JSON, not valid UTF-8 text
http = httpx.Client(timeout=120)


def fill(template: str, value: object = LONE) -> str:
    """A JSON text with `value`'s literal in place of each <>."""
    return template.replace("<>", str(value))


def refused(resp: httpx.Response, code: int, *words: str) -> str:
    what = f"{resp.request.method} {resp.request.url}"
    assert resp.status_code == code, f"{what}: {resp.status_code} {resp.text}"
    (kind,) = resp.json()
    message: str = resp.json()[kind]["message"]
    assert all(w in message for w in words), message
    return message


def raw(api: Api, method: str, path: str, text: str, **kw: Any) -> httpx.Response:
    headers = {"X-Auth-Token": api.token, "Content-Type": "application/json", **kw.pop("headers", {})}
    return api.client.request(
        method, f"{api.base}/volume/v3/{api.project_id}{path}", content=text.encode(), headers=headers, **kw
    )


@pytest.fixture(scope="module")
def volume(demo: Api) -> dict[str, Any]:
    body = {"volume": {"size": 1, "name": "edge", "metadata": {"a": "b"}}}
    vol: dict[str, Any] = demo.ok(demo.volume("POST", "/volumes", json=body), 202)["volume"]
    return vol


@pytest.fixture(scope="module")
def snapshot(demo: Api, volume: dict[str, Any]) -> dict[str, Any]:
    snap: dict[str, Any] = demo.ok(
        demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": volume["id"]}}), 202
    )["snapshot"]
    return snap


@pytest.fixture(scope="module")
def vtype(admin: Api) -> dict[str, Any]:
    vt: dict[str, Any] = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "edge"}}))[
        "volume_type"
    ]
    return vt


# -- 2: text that cannot be stored --------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "text", "field"),
    [
        ("POST", "/volumes/{volume}/metadata", fill('{"metadata": {"k": <>}}'), "metadata.k"),
        ("POST", "/volumes/{volume}/metadata", fill('{"metadata": {<>: "v"}}'), "metadata"),
        ("PUT", "/volumes/{volume}", fill('{"volume": {"name": <>}}'), "volume.name"),
        ("POST", "/volumes", fill('{"volume": {"size": 1, "metadata": {"k": <>}}}'), "volume.metadata.k"),
        ("POST", "/volumes", fill('{"volume": {"size": 1, "description": <>}}'), "volume.description"),
        ("PUT", "/snapshots/{snapshot}", fill('{"snapshot": {"metadata": {"k": <>}}}'), "metadata.k"),
        ("POST", "/snapshots", fill('{"snapshot": {"volume_id": "{volume}", "name": <>}}'), "snapshot.name"),
    ],
)
def test_a_lone_surrogate_is_400_naming_the_field(
    demo: Api,
    volume: dict[str, Any],
    snapshot: dict[str, Any],
    method: str,
    path: str,
    text: str,
    field: str,
) -> None:
    ids = {"{volume}": volume["id"], "{snapshot}": snapshot["id"]}
    for mark, ident in ids.items():
        path, text = path.replace(mark, ident), text.replace(mark, ident)
    refused(raw(demo, method, path, text), 400, field, "surrogate")


def test_extra_specs_and_type_text_with_a_lone_surrogate_are_400(admin: Api, vtype: dict[str, Any]) -> None:
    tid = vtype["id"]
    refused(raw(admin, "POST", f"/types/{tid}/extra_specs", fill('{"extra_specs": {<>: "x"}}')), 400, "key")
    refused(raw(admin, "POST", f"/types/{tid}/extra_specs", fill('{"extra_specs": {"x": <>}}')), 400, "x")
    refused(raw(admin, "POST", "/types", fill('{"volume_type": {"name": <>}}')), 400, "volume_type.name")
    assert admin.ok(admin.volume("GET", f"/types/{tid}/extra_specs")) == {"extra_specs": {}}


@pytest.mark.parametrize("where", ["name", "password", "project"])
def test_login_with_a_lone_surrogate_is_400(server: FerryServer, where: str) -> None:
    lone = "\ud800"
    user = {"name": lone if where == "name" else "x", "password": lone if where == "password" else "p"}
    project = {"name": lone if where == "project" else "demo"}
    identity = {"methods": ["password"], "password": {"user": user}}
    text = json.dumps({"auth": {"identity": identity, "scope": {"project": project}}})  # \ud800 escaped
    resp = http.post(f"{server.base}/identity/v3/auth/tokens", content=text)
    refused(resp, 400, "surrogate")


def test_over_long_text_is_400_with_cinders_limits(demo: Api, volume: dict[str, Any]) -> None:
    for change in (
        {"description": "d" * 256},
        {"metadata": {"k": "v" * 256}},
        {"metadata": {"k" * 256: "v"}},
    ):
        refused(demo.volume("PUT", f"/volumes/{volume['id']}", json={"volume": change}), 400)
    ok = demo.ok(demo.volume("PUT", f"/volumes/{volume['id']}", json={"volume": {"description": "d" * 255}}))
    assert ok["volume"]["description"] == "d" * 255


def test_listings_still_render_rows_stored_by_an_older_version(
    server: FerryServer,
    admin: Api,
    demo: Api,
    volume: dict[str, Any],
    snapshot: dict[str, Any],
    vtype: dict[str, Any],
) -> None:
    """Before the edge checked text, a lone surrogate went into the JSON columns (escaped, so SQLite
    took it); from then on every page that showed the row answered 500."""
    bad = {"k": "\ud800", "\udfff": "v"}
    engine = make_engine(cfgmod.load(server.config_path).database_url)
    try:
        with session_factory(engine).begin() as s:
            s.execute(update(Volume).where(Volume.id == volume["id"]).values(meta=bad))
            s.execute(update(Snapshot).where(Snapshot.id == snapshot["id"]).values(meta=bad))
            s.execute(update(VolumeType).where(VolumeType.id == vtype["id"]).values(extra_specs=bad))
    finally:
        engine.dispose()
    shown = {"k": "\ufffd", "\ufffd": "v"}
    for api, path in [
        (demo, f"/volumes/{volume['id']}"),
        (demo, "/volumes/detail"),
        (demo, "/volumes"),
        (admin, "/volumes/detail?all_tenants=1"),
        (demo, f"/volumes/{volume['id']}/metadata"),
        (demo, f"/snapshots/{snapshot['id']}"),
        (demo, "/snapshots/detail"),
        (admin, "/types"),
        (admin, f"/types/{vtype['id']}"),
        (admin, f"/types/{vtype['id']}/extra_specs"),
    ]:
        resp = api.volume("GET", path)
        assert resp.status_code == 200, f"{path}: {resp.text}"
        assert "\ufffd" in resp.text or path == "/volumes", path
    assert demo.ok(demo.volume("GET", f"/volumes/{volume['id']}"))["volume"]["metadata"] == shown
    specs = admin.ok(admin.volume("GET", f"/types/{vtype['id']}/extra_specs"))["extra_specs"]
    assert specs == shown


# -- 5: a huge body ----------------------------------------------------------------------------
def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    yield b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}}}}}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_200_mb_body_is_413_with_bounded_memory(server: FerryServer, declared: bool) -> None:
    assert server.proc is not None
    before = peak_rss_bytes(server.proc.pid)
    total = 200 * (1 << 20)
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(sum(map(len, chunks(total))))
    # The server answers and closes the connection before the body is in; httpx reads the answer.
    resp = http.post(f"{server.base}/identity/v3/auth/tokens", content=chunks(total), headers=headers)
    refused(resp, 413, "too large")
    assert peak_rss_bytes(server.proc.pid) - before < 30 * (1 << 20)
    assert http.get(f"{server.base}/identity/v3").status_code == 200  # still answering


# -- 6: what used to be a 500 ------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        fill('{"os-migrate_volume": {"host": "ferry@bulk#bulk", "bytes_per_sec": <>}}', 2**63),
        fill('{"ferry-migrate_set_speed": {"bytes_per_sec": <>}}', 2**63),
        fill('{"os-extend": {"new_size": <>}}', 2**64),
        fill('{"os-extend": {"new_size": <>}}', "9" * 5000),
        fill('{"os-extend": {"new_size": 2, "unknown": <>}}', "9" * 5000),
        fill('{"os-extend": {"new_size": -<>}}', "9" * 5000),
    ],
    ids=["migrate-2**63", "set_speed-2**63", "extend-2**64", "5000-digits", "5000-digits-unused", "negative"],
)
def test_integers_beyond_64_bits_are_400(admin: Api, demo: Api, volume: dict[str, Any], text: str) -> None:
    as_admin = Api(admin.base, admin.token, demo.project_id)
    refused(raw(as_admin, "POST", f"/volumes/{volume['id']}/action", text), 400, "64 bits")
    assert demo.ok(demo.volume("GET", f"/volumes/{volume['id']}"))["volume"]["status"] == "available"


def test_a_volume_of_2_to_the_64_gib_is_400(demo: Api) -> None:
    refused(raw(demo, "POST", "/volumes", fill('{"volume": {"size": <>}}', 2**64)), 400, "volume.size")


@pytest.mark.parametrize("query", [{"limit": str(2**64)}, {"limit": "9" * 5000}, {"marker": "m" * 300}])
def test_out_of_range_query_values_are_400(demo: Api, query: dict[str, str]) -> None:
    for path in ("/volumes", "/volumes/detail", "/snapshots"):
        refused(demo.volume("GET", path, params=query), 400)


def test_console_offsets_beyond_64_bits_are_400(admin: Api) -> None:
    resp = admin.compute("GET", f"/servers/{'0' * 8}/ferry-console", params={"offset": str(2**64)})
    refused(resp, 400)


@pytest.mark.parametrize(
    "header",
    ["volume 3." + "1" * 5000, "volume 3.1" + ", compute 2.1" * 30, "volume " + "9" * 40 + ".0"],
    ids=["5000-digit-minor", "padded", "40-digit-major"],
)
def test_over_long_or_huge_microversions_are_4xx(demo: Api, header: str) -> None:
    resp = demo.client.get(
        f"{demo.base}/volume/v3/{demo.project_id}/volumes",
        headers={"X-Auth-Token": demo.token, "OpenStack-API-Version": header},
    )
    assert resp.status_code in (400, 406), resp.text
    assert len(resp.text) < 500  # the refusal does not echo the header back whole


# -- what every answer carries -------------------------------------------------------------------
def test_every_answer_has_a_request_id(server: FerryServer, demo: Api) -> None:
    answers = [
        demo.volume("GET", "/volumes"),
        demo.volume("GET", "/volumes/nope"),
        http.get(f"{server.base}/nothing"),
        http.post(f"{server.base}/identity/v3/auth/tokens", content=b"{"),
    ]
    ids = {r.headers["x-openstack-request-id"] for r in answers}
    assert len(ids) == len(answers) and all(i.startswith("req-") for i in ids)


def test_a_wrong_method_is_405_with_allow(demo: Api) -> None:
    resp = demo.volume("PATCH", "/volumes")
    refused(resp, 405)
    assert resp.headers["Allow"] == "GET, HEAD, POST"
    resp = demo.volume("POST", "/scheduler-stats/get_pools")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, HEAD"


def test_head_answers_where_get_does(demo: Api, volume: dict[str, Any]) -> None:
    for path in ("/volumes", f"/volumes/{volume['id']}", "/types"):
        got, head = demo.volume("GET", path), demo.volume("HEAD", path)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-length"] == got.headers["content-length"]
    assert demo.volume("HEAD", "/volumes/nope").status_code == 404
    assert demo.compute("HEAD", "/flavors").status_code == 200
