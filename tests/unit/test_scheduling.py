"""The scheduler's filters as a table: extra specs by backends → where a volume goes, or why not
(Cinder's CapabilitiesFilter, extra_specs_ops and AvailabilityZoneFilter). Pure, no server."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.domain.errors import BadRequest
from ferry.domain.model import BackendConfig, DiskFormat
from ferry.domain.scheduling import (
    NoValidBackend,
    PoolStats,
    check_migration_destination,
    check_zones,
    choose_backend,
    refusal,
    reported_capabilities,
    retype_destination,
    spec_matches,
)

FAST = BackendConfig("fast", "/b/fast", capacity_gib=100)
BULK = BackendConfig("bulk", "/b/bulk", capacity_gib=500, format=DiskFormat.RAW)
GOLD_A = BackendConfig("gold-a", "/b/ga", capacity_gib=50, volume_backend_name="gold")
GOLD_B = BackendConfig("gold-b", "/b/gb", capacity_gib=80, volume_backend_name="gold")
POOLS = [PoolStats(FAST, 0), PoolStats(BULK, 0), PoolStats(GOLD_A, 0), PoolStats(GOLD_B, 0)]


@pytest.mark.parametrize(
    ("specs", "chosen"),
    [
        ({}, "bulk"),  # most free capacity
        ({"volume_backend_name": "fast"}, "fast"),
        ({"capabilities:volume_backend_name": "fast"}, "fast"),
        ({"volume_backend_name": "gold"}, "gold-b"),  # shared name: the freer of the two
        ({"volume_backend_name": "<or> fast <or> gold"}, "fast"),
        ({"storage_protocol": "file", "vendor_name": "Ferry"}, "bulk"),
        ({"capabilities:disk_format": "qcow2"}, "fast"),
        ({"disk_format": "s== raw"}, "bulk"),
        ({"thin_provisioning_support": "<is> True"}, "bulk"),
        ({"capabilities:thin_provisioning_support": "<is> true"}, "bulk"),
        ({"snapshot_support": "<is> True"}, "fast"),  # raw bulk has no snapshots
        ({"total_capacity_gb": "<= 90"}, "gold-b"),
        ({"total_capacity_gb": "== 50"}, "gold-a"),
        ({"total_capacity_gb": ">= 100", "disk_format": "qcow2"}, "fast"),
        ({"volume_backend_name": "<in> bul"}, "bulk"),
        ({"vendor_name": "s!= Acme"}, "bulk"),
        ({"RESKEY:availability_zones": "nova, other"}, "bulk"),
        ({"qos:read_iops": "100", "acme:tier": "x"}, "bulk"),  # other scopes are not capabilities
    ],
)
def test_placement_by_extra_specs(specs: dict[str, str], chosen: str) -> None:
    assert choose_backend(POOLS, 1, specs).backend.name == chosen


@pytest.mark.parametrize(
    "specs",
    [
        {"volume_backend_name": "nope"},
        {"storage_protocol": "iSCSI"},
        {"vendor_name": "Acme", "storage_protocol": "file"},
        {"thin_provisioning_support": "True"},  # a reported boolean needs <is> (as in Cinder)
        {"capabilities:no_such_capability": "x"},
        {"nested:scope": "x", "capabilities:a:b": "c"},
        {"total_capacity_gb": ">= many"},
        {"volume_backend_name": "<or>"},
        {"RESKEY:availability_zones": "elsewhere"},
    ],
)
def test_specs_no_backend_satisfies(specs: dict[str, str]) -> None:
    with pytest.raises(NoValidBackend, match="No valid backend"):
        choose_backend(POOLS, 1, specs)


def test_capacity_counts_after_the_filters() -> None:
    full = [PoolStats(FAST, 0), PoolStats(GOLD_A, 50), PoolStats(GOLD_B, 79)]
    with pytest.raises(NoValidBackend, match=r"gold-a has 0 GiB free.*gold-b has 1 GiB free"):
        choose_backend(full, 2, {"volume_backend_name": "gold"})
    assert choose_backend(full, 1, {"volume_backend_name": "gold"}).backend is GOLD_B
    with pytest.raises(NoValidBackend, match="No capacity for a 600 GiB"):
        choose_backend(full, 600)


def test_decommissioning_one_of_a_shared_name_needs_no_type_change() -> None:
    specs = {"volume_backend_name": "gold"}
    assert choose_backend([PoolStats(GOLD_A, 0), PoolStats(GOLD_B, 0)], 1, specs).backend is GOLD_B
    assert choose_backend([PoolStats(GOLD_A, 0)], 1, specs).backend is GOLD_A  # gold-b removed
    assert refusal(PoolStats(GOLD_A, 0), 1, specs) is None


def test_refusal_says_why() -> None:
    why = refusal(PoolStats(FAST, 0), 1, {"volume_backend_name": "bulk"})
    assert why is not None and "volume_backend_name='fast'" in why and "'bulk'" in why
    assert "does not report" in (refusal(PoolStats(FAST, 0), 1, {"foo": "bar"}) or "")


@pytest.mark.parametrize(
    ("value", "req", "ok"),
    [
        ("file", "file", True),
        ("file", "nfs", False),
        (True, "True", False),
        (True, "<is> True", True),
        (False, "<is> True", False),
        ("True", "<is> true", True),
        (100, "= 50", True),  # `=` is "at least"
        (100, "= 150", False),
        (100, "!= 100", False),
        (100, "<= 100", True),
        ("abc", "s< abd", True),
        ("abc", "s>= abd", False),
        ("abc", "s== abc", True),
        ("fast", "<in> as", True),
        (True, "<in> x", False),  # not a string: no match, no error
        ("b", "<or> a <or> b", True),
        ("c", "<or> a <or> b", False),
        (None, "<or> a", False),
        (None, None, True),
        ("x", None, False),
        (5, ">= five", False),
        ("x", "", False),
    ],
)
def test_cinder_extra_spec_operators(value: Any, req: str | None, ok: bool) -> None:
    assert spec_matches(value, req) is ok


def test_reported_capabilities_are_what_is_matched() -> None:
    caps = reported_capabilities(PoolStats(GOLD_A, 10))
    assert caps["volume_backend_name"] == "gold" and caps["pool_name"] == "gold"
    assert (caps["vendor_name"], caps["storage_protocol"]) == ("Ferry", "file")
    assert caps["provisioned_capacity_gb"] == 10 and caps["total_capacity_gb"] == 50
    assert reported_capabilities(PoolStats(FAST, 0))["volume_backend_name"] == "fast"  # default: its name


def test_type_zones_are_checked_at_the_api() -> None:
    check_zones({})
    check_zones({"RESKEY:availability_zones": "nova"}, "nova")
    with pytest.raises(BadRequest, match="zones elsewhere"):
        check_zones({"RESKEY:availability_zones": "elsewhere"})
    with pytest.raises(BadRequest, match="'mars' is invalid"):
        check_zones({}, "mars")


def test_migration_destinations_must_pass_the_type() -> None:
    gold = {"volume_backend_name": "gold"}
    check_migration_destination(PoolStats(GOLD_A, 0), "gold", gold)  # between equivalent backends
    with pytest.raises(
        BadRequest, match=r"'fast' does not pass the filters of volume type 'gold'.*os-retype"
    ):
        check_migration_destination(PoolStats(FAST, 0), "gold", gold)


@pytest.mark.parametrize(
    ("current", "specs", "may_migrate", "outcome"),
    [
        ("gold-a", {"volume_backend_name": "gold"}, False, None),  # passes: a change of type only
        ("fast", {}, False, None),
        ("fast", {"volume_backend_name": "gold"}, True, "gold-b"),
        ("gold-a", {"volume_backend_name": "fast"}, True, "fast"),
        ("gold-a", {"volume_backend_name": "gold", "disk_format": "raw"}, True, "NoValidBackend"),
        ("fast", {"volume_backend_name": "bulk"}, False, "on-demand"),
    ],
)
def test_retype_destination(
    current: str, specs: dict[str, str], may_migrate: bool, outcome: str | None
) -> None:
    if outcome == "NoValidBackend":
        with pytest.raises(NoValidBackend):
            retype_destination(POOLS, current, 1, "t", specs, may_migrate=may_migrate)
    elif outcome == "on-demand":
        with pytest.raises(BadRequest, match="migration_policy 'on-demand'"):
            retype_destination(POOLS, current, 1, "t", specs, may_migrate=may_migrate)
    else:
        dest = retype_destination(POOLS, current, 1, "t", specs, may_migrate=may_migrate)
        assert (dest.backend.name if dest else None) == outcome
