"""QoS specs: who applies them (the consumer) and the front-end limits a hypervisor enforces.

Cinder's consumers: `back-end` specs are for the storage driver (Ferry's file backends have no
knob for them, so they are stored and shown only), `front-end` specs are applied by the
hypervisor to the guest's disk (Nova's libvirt `iotune`), `both` is both.
"""

from __future__ import annotations

from enum import StrEnum


class QosConsumer(StrEnum):
    FRONT_END = "front-end"
    BACK_END = "back-end"
    BOTH = "both"


IOTUNE_KEYS = (
    "total_bytes_sec",
    "read_bytes_sec",
    "write_bytes_sec",
    "total_iops_sec",
    "read_iops_sec",
    "write_iops_sec",
    "total_bytes_sec_max",
    "read_bytes_sec_max",
    "write_bytes_sec_max",
    "total_iops_sec_max",
    "read_iops_sec_max",
    "write_iops_sec_max",
    "size_iops_sec",
)
"""The front-end keys Nova's libvirt driver turns into a disk's `iotune` (the rest are ignored)."""


def disk_limits(consumer: QosConsumer, specs: dict[str, str]) -> dict[str, int]:
    """The guest-disk limits of a QoS spec: its numeric front-end keys, when the front end
    consumes it. Values that are not whole non-negative numbers are left out, as Nova ignores
    them rather than failing the attach."""
    if consumer is QosConsumer.BACK_END:
        return {}
    out: dict[str, int] = {}
    for key in IOTUNE_KEYS:
        value = specs.get(key)
        if value is not None and value.strip().isdigit():
            out[key] = int(value)
    return out
