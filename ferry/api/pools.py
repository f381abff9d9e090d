"""Cinder v3 scheduler stats at /volume/v3/{project_id}/scheduler-stats/get_pools (admin): one pool
per backend, with capacities when `detail` is given.

HTTP only: `PoolService.pools` decides who may see them and measures them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.list_filters import asked_filters
from ferry.api.schemas import flag
from ferry.api.versions import at_least
from ferry.api.views import pool_view
from ferry.domain.errors import BadRequest
from ferry.domain.scheduling import type_refusal
from ferry.services.context import RequestContext
from ferry.services.pools import PoolService
from ferry.services.storage import Backends
from ferry.services.types import TypeService

router = APIRouter(prefix="/volume/v3/{project_id}")


@router.get("/scheduler-stats/get_pools")
async def get_pools(
    request: Request,
    project_id: str,
    detail: str | None = None,
    ctx: RequestContext = Depends(deps.project_context),
    pools: PoolService = Depends(deps.pools),
    backends: Backends = Depends(deps.backends),
    types: TypeService = Depends(deps.types),
) -> dict[str, Any]:
    # Filters from 3.28 (`name`), 3.35 (`volume_type`: the pools a volume of that type may land in).
    asked = asked_filters(request, "pool", admin=True) if at_least(request, "3.28", "volume") else []
    found = await pools.pools(ctx)
    for a in asked:
        if a.like:
            raise BadRequest(f"Invalid filters {a.key}~ are found in query options.")
        if a.key == "name":
            found = [p for p in found if backends.host_attr(p.backend.name) == a.value]
        elif a.key == "volume_type":
            specs = types.get(ctx, a.value).extra_specs or {}
            found = [p for p in found if type_refusal(p, specs) is None]
    return {"pools": [pool_view(p, backends.host_attr(p.backend.name), flag(detail)) for p in found]}
