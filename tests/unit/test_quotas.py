"""Quota rules without I/O (`domain.quotas`), and the claim lock under real threads on a real
database: many claims of one project at once never take it past its limit."""

from __future__ import annotations

import os
import threading
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ferry.config import QuotasConfig, dump, from_dict
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.db.models import Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, OverLimit
from ferry.domain.ids import new_id
from ferry.domain.quotas import (
    UNLIMITED,
    VOLUME_DEFAULTS,
    ResourceSet,
    absolute_limits,
    check_claim,
    check_not_below_usage,
    check_volume_size,
    effective_limits,
    exceeds,
    overs,
    parse_quota_set,
    volume_deltas,
)
from ferry.domain.volumes import VolumeStatus
from ferry.services.quotas import QuotaService
from testkit.server import reset_database

RESOURCES = ResourceSet.volumes(VOLUME_DEFAULTS, ["fast"])


@pytest.mark.parametrize(
    ("limit", "in_use", "delta", "over"),
    [
        (10, 9, 1, False),
        (10, 10, 1, True),
        (UNLIMITED, 10**9, 10**9, False),
        (0, 0, 1, True),
        (5, 9, -1, False),  # releasing never refuses, even over a lowered limit
        (5, 9, 0, False),
    ],
)
def test_exceeds(limit: int, in_use: int, delta: int, over: bool) -> None:
    assert exceeds(limit, in_use, delta) is over


def test_resources_and_effective_limits() -> None:
    assert {"volumes_fast", "gigabytes_fast", "snapshots_fast"} <= set(RESOURCES.names())
    limits = effective_limits(RESOURCES, {"volumes": 20, "gigabytes": 5}, {"gigabytes": 7})
    assert (limits["volumes"], limits["gigabytes"], limits["snapshots"], limits["volumes_fast"]) == (
        20,
        7,
        10,
        -1,
    )


def test_claim_refusals_read_as_cinders() -> None:
    limits = effective_limits(RESOURCES, {}, {"volumes": 1, "gigabytes_fast": 3})
    with pytest.raises(
        OverLimit, match=r"^Maximum number of volumes allowed \(1\) exceeded for quota 'volumes'\.$"
    ):
        check_claim(limits, {"volumes": 1}, volume_deltas(None, volumes=1, gigabytes=1))
    with pytest.raises(OverLimit, match=r"allowed gigabytes_fast quota\. Requested 2G, quota is 3G and 2G"):
        check_claim(limits, {"gigabytes_fast": 2}, volume_deltas("fast", gigabytes=2))
    with pytest.raises(OverLimit, match="snapshots allowed"):
        check_claim({"snapshots": 0}, {}, {"snapshots": 1})
    assert overs(limits, {"volumes": 5, "gigabytes_fast": 9}, {"volumes": 1, "gigabytes_fast": 1}) == [
        "gigabytes_fast",
        "volumes",
    ]
    check_claim(limits, {"volumes": 0}, volume_deltas("fast", volumes=1, gigabytes=3))
    with pytest.raises(OverLimit, match="larger than maximum allowed limit 2G"):
        check_volume_size({"per_volume_gigabytes": 2}, 3)
    check_volume_size({"per_volume_gigabytes": -1}, 10**6)


@pytest.mark.parametrize(
    "body",
    [
        {"bogus": 1},
        {"volumes": -2},
        {"volumes": "x"},
        {"volumes": 1.0},
        {"volumes": False},
        {"volumes": 2**31},
        {},
    ],
)
def test_parse_quota_set_refuses(body: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        parse_quota_set(body, RESOURCES)


def test_parse_quota_set_accepts_cinders_forms() -> None:
    assert parse_quota_set({"volumes": "5", "id": "x", "volumes_fast": -1}, RESOURCES) == {
        "volumes": 5,
        "volumes_fast": -1,
    }


def test_limit_below_usage() -> None:
    with pytest.raises(BadRequest, match="Current usage is 3 and the requested limit is 2"):
        check_not_below_usage({"volumes": 2}, {"volumes": 3})
    check_not_below_usage(
        {"volumes": -1, "per_volume_gigabytes": 1, "gigabytes": 3}, {"volumes": 9, "gigabytes": 3}
    )


def test_absolute_limits_view() -> None:
    shown = absolute_limits(effective_limits(RESOURCES, {}, {}), {"volumes": 2, "gigabytes": 5})
    assert (
        shown["maxTotalVolumes"] == 10 and shown["totalVolumesUsed"] == 2 and shown["totalBackupsUsed"] == 0
    )
    assert len(shown) == 10


def test_quota_config_section() -> None:
    cfg = from_dict({"quotas": {"volumes": 3, "per_volume_gigabytes": 50}})
    assert cfg.quotas.defaults()["volumes"] == 3 and cfg.quotas.gigabytes == 1000
    with pytest.raises(BadRequest):
        from_dict({"quotas": {"volumes": -5}})
    with pytest.raises(BadRequest):
        from_dict({"quotas": {"floating_ips": 5}})  # not a quota Ferry keeps
    compute = from_dict({"quotas": {"instances": 5}}).quotas
    assert compute.compute_defaults()["instances"] == 5 and "instances" not in compute.defaults()
    assert compute.compute_defaults()["cores"] == 20 and "volumes" not in compute.compute_defaults()


# -- the claim lock, with real threads on a real database -------------------------------------------
@pytest.fixture
def database(tmp_path: Path) -> str:
    url = os.environ.get("FERRY_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'quotas.db'}"
    if os.environ.get("FERRY_TEST_DATABASE_URL"):
        reset_database(url)
    upgrade(url)
    return url


def _volume(project: str) -> Volume:
    now = utcnow()
    return Volume(
        id=new_id(), project_id=project, user_id="u", name=None, description=None, size_gib=1,
        status=VolumeStatus.AVAILABLE, volume_type_id=None, backend="fast", name_id=new_id(),
        active_layer_id=new_id(), meta={}, next_layer_position=1, created_at=now, updated_at=now,
    )  # fmt: skip


def test_concurrent_claims_never_overshoot(database: str) -> None:
    """Twenty threads claim one volume each against a limit of 5, each counting and inserting in
    its own transaction, all released at once: exactly 5 fit. (Without the lock, several read the
    same count and all insert.)"""
    engine = make_engine(database)
    db = session_factory(engine)
    quotas = QuotaService(db, QuotasConfig(volumes=5))
    project = new_id()
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def claim() -> None:
        barrier.wait()
        try:
            with db.begin() as s:
                quotas.claim_volume(s, project, None, volumes=1, gigabytes=1, volume_size=1)
                threading.Event().wait(0.01)  # widen the window between the count and the insert
                s.add(_volume(project))
            outcomes.append("ok")
        except OverLimit:
            outcomes.append("over")

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db() as s:
        stored = s.scalar(select(func.count()).select_from(Volume).where(Volume.project_id == project))
    engine.dispose()
    assert (outcomes.count("ok"), outcomes.count("over"), stored) == (5, 15, 5)


def test_quota_config_round_trips() -> None:

    cfg = from_dict({"quotas": {"volumes": 3}})
    again = from_dict(tomllib.loads(dump(cfg)))
    assert again.quotas == cfg.quotas
    assert "[quotas]" not in dump(from_dict({}))
