"""The serial console: Nova's os-getConsoleOutput and Ferry's ferry-console follower, served
in-process on the fake hypervisor (whose console a test prints on), and the QEMU driver's
bounded reads of a run dir's console log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ferry import config as cfgmod
from ferry.api.app import create_app
from ferry.domain.errors import BadRequest, NotFound
from ferry.drivers.hypervisor.console import MAX_TAIL, complete_utf8
from ferry.drivers.hypervisor.fake import BOOT_LINE, FakeHypervisorDriver
from ferry.drivers.hypervisor.qemu import RunDir
from ferry.services import bootstrap
from ferry.services.app import Ferry
from ferry.services.identity import IdentityService
from ferry.services.images import register_image
from testkit.server import Api


@dataclass
class Cloud:
    hv: FakeHypervisorDriver
    admin: Api
    demo: Api
    reader: Api
    server: str
    """A server of the demo project."""
    admins_server: str


def token(client: TestClient, user: str, password: str, project: str) -> Api:
    scope = {"project": {"name": project, "domain": {"name": "Default"}}}
    user_ref = {"name": user, "domain": {"name": "Default"}, "password": password}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user_ref}}, "scope": scope}}
    resp = client.post("/identity/v3/auth/tokens", json=body)
    assert resp.status_code == 201, resp.text
    return Api("", resp.headers["X-Subject-Token"], resp.json()["token"]["project"]["id"], client)


def make_server(api: Api, image: str) -> str:
    body = {"server": {"name": "s", "imageRef": image, "flavorRef": "tiny"}}
    return str(api.ok(api.compute("POST", "/servers", json=body), 202)["server"]["id"])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("console")
    cfg = cfgmod.default_config(tmp / "data")
    (tmp / "data").mkdir(parents=True)
    bootstrap.setup_database(cfg, bootstrap.Credentials("a", "s", "d"))
    hv = FakeHypervisorDriver()
    app = Ferry(cfg, hypervisor=hv)
    with app.db.begin() as s:
        ident = IdentityService(app.db, cfg.token_lifetime_s)
        ident.ensure_user(s, "watcher", "w", ident.ensure_project(s, "demo"), "reader")
    kernel = tmp / "vmlinuz"
    kernel.write_bytes(b"k")
    image = register_image(app.db, "img", kernel=str(kernel)).id
    with TestClient(create_app(app)) as client:
        admin, demo = token(client, "admin", "a", "admin"), token(client, "demo", "d", "demo")
        reader = token(client, "watcher", "w", "demo")
        yield Cloud(hv, admin, demo, reader, make_server(demo, image), make_server(admin, image))


def console_output(api: Api, sid: str, args: Any = None) -> Any:
    return api.compute("POST", f"/servers/{sid}/action", json={"os-getConsoleOutput": args or {}})


def follow(api: Api, sid: str, **params: Any) -> Any:
    return api.compute("GET", f"/servers/{sid}/ferry-console", params=params)


def error(resp: Any, code: int) -> str:
    assert resp.status_code == code, resp.text
    (body,) = resp.json().values()
    return str(body["message"])


# -- os-getConsoleOutput ---------------------------------------------------------------------
def test_owner_and_admin_read_the_console_from_boot(cloud: Cloud) -> None:
    for api in (cloud.demo, cloud.admin):
        resp = console_output(api, cloud.server)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"output": f"{BOOT_LINE} {cloud.server}\n"}


def test_length_is_the_last_lines(cloud: Cloud) -> None:
    cloud.hv.write_console(cloud.server, "one\r\ntwo\nthree\x1b[0m\n")
    assert cloud.demo.ok(console_output(cloud.demo, cloud.server, {"length": 2})) == {
        "output": "two\nthree[0m\n"
    }
    assert cloud.demo.ok(console_output(cloud.demo, cloud.server, {"length": "1"}))["output"] == "three[0m\n"
    assert cloud.demo.ok(console_output(cloud.demo, cloud.server, {"length": 0}))["output"] == ""
    whole = cloud.demo.ok(console_output(cloud.demo, cloud.server))["output"]
    assert whole.startswith(BOOT_LINE) and whole.endswith("one\ntwo\nthree[0m\n")  # \r and ESC stripped
    for length in (None, -1, "-1", 10**6):
        assert cloud.demo.ok(console_output(cloud.demo, cloud.server, {"length": length}))["output"] == whole


BAD_ARGS = [{"length": -2}, {"length": "abc"}, {"length": " 1"}, {"length": True}, {"length": 1.5}]
BAD_ARGS += [{"length": [1]}, {"length": 1, "other": 2}, "all", 5, [], None]


@pytest.mark.parametrize("args", BAD_ARGS)
def test_bad_length_is_400(cloud: Cloud, args: Any) -> None:
    body = {"os-getConsoleOutput": args}
    assert "os-getConsoleOutput" in error(
        cloud.demo.compute("POST", f"/servers/{cloud.server}/action", json=body), 400
    )


def test_another_projects_server_is_404_and_a_reader_is_refused(cloud: Cloud) -> None:
    error(console_output(cloud.demo, cloud.admins_server), 404)
    error(follow(cloud.demo, cloud.admins_server), 404)
    error(console_output(cloud.demo, str(uuid.uuid4())), 404)
    assert "server:console" in error(console_output(cloud.reader, cloud.server), 403)
    assert "server:console" in error(follow(cloud.reader, cloud.server), 403)


# -- ferry-console ---------------------------------------------------------------------------
def test_following_reads_on_from_the_offset(cloud: Cloud) -> None:
    start = cloud.demo.ok(follow(cloud.demo, cloud.server))
    assert start["output"].startswith(f"{BOOT_LINE} {cloud.server}\n")
    assert start["offset"] == len(start["output"].encode())
    assert cloud.demo.ok(follow(cloud.demo, cloud.server, offset=start["offset"])) == {
        "output": "",
        "offset": start["offset"],
    }
    cloud.hv.write_console(cloud.server, "h\u00e9\u00e9\n")  # é is two bytes
    first = cloud.demo.ok(follow(cloud.demo, cloud.server, offset=start["offset"], limit=2))
    assert first == {"output": "h", "offset": start["offset"] + 1}  # never half a character
    rest = cloud.demo.ok(follow(cloud.demo, cloud.server, offset=first["offset"], limit=100))
    assert rest == {"output": "\u00e9\u00e9\n", "offset": first["offset"] + 5}
    again = cloud.demo.ok(follow(cloud.demo, cloud.server, offset=10**9))  # the log began anew
    assert again["output"].startswith(BOOT_LINE) and again["offset"] == len(again["output"].encode())


@pytest.mark.parametrize("params", [{"offset": -1}, {"offset": "x"}, {"limit": 0}, {"limit": "many"}])
def test_bad_offset_or_limit_is_400(cloud: Cloud, params: dict[str, Any]) -> None:
    error(follow(cloud.demo, cloud.server, **params), 400)


# -- pieces ----------------------------------------------------------------------------------
def test_complete_utf8_drops_only_a_cut_character() -> None:
    euro = "\u20ac".encode()  # three bytes
    assert complete_utf8(b"ab" + euro) == b"ab" + euro
    assert complete_utf8(b"ab" + euro[:2]) == b"ab"
    assert complete_utf8(b"ab" + euro[:1]) == b"ab"
    assert complete_utf8(b"ab\xff") == b"ab\xff"  # invalid, not cut: decoded with replacement
    assert complete_utf8(b"") == b""


def test_run_dir_console_reads_are_bounded(tmp_path: Path) -> None:
    run = RunDir.of(tmp_path, str(uuid.uuid4()))
    with pytest.raises(NotFound, match="no console log"):
        run.console_output(None)
    run.path.mkdir()
    line = b"x" * 99 + b"\n"
    run.console.write_bytes(b"first\n" + line * (2 * MAX_TAIL // len(line)))
    whole = run.console_output(None)
    assert len(whole) <= MAX_TAIL and whole.startswith("x") and whole.endswith("x\n")
    assert run.console_output(3) == (line * 3).decode()
    data, after = run.console_read(0, 10**9)
    assert data.startswith(b"first\n") and after == len(data) <= MAX_TAIL
    assert run.console_read(6, 4) == (b"xxxx", 10)
    with pytest.raises(BadRequest):
        run.console_read(-1, 10)
    with pytest.raises(BadRequest):
        run.console_output(-1)
