"""Registering an image over the API (`POST /compute/v2.1/ferry-images`) on a real `ferry serve`:
the admin may, a member may not, and every bad name, path or format is a 400 that registers nothing."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from ferry.domain.errors import BadRequest
from ferry.services.images import register_image
from testkit.server import Api

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("no_server_errors")]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("image-files")
    for name in ("vmlinuz", "initrd.img", "disk.raw"):
        (root / name).write_bytes(b"\0" * 512)
    (root / "a-dir").mkdir()
    return {p.name: str(p) for p in root.iterdir()}


def register(api: Api, **image: Any) -> Any:
    return api.compute("POST", "/ferry-images", json={"image": image})


def image_names(api: Api) -> list[str]:
    return [i["name"] for i in api.ok(api.compute("GET", "/images/detail"))["images"]]


def test_admin_registers_a_kernel_and_a_disk(admin: Api, files: dict[str, str]) -> None:
    kernel = register(
        admin, name="api-kernel", kernel=files["vmlinuz"], initrd=files["initrd.img"], cmdline="console=ttyS0"
    )
    img = admin.ok(kernel, 201)["image"]
    assert (img["name"], img["status"], img["kernel"], img["initrd"], img["cmdline"], img["disk"]) == (
        "api-kernel",
        "ACTIVE",
        files["vmlinuz"],
        files["initrd.img"],
        "console=ttyS0",
        None,
    )
    shown = admin.ok(admin.compute("GET", f"/images/{img['id']}"))["image"]
    assert (shown["id"], shown["name"]) == (img["id"], "api-kernel")

    disk = admin.ok(register(admin, name="api-disk", disk=files["disk.raw"], disk_format="raw"), 201)["image"]
    assert (disk["disk"], disk["disk_format"], disk["kernel"]) == (files["disk.raw"], "raw", None)

    again = register(admin, name="api-kernel", kernel=files["vmlinuz"])
    assert again.status_code == 409, again.text


def test_a_member_may_not_register(demo: Api, admin: Api, files: dict[str, str]) -> None:
    resp = register(demo, name="api-by-member", kernel=files["vmlinuz"])
    assert resp.status_code == 403, resp.text
    assert "image:register" in resp.json()["forbidden"]["message"]
    assert "api-by-member" not in image_names(admin)


# "@name": the path of that file (or directory) in `files`.
@pytest.mark.parametrize(
    ("image", "says"),
    [
        ({"name": "bad", "kernel": "vmlinuz"}, "absolute"),
        ({"name": "bad", "kernel": "/nonexistent/vmlinuz"}, "does not exist"),
        ({"name": "bad", "kernel": "@a-dir"}, "not a regular file"),
        ({"name": "bad", "kernel": "@vmlinuz", "initrd": "/nonexistent/initrd"}, "does not exist"),
        ({"name": "bad", "kernel": "/" + "x" * 300}, "does not exist"),
        ({"name": "bad", "disk": "@disk.raw", "disk_format": "vmdk"}, "disk_format"),
        ({"name": "bad", "disk": "@disk.raw"}, "qcow2 or raw"),
        ({"name": "bad", "kernel": "@vmlinuz", "disk": "@disk.raw", "disk_format": "raw"}, "either"),
        ({"name": "bad"}, "either"),
        ({"name": "", "kernel": "@vmlinuz"}, "name"),
        ({"name": "   ", "kernel": "@vmlinuz"}, "must not be empty"),
        ({"name": "n" * 256, "kernel": "@vmlinuz"}, "name"),
        ({"name": 5, "kernel": "@vmlinuz"}, "name"),
        ({"kernel": "@vmlinuz"}, "name"),
    ],
)
def test_bad_images_are_400(admin: Api, files: dict[str, str], image: dict[str, Any], says: str) -> None:
    filled = {k: files[v[1:]] if isinstance(v, str) and v.startswith("@") else v for k, v in image.items()}
    resp = register(admin, **filled)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["badRequest"]["message"]
    assert "bad" not in image_names(admin)


def test_a_name_that_is_not_utf8_is_400(admin: Api, files: dict[str, str]) -> None:
    raw = json.dumps({"image": {"name": "@", "kernel": files["vmlinuz"]}}).replace("@", "\\ud800")
    resp = admin.compute("POST", "/ferry-images", content=raw)
    assert resp.status_code == 400, resp.text
    assert "image.name" in resp.json()["badRequest"]["message"]


def test_register_image_refuses_a_name_that_is_not_utf8() -> None:
    """The API's body parsing refuses it first; `ferry init`'s direct path checks it too."""
    with pytest.raises(BadRequest, match="UTF-8"):
        register_image(cast(Any, None), "\ud800", kernel="/bin/sh")  # refused before the database
