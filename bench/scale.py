"""Figure 6: the control plane with 10,000 volumes.

The volumes are inserted straight into a fresh server's database (one bulk INSERT through
SQLAlchemy, before `ferry serve` starts; listing needs no files). The benchmark then times HTTP
requests with httpx over one keep-alive connection, as admin:

- `GET volumes/detail?limit=1000` (the first page), `scale_detail_samples` times;
- paging through all volumes with `limit=1000&marker=<last id>`, `scale_paging_passes` times;
- `GET volumes/{id}` of random volumes, `scale_show_samples` times.

Baseline: the same rows fetched by the same queries (same filter, order, keyset pagination) through
SQLAlchemy in the benchmark process, from the same database file: what the database alone costs.
The ratio is the price of HTTP, authentication, policy and rendering; the target is absolute.
"""

from __future__ import annotations

import gc
import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, insert, or_, select
from sqlalchemy.orm import Session

from bench.core import Row, Settings, fmt_ms, fmt_ratio, percentile
from bench.env import Cloud
from ferry.config import load
from ferry.db.engine import make_engine
from ferry.db.models import Project, User, Volume
from ferry.domain.clock import utcnow
from testkit.server import Api

PAGE = 1000
TARGET_MS = 100.0
WARMUP = 3


def insert_volumes(engine: Engine, project_name: str, user_name: str, count: int) -> list[str]:
    with Session(engine) as s, s.begin():
        project = s.scalar(select(Project.id).where(Project.name == project_name))
        user = s.scalar(select(User.id).where(User.name == user_name))
        base = utcnow() - timedelta(days=1)
        rows = [_volume_row(i, str(project), str(user), base) for i in range(count)]
        s.execute(insert(Volume), rows)
    return [str(r["id"]) for r in rows]


def _volume_row(i: int, project: str, user: str, base: Any) -> dict[str, Any]:
    at = base + timedelta(milliseconds=i)
    return {
        "id": str(uuid.uuid4()),
        "project_id": project,
        "user_id": user,
        "name": f"scale-{i:05d}",
        "description": None,
        "size_gib": 1,
        "status": "available",
        "volume_type_id": None,
        "backend": "fast",
        "name_id": str(uuid.uuid4()),
        "active_layer_id": str(uuid.uuid4()),
        "migration_status": None,
        "meta": {},
        "snapshot_id": None,
        "source_volid": None,
        "next_layer_position": 1,
        "created_at": at,
        "updated_at": at,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return (time.perf_counter() - t0) * 1000, value


# -- Ferry over HTTP ---------------------------------------------------------------------------
def http_page(api: Api, marker: str | None) -> list[str]:
    params: dict[str, Any] = {"limit": PAGE}
    if marker:
        params["marker"] = marker
    return [v["id"] for v in api.ok(api.volume("GET", "/volumes/detail", params=params))["volumes"]]


def http_show(api: Api, vid: str) -> None:
    api.ok(api.volume("GET", f"/volumes/{vid}"))


# -- the database alone ------------------------------------------------------------------------
def db_page(engine: Engine, project: str, marker: str | None) -> list[str]:
    with Session(engine) as s:
        stmt = select(Volume).where(Volume.project_id == project)
        if marker:
            row = s.get(Volume, marker)
            assert row is not None
            stmt = stmt.where(
                or_(
                    Volume.created_at < row.created_at,
                    and_(Volume.created_at == row.created_at, Volume.id < row.id),
                )
            )
        stmt = stmt.order_by(Volume.created_at.desc(), Volume.id.desc()).limit(PAGE)
        return [v.id for v in s.scalars(stmt)]


def db_show(engine: Engine, vid: str) -> None:
    with Session(engine) as s:
        assert s.get(Volume, vid) is not None


# -- measuring -----------------------------------------------------------------------------------
def sample(fn: Callable[[], Any], n: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    return [timed(fn)[0] for _ in range(n)]


def paging(
    page: Callable[[str | None], list[str]], passes: int, total: int
) -> tuple[list[float], list[float]]:
    """Per-page latencies and per-pass totals (ms) of paging through every volume."""
    pages: list[float] = []
    passes_ms: list[float] = []
    for _ in range(passes):
        marker: str | None = None
        seen, pass_ms = 0, 0.0
        while True:
            ms, ids = timed(lambda m=marker: page(m))  # type: ignore[misc]
            pages.append(ms)
            pass_ms += ms
            seen += len(ids)
            if len(ids) < PAGE:
                break
            marker = ids[-1]
        if seen != total:
            raise RuntimeError(f"paging saw {seen} volumes, expected {total}")
        passes_ms.append(pass_ms)
    return pages, passes_ms


def measure(
    get_page: Callable[[str | None], list[str]], show: Callable[[str], None], ids: list[str], s: Settings
) -> dict[str, list[float]]:
    rng = random.Random(42)
    detail = sample(lambda: get_page(None), s.scale_detail_samples)
    pages, passes = paging(get_page, s.scale_paging_passes, len(ids))
    show_ms = sample(lambda: show(rng.choice(ids)), s.scale_show_samples)
    return {"detail": detail, "pages": pages, "passes": passes, "show": show_ms}


def run_scale(root: Path, guest_dir: Path, s: Settings) -> list[Row]:
    cloud = Cloud(root, guest_dir)
    engine = make_engine(load(cloud.srv.config_path).database_url)
    try:
        auth = cloud.srv.cloud("ferry-admin")
        ids = insert_volumes(engine, auth["project_name"], auth["username"], s.scale_volumes)
        cloud.start()
        api = cloud.api
        # This process holds 10,000 ids and every library it imported; its own collector's full
        # passes would land in the samples of both sides. Ferry's server freezes its heap likewise.
        gc.collect()
        gc.freeze()
        ferry = measure(lambda m: http_page(api, m), lambda v: http_show(api, v), ids, s)
        db = measure(lambda m: db_page(engine, api.project_id, m), lambda v: db_show(engine, v), ids, s)
    finally:
        cloud.close()
        engine.dispose()
    return _rows(ferry, db, s.scale_volumes)


def _cell(samples: list[float]) -> str:
    return f"p50 {fmt_ms(percentile(samples, 50))}, p99 {fmt_ms(percentile(samples, 99))}"


def _row(key: str, title: str, ferry: list[float], db: list[float], extra: dict[str, Any]) -> Row:
    p99, base = percentile(ferry, 99), percentile(db, 99)
    data = {"ferry_ms": [round(x, 2) for x in ferry], "db_ms": [round(x, 2) for x in db], **extra}
    return Row(
        key,
        title,
        _cell(ferry),
        f"DB only: {_cell(db)}",
        f"{fmt_ratio(p99 / base)} (p99)",
        f"p99 ≤ {TARGET_MS:.0f} ms",
        p99 <= TARGET_MS,
        data,
    )


def _rows(ferry: dict[str, list[float]], db: dict[str, list[float]], total: int) -> list[Row]:
    n = f"{total:,}"
    pages = len(ferry["pages"]) // max(len(ferry["passes"]), 1)
    passes = {
        "pass_ms_ferry": [round(x, 1) for x in ferry["passes"]],
        "pass_ms_db": [round(x, 1) for x in db["passes"]],
    }
    return [
        _row("6a", f"Scale, {n} volumes: GET volumes/detail?limit={PAGE}", ferry["detail"], db["detail"], {}),
        _row(
            "6b",
            f"Scale: paging through all {n} ({pages} pages), per page",
            ferry["pages"],
            db["pages"],
            passes,
        ),
        _row("6c", f"Scale: GET volumes/{{id}} among {n}", ferry["show"], db["show"], {}),
    ]
