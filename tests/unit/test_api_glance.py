"""Glance v2 at /image on a real `ferry serve`: create, upload (streamed, hashed, verified by
qemu-img), download, visibility across projects, deactivate/reactivate, delete refusals, bad input,
volumes created from images (their bytes) and volumes uploaded to images."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.scenario import wait_until
from testkit.server import Api, FerryServer

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("no_server_errors")]
DATA = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
GiB = 1024**3


@pytest.fixture(scope="module")
def other(server: FerryServer) -> Api:
    """A member of another project."""
    return server.api(server.add_user("glance-other", "pw-other-1", "glance-other-project", "member"))


def create(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": f"img-{os.urandom(4).hex()}", "disk_format": "raw", "container_format": "bare", **fields}
    return api.ok(api.image("POST", "/v2/images", json=body), 201)  # type: ignore[no-any-return]


def upload(api: Api, image_id: str, data: bytes) -> Any:
    return api.image("PUT", f"/v2/images/{image_id}/file", headers=DATA, content=data)


def show(api: Api, image_id: str) -> dict[str, Any]:
    return api.ok(api.image("GET", f"/v2/images/{image_id}"))  # type: ignore[no-any-return]


def qcow2_bytes(tmp: Path, size: str = "1M") -> bytes:
    path = tmp / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path.read_bytes()


def active_image(api: Api, data: bytes, **fields: Any) -> dict[str, Any]:
    img = create(api, **fields)
    assert upload(api, img["id"], data).status_code == 204
    return show(api, img["id"])


def test_the_catalog_has_the_image_service_and_discovery_answers(admin: Api) -> None:
    catalog = admin.ok(
        admin.client.get(f"{admin.base}/identity/v3/auth/catalog", headers={"X-Auth-Token": admin.token})
    )
    image = next(e for e in catalog["catalog"] if e["type"] == "image")
    assert {(e["interface"], e["url"]) for e in image["endpoints"]} == {
        (i, f"{admin.base}/image") for i in ("public", "internal", "admin")
    }
    assert admin.client.get(f"{admin.base}/image/").status_code == 300
    versions = admin.ok(admin.client.get(f"{admin.base}/image/versions"))["versions"]
    assert versions[0]["status"] == "CURRENT" and versions[0]["id"].startswith("v2.")


def test_upload_records_size_and_hashes_and_downloads_the_same_bytes(demo: Api) -> None:
    data = os.urandom(300 * 1024)
    img = create(demo, min_disk=0, protected=False, visibility="private", hw_disk_bus="virtio", tags=["a"])
    assert (img["status"], img["size"], img["hw_disk_bus"], img["tags"]) == ("queued", None, "virtio", ["a"])
    assert upload(demo, img["id"], data).status_code == 204
    got = show(demo, img["id"])
    assert (got["status"], got["size"], got["virtual_size"]) == ("active", len(data), len(data))
    assert got["checksum"] == hashlib.md5(data).hexdigest()
    assert (got["os_hash_algo"], got["os_hash_value"]) == ("sha512", hashlib.sha512(data).hexdigest())
    down = demo.image("GET", f"/v2/images/{img['id']}/file")
    assert down.status_code == 200 and down.content == data
    assert down.headers["content-md5"] == got["checksum"]
    again = upload(demo, img["id"], data)
    assert again.status_code == 409, again.text


def test_a_queued_image_downloads_nothing(demo: Api) -> None:
    img = create(demo)
    assert demo.image("GET", f"/v2/images/{img['id']}/file").status_code == 204


def test_data_that_is_not_what_it_claims_is_refused_and_the_image_stays_queued(
    demo: Api, tmp_path: Path
) -> None:
    qcow2 = qcow2_bytes(tmp_path)
    as_raw = create(demo, disk_format="raw")
    refused = upload(demo, as_raw["id"], qcow2)
    assert refused.status_code == 400 and "qcow2" in refused.text, refused.text
    assert show(demo, as_raw["id"])["status"] == "queued"
    assert upload(demo, as_raw["id"], b"plain raw bytes" * 100).status_code == 204  # a retry succeeds
    as_qcow2 = create(demo, disk_format="qcow2")
    refused = upload(demo, as_qcow2["id"], os.urandom(4096))
    assert refused.status_code == 400, refused.text
    assert show(demo, as_qcow2["id"])["status"] == "queued"
    assert upload(demo, as_qcow2["id"], qcow2).status_code == 204
    got = show(demo, as_qcow2["id"])
    assert (got["status"], got["virtual_size"]) == ("active", 1024 * 1024)
    backed = tmp_path / "backed.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(backed), "1M"],
        check=True,
    )
    sneaky = create(demo, disk_format="qcow2")
    refused = upload(demo, sneaky["id"], backed.read_bytes())
    assert refused.status_code == 400 and "backing" in refused.text, refused.text


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_upload_streams_to_disk_without_growing_the_server(server: FerryServer, demo: Api) -> None:
    assert server.proc is not None
    img = create(demo)
    before = _peak_rss_kib(server.proc.pid)
    block = os.urandom(1024 * 1024)
    total = 160

    def body() -> Iterator[bytes]:
        for _ in range(total):
            yield block

    resp = demo.image("PUT", f"/v2/images/{img['id']}/file", headers=DATA, content=body())
    assert resp.status_code == 204, resp.text
    assert show(demo, img["id"])["size"] == total * len(block)
    grown_mib = (_peak_rss_kib(server.proc.pid) - before) / 1024
    assert grown_mib < 48, f"the server's peak RSS grew by {grown_mib:.0f} MiB for a {total} MiB upload"


def test_private_images_are_their_projects_and_public_ones_everyones(
    demo: Api, other: Api, admin: Api
) -> None:
    mine = create(demo, visibility="private")
    assert other.image("GET", f"/v2/images/{mine['id']}").status_code == 404
    assert mine["id"] not in [i["id"] for i in other.ok(other.image("GET", "/v2/images"))["images"]]
    assert upload(other, mine["id"], b"x" * 512).status_code == 404
    assert other.image("DELETE", f"/v2/images/{mine['id']}").status_code == 404
    assert show(admin, mine["id"])["owner"] == demo.project_id
    refused = demo.image("POST", "/v2/images", json={"name": "pub", "visibility": "public"})
    assert refused.status_code == 403, refused.text
    public = create(admin, visibility="public")
    assert show(other, public["id"])["visibility"] == "public"
    denied = other.image(
        "PATCH",
        f"/v2/images/{public['id']}",
        headers=PATCH,
        json=[{"op": "replace", "path": "/name", "value": "x"}],
    )
    assert denied.status_code == 403, denied.text
    assert other.image("DELETE", f"/v2/images/{public['id']}").status_code == 403


def test_list_filters_and_pages(demo: Api) -> None:
    tag = os.urandom(4).hex()
    ids = {create(demo, tags=[tag], container_format=c)["id"] for c in ("bare", "ovf", "ova")}
    listed = demo.ok(demo.image("GET", "/v2/images", params={"tag": tag}))["images"]
    assert {i["id"] for i in listed} == ids
    ovf = demo.ok(demo.image("GET", "/v2/images", params={"tag": tag, "container_format": "ovf"}))["images"]
    assert [i["container_format"] for i in ovf] == ["ovf"]
    hidden = demo.ok(demo.image("GET", "/v2/images", params={"tag": tag, "os_hidden": "true"}))["images"]
    assert hidden == []  # what `openstack image delete NAME` also asks for: Ferry hides none
    seen: list[str] = []
    params: dict[str, str] = {"tag": tag, "limit": "2", "sort_key": "name", "sort_dir": "asc"}
    page = demo.ok(demo.image("GET", "/v2/images", params=params))
    seen += [i["id"] for i in page["images"]]
    assert len(seen) == 2 and "next" in page and page["first"].startswith("/v2/images")
    page = demo.ok(demo.image("GET", "/v2/images", params={**params, "marker": seen[-1]}))
    seen += [i["id"] for i in page["images"]]
    assert set(seen) == ids and len(seen) == 3
    names = [
        i["name"] for i in demo.ok(demo.image("GET", "/v2/images", params=params | {"limit": "5"}))["images"]
    ]
    assert names == sorted(names)
    assert demo.ok(demo.image("GET", "/v2/images", params={"status": "no-such"}))["images"] == []


def test_patch_adds_replaces_and_removes_properties(demo: Api) -> None:
    img = create(demo)
    ops = [
        {"op": "add", "path": "/os_distro", "value": "ferry"},
        {"op": "replace", "path": "/name", "value": "renamed-" + img["id"][:8]},
        {"op": "replace", "path": "/min_ram", "value": 128},
    ]
    got = demo.ok(demo.image("PATCH", f"/v2/images/{img['id']}", headers=PATCH, json=ops))
    assert (got["os_distro"], got["name"], got["min_ram"]) == ("ferry", "renamed-" + img["id"][:8], 128)
    draft = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
    got = demo.ok(
        demo.image("PATCH", f"/v2/images/{img['id']}", headers=draft, json=[{"remove": "/os_distro"}])
    )
    assert "os_distro" not in got


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "code"),
    [
        ("POST", "", None, {"disk_format": "floppy"}, 400),
        ("POST", "", None, {"container_format": "zip"}, 400),
        ("POST", "", None, {"min_disk": -1}, 400),
        ("POST", "", None, {"min_ram": "a lot"}, 400),
        ("POST", "", None, {"protected": "yes"}, 400),
        ("POST", "", None, {"tags": "not-a-list"}, 400),
        ("POST", "", None, {"visibility": "everyone"}, 400),
        ("POST", "", None, {"size": 3}, 403),
        ("POST", "", None, {"status": "active"}, 403),
        ("POST", "", None, {"id": "not-a-uuid"}, 400),
        ("POST", "", None, {"prop": 5}, 400),
        ("PATCH", "/{id}", {"Content-Type": "application/json"}, [], 415),
        ("PATCH", "/{id}", PATCH, {"op": "add"}, 400),
        ("PATCH", "/{id}", PATCH, [{"op": "move", "path": "/name"}], 400),
        ("PATCH", "/{id}", PATCH, [{"op": "add", "path": "name", "value": "x"}], 400),
        ("PATCH", "/{id}", PATCH, [{"op": "replace", "path": "/checksum", "value": "x"}], 403),
        ("PATCH", "/{id}", PATCH, [{"op": "remove", "path": "/no_such_prop"}], 409),
        ("PUT", "/{id}/file", {"Content-Type": "application/json"}, None, 415),
        ("GET", "/00000000-0000-0000-0000-000000000000", None, None, 404),
        ("GET", "/not-a-uuid", None, None, 404),
    ],
)
def test_bad_input_is_a_clear_4xx(
    demo: Api, method: str, path: str, headers: dict[str, str] | None, body: Any, code: int
) -> None:
    img = create(demo)
    resp = demo.image(method, "/v2/images" + path.format(id=img["id"]), headers=headers, json=body)
    assert resp.status_code == code, resp.text


@pytest.mark.parametrize(
    "params",
    [{"limit": "-1"}, {"limit": "x"}, {"sort_key": "secret"}, {"sort_dir": "up"}, {"marker": "nope"}],
)
def test_bad_list_parameters_are_400(demo: Api, params: dict[str, str]) -> None:
    assert demo.image("GET", "/v2/images", params=params).status_code == 400


def test_upload_needs_formats(demo: Api) -> None:
    img = demo.ok(demo.image("POST", "/v2/images", json={"name": f"noformat-{os.urandom(3).hex()}"}), 201)
    resp = upload(demo, img["id"], b"x" * 512)
    assert resp.status_code == 400 and "disk_format" in resp.text


def test_deactivated_images_cannot_be_downloaded_or_become_volumes(demo: Api, admin: Api) -> None:
    img = active_image(demo, b"d" * 4096)
    assert demo.image("POST", f"/v2/images/{img['id']}/actions/deactivate").status_code == 204
    assert demo.image("POST", f"/v2/images/{img['id']}/actions/deactivate").status_code == 204  # idempotent
    assert show(demo, img["id"])["status"] == "deactivated"
    assert demo.image("GET", f"/v2/images/{img['id']}/file").status_code == 403
    assert admin.image("GET", f"/v2/images/{img['id']}/file").status_code == 200
    vol = demo.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": img["id"]}})
    assert vol.status_code == 400, vol.text
    assert demo.image("POST", f"/v2/images/{img['id']}/actions/reactivate").status_code == 204
    assert demo.image("GET", f"/v2/images/{img['id']}/file").content == b"d" * 4096
    queued = create(demo)
    assert demo.image("POST", f"/v2/images/{queued['id']}/actions/deactivate").status_code == 403


def test_protected_and_registered_images_are_not_deleted(demo: Api, admin: Api, server: FerryServer) -> None:
    img = create(demo, protected=True)
    assert demo.image("DELETE", f"/v2/images/{img['id']}").status_code == 403
    unprotect = [{"op": "replace", "path": "/protected", "value": False}]
    demo.ok(demo.image("PATCH", f"/v2/images/{img['id']}", headers=PATCH, json=unprotect))
    assert demo.image("DELETE", f"/v2/images/{img['id']}").status_code == 204
    assert demo.image("GET", f"/v2/images/{img['id']}").status_code == 404
    data = active_image(demo, b"z" * 1024)
    stored = server.data_dir / "images" / data["id"]
    assert stored.exists()
    assert demo.image("DELETE", f"/v2/images/{data['id']}").status_code == 204
    assert not stored.exists()


def _volume(api: Api, vol_id: str) -> dict[str, Any]:
    return api.ok(api.volume("GET", f"/volumes/{vol_id}"))["volume"]  # type: ignore[no-any-return]


def _volume_bytes(server: FerryServer, admin: Api, vol_id: str, tmp: Path) -> bytes:
    name_id = _volume(admin, vol_id)["os-vol-mig-status-attr:name_id"]
    layer = next(server.data_dir.glob(f"backends/*/volume-{name_id}/*"))
    raw = tmp / f"{vol_id}.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(layer), str(raw)], check=True)
    return raw.read_bytes()


def test_a_volume_from_an_image_holds_its_bytes_and_metadata(
    server: FerryServer, demo: Api, admin: Api, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 512)
    img = active_image(demo, data, os_distro="ferry-os")
    vol = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": img["id"]}}), 202)[
        "volume"
    ]
    got = wait_until(
        "volume available", lambda: (v := _volume(demo, vol["id"]))["status"] == "available" and v
    )
    assert got["bootable"] == "true"
    meta = got["volume_image_metadata"]
    assert (meta["image_id"], meta["image_name"], meta["checksum"], meta["os_distro"]) == (
        img["id"], img["name"], img["checksum"], "ferry-os",
    )  # fmt: skip
    assert (meta["disk_format"], meta["container_format"], meta["size"]) == ("raw", "bare", str(len(data)))
    content = _volume_bytes(server, admin, vol["id"], tmp_path)
    assert (
        len(content) == GiB
        and content[: len(data)] == data
        and content[len(data) : len(data) + 4096] == bytes(4096)
    )
    clone = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"source_volid": vol["id"]}}), 202)[
        "volume"
    ]
    cloned = wait_until(
        "clone available", lambda: (v := _volume(demo, clone["id"]))["status"] == "available" and v
    )
    assert cloned["bootable"] == "true" and cloned["volume_image_metadata"]["image_id"] == img["id"]
    plain = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1}}), 202)["volume"]
    assert _volume(demo, plain["id"])["bootable"] == "false"
    assert "volume_image_metadata" not in _volume(demo, plain["id"])
    # Cinder's `glance_metadata` list filter (3.4): the volumes made from this image
    v34 = {"OpenStack-API-Version": "volume 3.4"}
    wanted = {"glance_metadata": json.dumps({"image_id": img["id"], "os_distro": "ferry-os"})}
    listed = demo.ok(demo.volume("GET", "/volumes", params=wanted, headers=v34))["volumes"]
    assert sorted(v["id"] for v in listed) == sorted((vol["id"], clone["id"]))
    for v in (clone["id"], vol["id"], plain["id"]):
        wait_until("volume deletable", lambda v=v: _volume(demo, v)["status"] == "available")
        assert demo.volume("DELETE", f"/volumes/{v}").status_code == 202


def test_a_volume_smaller_than_its_image_is_refused(demo: Api, other: Api) -> None:
    img = active_image(demo, b"m" * 1024, min_disk=3)
    small = demo.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": img["id"]}})
    assert small.status_code == 400 and "minDisk" in small.text, small.text
    queued = create(demo)
    assert (
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": queued["id"]}}).status_code
        == 400
    )
    mine = active_image(demo, b"p" * 1024, visibility="private")
    assert (
        other.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": mine["id"]}}).status_code
        == 400
    )
    assert (
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": "nope"}}).status_code == 400
    )


def test_a_volume_uploads_to_an_image_and_back(
    server: FerryServer, demo: Api, admin: Api, tmp_path: Path
) -> None:
    data = os.urandom(1024 * 1024)
    img = active_image(demo, data)
    vol = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1, "imageRef": img["id"]}}), 202)[
        "volume"
    ]
    wait_until("volume available", lambda: _volume(demo, vol["id"])["status"] == "available")
    for fmt in ("raw", "qcow2"):
        name = f"from-volume-{fmt}-{os.urandom(3).hex()}"
        action = {"os-volume_upload_image": {"image_name": name, "disk_format": fmt, "force": "False"}}
        body = demo.ok(demo.volume("POST", f"/volumes/{vol['id']}/action", json=action), 202)[
            "os-volume_upload_image"
        ]
        assert (body["id"], body["image_name"], body["disk_format"], body["status"]) == (
            vol["id"],
            name,
            fmt,
            "uploading",
        )
        made = wait_until(
            "image active", lambda b=body: (i := show(demo, b["image_id"]))["status"] == "active" and i
        )
        assert (made["name"], made["disk_format"], made["virtual_size"], made["owner"]) == (
            name,
            fmt,
            GiB,
            demo.project_id,
        )
        file = tmp_path / f"back.{fmt}"
        file.write_bytes(demo.image("GET", f"/v2/images/{made['id']}/file").content)
        assert hashlib.md5(file.read_bytes()).hexdigest() == made["checksum"]
        raw = tmp_path / "back.raw-out"
        subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(file), str(raw)], check=True)
        assert raw.read_bytes()[: len(data)] == data
    bad = demo.volume(
        "POST",
        f"/volumes/{vol['id']}/action",
        json={"os-volume_upload_image": {"image_name": "x", "disk_format": "floppy"}},
    )
    assert bad.status_code == 400, bad.text
    bad = demo.volume(
        "POST", f"/volumes/{vol['id']}/action", json={"os-volume_upload_image": {"disk_format": "raw"}}
    )
    assert bad.status_code == 400, bad.text
    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202


def test_registered_kernel_images_appear_with_kernel_and_ramdisk(
    server: FerryServer, admin: Api, demo: Api, tmp_path: Path
) -> None:
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(os.urandom(2048))
    reg = {
        "name": "glance-guest",
        "kernel": str(tmp_path / "vmlinuz"),
        "initrd": str(tmp_path / "initrd.img"),
    }
    img_id = admin.ok(admin.compute("POST", "/ferry-images", json={"image": reg}), 201)["image"]["id"]
    got = show(demo, img_id)
    assert (got["status"], got["visibility"], got["disk_format"], got["container_format"]) == (
        "active",
        "public",
        "ami",
        "ami",
    )
    kernel, ramdisk = show(demo, got["kernel_id"]), show(demo, got["ramdisk_id"])
    assert (kernel["disk_format"], kernel["name"], kernel["size"]) == ("aki", "glance-guest-kernel", 2048)
    assert (ramdisk["disk_format"], ramdisk["name"]) == ("ari", "glance-guest-ramdisk")
    assert (
        demo.image("GET", f"/v2/images/{got['kernel_id']}/file").content
        == (tmp_path / "vmlinuz").read_bytes()
    )
    assert demo.image("DELETE", f"/v2/images/{img_id}").status_code == 403
