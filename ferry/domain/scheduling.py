"""Choosing a backend for a volume: pure functions over what each pool reports and what a volume
type's extra specs ask, as Cinder's filter scheduler decides for single-pool backends.

The filters, in Cinder's order: availability zone (`RESKEY:availability_zones`), capacity, and
capabilities (`volume_backend_name`, `capabilities:KEY` and bare `KEY` specs matched with Cinder's
extra-spec operators against `reported_capabilities`, the same dictionary `get_pools?detail`
and `capabilities/{host}` show). Of the pools that pass, the one with the most free capacity wins.
No I/O here: the services feed pool statistics in and act on the answer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ferry.domain.errors import BadRequest
from ferry.domain.model import BackendConfig

ZONE = "nova"
"""The one availability zone every backend (and host) is in."""
VENDOR = "Ferry"
DRIVER_VERSION = "1.0"
STORAGE_PROTOCOL = "file"
ZONES_SPEC = "RESKEY:availability_zones"
UNPLACED = ""
"""The backend of a volume no backend passed the filters for (it is in `error`, with no files)."""


class NoValidBackend(BadRequest):
    """No pool passes the filters: a create ends in `error` with a user message; a migrate or
    retype is refused with this message."""


@dataclass(frozen=True)
class PoolStats:
    backend: BackendConfig
    provisioned_gib: int
    allocated_bytes: int = 0
    free_bytes: int = 0

    @property
    def free_gib(self) -> float:
        return self.backend.provisionable_gib - self.provisioned_gib

    def fits(self, size_gib: int) -> bool:
        return self.free_gib >= size_gib


def reported_capabilities(p: PoolStats) -> dict[str, Any]:
    """What the pool reports to the scheduler (Cinder's volume stats): matched against extra
    specs, and shown by get_pools?detail and capabilities/{host}."""
    b, gib = p.backend, 1024**3
    return {
        "volume_backend_name": b.backend_name,
        "pool_name": b.backend_name,
        "vendor_name": VENDOR,
        "driver_version": DRIVER_VERSION,
        "storage_protocol": STORAGE_PROTOCOL,
        "disk_format": b.format.value,
        "total_capacity_gb": b.capacity_gib,
        "free_capacity_gb": round(b.capacity_gib - p.allocated_bytes / gib, 2),
        "allocated_capacity_gb": p.provisioned_gib,
        "provisioned_capacity_gb": p.provisioned_gib,
        "max_over_subscription_ratio": b.oversubscription,
        "thin_provisioning_support": True,
        "thick_provisioning_support": False,
        "snapshot_support": b.supports_snapshots,
        "reserved_percentage": 0,
        "QoS_support": False,
        "multiattach": False,
    }


# -- Cinder's extra-spec operators (cinder/scheduler/filters/extra_specs_ops.py) ----------------
def _bool(text: Any) -> bool:
    return str(text).strip().lower() in ("1", "t", "true", "on", "y", "yes")


_OPS: dict[str, Callable[[Any, str], bool]] = {
    "=": lambda x, y: float(x) >= float(y),
    "<in>": lambda x, y: y in x,
    "<is>": lambda x, y: _bool(x) is _bool(y),
    "==": lambda x, y: float(x) == float(y),
    "!=": lambda x, y: float(x) != float(y),
    ">=": lambda x, y: float(x) >= float(y),
    "<=": lambda x, y: float(x) <= float(y),
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}


def spec_matches(value: Any, req: str | None) -> bool:
    """Whether a reported capability `value` satisfies the requirement `req`: `<op> operand`
    for the operators above, `<or> a <or> b`, or otherwise plain equality (so a reported
    boolean needs `<is> True`, as in Cinder)."""
    if req is None:
        return value is None
    words = req.split()
    op = words.pop(0) if words else None
    method = _OPS.get(op) if op is not None else None
    if op != "<or>" and method is None:
        return bool(value == req)
    if value is None:
        return False
    if op == "<or>":  # <or> v1 <or> v2 ...: every other word is a candidate
        return any(w == value for w in words[::2])
    assert method is not None
    try:
        return bool(words) and method(value, words[0])
    except (ValueError, TypeError):  # a text operand against a number, a number for <in>
        return False


def capability_refusal(caps: Mapping[str, Any], specs: Mapping[str, Any]) -> str | None:
    """The first extra spec the capabilities fail (Cinder's CapabilitiesFilter), or None. Keys
    scoped other than `capabilities:` (`RESKEY:`, `qos:`, vendor scopes) are not capabilities."""
    for key, req in specs.items():
        scope = key.split(":")
        if len(scope) > 1 and scope[0] != "capabilities":
            continue
        if scope[0] == "capabilities":
            del scope[0]
        cap: Any = caps
        for part in scope:
            if not isinstance(cap, Mapping) or part not in cap:
                return f"does not report {':'.join(scope)!r} (asked {key}={req!r})"
            cap = cap[part]
        values = cap if isinstance(cap, list) else [cap]
        if not any(spec_matches(v, req) for v in values):
            return f"reports {':'.join(scope)}={cap!r}, not {req!r}"
    return None


def type_zones(specs: Mapping[str, Any]) -> list[str] | None:
    """The zones `RESKEY:availability_zones` confines a type to, or None when it does not."""
    if ZONES_SPEC not in specs:
        return None
    return [z.strip() for z in str(specs[ZONES_SPEC]).split(",") if z.strip()]


def check_zones(specs: Mapping[str, Any], requested: str | None = None) -> None:
    """Refuse at once (Cinder's API does) a type whose zones are none of Ferry's, or a requested
    zone the type excludes."""
    zones = type_zones(specs)
    if zones is not None and ZONE not in zones:
        raise BadRequest(f"Availability zones {', '.join(zones) or '(none)'} of the volume type are invalid.")
    if requested is not None and requested != ZONE:
        raise BadRequest(f"Availability zone '{requested}' is invalid.")


def refusal(p: PoolStats, size_gib: int, specs: Mapping[str, Any]) -> str | None:
    """Why the pool cannot take a `size_gib` volume of a type with `specs`, or None if it can."""
    if not p.fits(size_gib):
        return f"has {max(p.free_gib, 0):g} GiB free, not {size_gib}"
    return type_refusal(p, specs)


def type_refusal(p: PoolStats, specs: Mapping[str, Any]) -> str | None:
    """Why the pool fails a type's filters regardless of capacity (a volume already on it, or
    checked for room apart), or None."""
    zones = type_zones(specs)
    if zones is not None and ZONE not in zones:
        return f"is in zone {ZONE}, not {', '.join(zones) or '(none)'}"
    return capability_refusal(reported_capabilities(p), specs)


def choose_backend(
    pools: list[PoolStats], size_gib: int, specs: Mapping[str, Any] | None = None
) -> PoolStats:
    """Of the pools that pass the filters, the one with the most free capacity (ties: by name)."""
    specs = specs or {}
    refused = {p.backend.name: refusal(p, size_gib, specs) for p in pools}
    passing = [p for p in pools if refused[p.backend.name] is None]
    if not passing:
        raise NoValidBackend(no_valid_backend(size_gib, refused))
    return max(passing, key=lambda p: (p.free_gib, p.backend.name))


def no_valid_backend(size_gib: int, refused: Mapping[str, str | None]) -> str:
    why = "; ".join(f"{name} {reason}" for name, reason in sorted(refused.items()) if reason)
    if why and all(r and r.startswith("has ") for r in refused.values()):
        return f"No capacity for a {size_gib} GiB volume on any backend ({why})."
    return f"No valid backend for a {size_gib} GiB volume of this type: {why or 'no backends'}."


# -- migrate and retype (Cinder's host_passes_filters and find_retype_backend) ------------------
def check_migration_destination(p: PoolStats, type_name: str, specs: Mapping[str, Any]) -> None:
    """Refuse a migration to a pool that fails the volume type's filters: retype is the way off a
    type's backends (Cinder's scheduler refuses the same destination)."""
    why = type_refusal(p, specs)
    if why is not None:
        raise BadRequest(
            f"Backend {p.backend.name!r} does not pass the filters of volume type {type_name!r}: it "
            f"{why}. To move the volume there, retype it to a type that backend passes (os-retype "
            "with migration_policy 'on-demand' migrates it)."
        )


def retype_destination(
    pools: list[PoolStats],
    current: str,
    size_gib: int,
    type_name: str,
    specs: Mapping[str, Any],
    *,
    may_migrate: bool,
) -> PoolStats | None:
    """None when the volume's backend `current` passes the new type (a change of type only); else
    the pool a retype migrates it to, if `may_migrate` (migration_policy on-demand)."""
    here = next((p for p in pools if p.backend.name == current), None)
    why = type_refusal(here, specs) if here is not None else None
    if why is None:
        return None
    if not may_migrate:
        raise BadRequest(
            f"The volume's backend {current!r} does not pass the filters of type {type_name!r} (it "
            f"{why}): retype with migration_policy 'on-demand' to move it."
        )
    return choose_backend([p for p in pools if p.backend.name != current], size_gib, specs)
