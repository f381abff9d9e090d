"""Images and volumes with a real QEMU guest: what a guest wrote to a volume goes, through
`os-volume_upload_image`, into a Glance image and from it into a new volume (`imageRef`), byte for
byte; the new volume attaches to a guest booted by its Glance image id, which reads (scans) and
writes it healthily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.guest import console_offset, wait_for_event
from testkit.scenario import (
    attach,
    boot,
    console_path,
    create_volume,
    detach,
    latest,
    location,
    volume,
    wait_until,
    wait_writing,
)
from testkit.server import Api, FerryServer
from testkit.verify import verify_image

pytestmark = pytest.mark.e2e


def _image(api: Api, image_id: str) -> dict[str, Any]:
    return api.ok(api.image("GET", f"/v2/images/{image_id}"))  # type: ignore[no-any-return]


def test_guest_data_through_an_image_into_a_new_volume(cloud: FerryServer, tmp_path: Path) -> None:
    admin = cloud.api("ferry-admin")
    guest = admin.ok(admin.image("GET", "/v2/images", params={"name": "ferry-test-guest"}))["images"][0]
    assert guest["kernel_id"] and guest["ramdisk_id"]
    sid = boot(admin, guest["id"], "img-guest")  # tempest's image_ref: a Glance image id
    source = create_volume(admin, 1, "written")
    attach(admin, sid, source)
    wait_writing(cloud, sid, source, writes=200)
    final = latest(cloud, sid, source)  # everything up to synced_seq is flushed
    detach(admin, sid, source)
    wait_until("source detached", lambda: volume(admin, source)["status"] == "available")

    action = {"os-volume_upload_image": {"image_name": "written-by-guest", "disk_format": "qcow2"}}
    up = admin.ok(admin.volume("POST", f"/volumes/{source}/action", json=action), 202)[
        "os-volume_upload_image"
    ]
    made = wait_until(
        "image active", lambda: (i := _image(admin, up["image_id"]))["status"] == "active" and i
    )
    file = tmp_path / "image.qcow2"
    file.write_bytes(admin.image("GET", f"/v2/images/{made['id']}/file").content)
    rep = verify_image(file, source, synced_seq=final.synced_seq, first_seq=final.first_seq, fmt="qcow2")
    assert rep.ok and rep.max_seq >= final.synced_seq, rep.summary()

    body = {"volume": {"size": 1, "imageRef": made["id"], "name": "from-image"}}
    copy = admin.ok(admin.volume("POST", "/volumes", json=body), 202)["volume"]["id"]
    got = wait_until("copy available", lambda: (v := volume(admin, copy))["status"] == "available" and v)
    assert got["bootable"] == "true" and got["volume_image_metadata"]["image_id"] == made["id"]
    layer = location(admin, copy)["layers"][-1]["path"]
    rep = verify_image(layer, source, synced_seq=final.synced_seq, first_seq=final.first_seq)
    assert rep.ok and rep.max_seq >= final.synced_seq, rep.summary()

    since = console_offset(console_path(cloud, sid))
    attach(admin, sid, copy)
    wait_for_event(console_path(cloud, sid), "added", copy, timeout=60, since=since)
    st = wait_writing(cloud, sid, copy, writes=100)
    assert st.healthy and st.verified >= 0
    # The image a server booted from cannot be deleted (Nova would lose its kernel).
    assert admin.image("DELETE", f"/v2/images/{guest['id']}").status_code == 409
