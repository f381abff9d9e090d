"""Cinder v3 os-services at /volume/v3/{project_id}/os-services (admin): a `cinder-volume` per
backend and host that reaches it (`host@backend`, up and enabled as that host is) and the
`cinder-scheduler` of the API that answers. What `openstack volume service list` shows.

HTTP only: `HostRegistry` decides who may see them and which hosts reach which backend.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.host_views import scheduler_view, volume_service_view
from ferry.api.schemas import QueryText
from ferry.api.versions import at_least
from ferry.domain.clock import utcnow
from ferry.services.context import RequestContext
from ferry.services.hosts import HostRegistry

router = APIRouter(prefix="/volume/v3/{project_id}")


@router.get("/os-services")
def list_volume_services(
    request: Request,
    project_id: str,
    ctx: RequestContext = Depends(deps.project_context),
    hosts: HostRegistry = Depends(deps.hosts),
    host: QueryText = None,
    binary: QueryText = None,
) -> dict[str, Any]:
    services = [volume_service_view(b, h) for b, h in hosts.reaching(ctx)]
    services.append(scheduler_view(hosts.here, utcnow()))
    if not at_least(request, "3.7", "volume"):  # a service's `cluster` is Cinder's from 3.7 on
        for s in services:
            s.pop("cluster", None)
    if at_least(request, "3.49", "volume"):  # and a cinder-volume's `backend_state` from 3.49
        for s in services:
            if s["binary"] == "cinder-volume":
                s["backend_state"] = s["state"]
    return {"services": [s for s in services if host in (None, s["host"]) and binary in (None, s["binary"])]}
