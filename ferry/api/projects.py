"""Keystone v3 projects at /identity/v3/projects: show and list (by `name`, `domain_id`).

HTTP only: who sees which project is `ProjectDirectory`'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.schemas import QueryText
from ferry.api.versions import base_url
from ferry.services.projects import ProjectDirectory
from ferry.services.records import ProjectRecord

router = APIRouter(prefix="/identity/v3")
Projects = Depends(deps.projects)


def _view(request: Request, p: ProjectRecord) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "parent_id": p.domain_id,
        "description": "",
        "enabled": True,
        "is_domain": False,
        "tags": [],
        "links": {"self": f"{base_url(request)}/identity/v3/projects/{p.id}"},
    }


@router.get("/projects")
def list_projects(
    request: Request,
    name: QueryText = None,
    domain_id: QueryText = None,
    projects: ProjectDirectory = Projects,
) -> dict[str, Any]:
    ctx = deps.context(request)
    found = projects.find(ctx, name, domain_id)
    links = {"self": f"{base_url(request)}/identity/v3/projects", "previous": None, "next": None}
    return {"projects": [_view(request, p) for p in found], "links": links}


@router.get("/projects/{project_id}")
def show_project(request: Request, project_id: str, projects: ProjectDirectory = Projects) -> dict[str, Any]:
    return {"project": _view(request, projects.get(deps.context(request), project_id))}
