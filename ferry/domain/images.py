"""Glance's image rules: statuses, visibilities, the formats an image may declare, which of its
fields are Glance's own (never extra properties), and how a declared disk format is verified
against what `qemu-img info` finds in the data."""

from __future__ import annotations

from enum import StrEnum

from ferry.domain.model import DiskFormat


class ImageStatus(StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    ACTIVE = "active"
    KILLED = "killed"
    DEACTIVATED = "deactivated"


class Visibility(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    SHARED = "shared"
    COMMUNITY = "community"


DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")

PROBED_AS: dict[str, str] = {"qcow2": "qcow2", "vhd": "vpc", "vhdx": "vhdx", "vmdk": "vmdk", "vdi": "vdi"}
"""The format qemu-img must find for a declared disk format; every other declared format (raw,
iso, the Amazon kinds, ploop) must probe as plain data: a qcow2 header behind `raw` would have
QEMU follow its backing file, which is why Glance refuses it."""

BOOTABLE_FORMATS = {"qcow2": DiskFormat.QCOW2, "raw": DiskFormat.RAW}
"""Declared formats a server can boot from as its disk."""

CORE_FIELDS = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "owner", "checksum", "os_hash_algo",
        "os_hash_value", "size", "virtual_size", "min_disk", "min_ram", "disk_format",
        "container_format", "created_at", "updated_at", "tags", "file", "self", "schema",
        "direct_url", "locations", "os_hidden", "stores",
    }
)  # fmt: skip
"""Glance's own image fields: never stored as extra properties."""

READ_ONLY = frozenset(
    {"id", "status", "owner", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
     "created_at", "updated_at", "file", "self", "schema", "direct_url", "locations", "stores"}
)  # fmt: skip
"""Fields a caller may not set (Glance answers 403 for these in a create or a patch)."""

PROPERTY_MAX = 255
"""Longest extra property name and value Glance stores."""


def format_mismatch(declared: str, probed: str, has_backing: bool) -> str | None:
    """Why data that `qemu-img info` probes as `probed` is not an image of format `declared`
    (None when it is)."""
    expected = PROBED_AS.get(declared, "raw")
    if probed != expected:
        return f"Image data is {probed}, not the declared disk_format {declared}."
    if has_backing:
        return "Image data refers to a backing file: refused."
    return None
