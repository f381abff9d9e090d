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
    """The guest-disk limits of a QoS spec, when the front end consumes it: its numeric
    front-end keys (0 is no limit, as in libvirt), made consistent so that the hypervisor takes
    them instead of failing the attach: a total limit wins over its read and write ones (QEMU
    refuses both at once), and a burst (`_max`) is kept only above the rate it bursts from."""
    if consumer is QosConsumer.BACK_END:
        return {}
    out: dict[str, int] = {}
    for key in IOTUNE_KEYS:
        value = (specs.get(key) or "").strip()
        if value.isdigit() and int(value) > 0:
            out[key] = int(value)
    for unit in ("bytes", "iops"):
        if f"total_{unit}_sec" in out:
            for side in ("read", "write"):
                out.pop(f"{side}_{unit}_sec", None)
                out.pop(f"{side}_{unit}_sec_max", None)
        for side in ("total", "read", "write"):
            burst = out.get(f"{side}_{unit}_sec_max")
            if burst is not None and burst <= out.get(f"{side}_{unit}_sec", burst):
                del out[f"{side}_{unit}_sec_max"]
    if "size_iops_sec" in out and not any(k.endswith("iops_sec") and k != "size_iops_sec" for k in out):
        del out["size_iops_sec"]
    return out
