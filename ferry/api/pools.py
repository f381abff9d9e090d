"""Cinder v3 scheduler stats at /volume/v3/{project_id}/scheduler-stats/get_pools (admin): one pool
per backend, with capacities when `detail` is given.

HTTP only: `PoolService.pools` decides who may see them and measures them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ferry.api import deps
from ferry.api.schemas import flag
from ferry.api.views import pool_view
from ferry.services.context import RequestContext
from ferry.services.pools import PoolService
from ferry.services.storage import Backends

router = APIRouter(prefix="/volume/v3/{project_id}")


@router.get("/scheduler-stats/get_pools")
async def get_pools(
    project_id: str,
    detail: str | None = None,
    ctx: RequestContext = Depends(deps.project_context),
    pools: PoolService = Depends(deps.pools),
    backends: Backends = Depends(deps.backends),
) -> dict[str, Any]:
    found = await pools.pools(ctx)
    return {"pools": [pool_view(p, backends.host_attr(p.backend.name), flag(detail)) for p in found]}
