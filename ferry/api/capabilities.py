"""Cinder v3 backend capabilities at /volume/v3/{project_id}/capabilities/{host} (admin): what a
backend reports to the scheduler, the same values get_pools?detail shows and extra specs match.

HTTP only: `PoolService.capabilities` decides who may see them and finds the backend.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ferry.api import deps
from ferry.api.views import capabilities_view
from ferry.services.context import RequestContext
from ferry.services.pools import PoolService

router = APIRouter(prefix="/volume/v3/{project_id}")


@router.get("/capabilities/{host}")
def show_capabilities(
    project_id: str,
    host: str,
    ctx: RequestContext = Depends(deps.project_context),
    pools: PoolService = Depends(deps.pools),
) -> dict[str, Any]:
    service, pool = pools.capabilities(ctx, host)
    return capabilities_view(pool, service)
